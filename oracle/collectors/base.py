"""The collector interface: raw GPU samples in, per-node series out.

A collector only *reads*; it never aggregates. Everything it returns is a
``Sample`` (one reading of one device at one instant) grouped into a
``DeviceSeries`` per device and a ``NodeTelemetry`` per node. Epoch figures
(uptime, utilization, energy, GPU-hours) are computed from those series in one
place, oracle/aggregation.py, so every source is judged by the same rules and a
dishonest node cannot pick the source that treats it best.

Two shapes of source plug into the reporter through ``TelemetrySource``:

- sources that can produce a whole epoch on demand (the simulated fleet, which
  is deterministic, so every oracle rebuilds the same samples);
- live scrapers (DCGM over HTTP, NVML on the local host) that only see *now*:
  they implement ``Collector.poll`` and a ``Sampler`` thread buffers their
  readings in a ``SampleStore`` that ``PolledSource`` reads epochs from.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from oracle.telemetry import EpochWindow, NodeInfo

log = logging.getLogger("gpucap.oracle.collectors")


class CollectorUnavailable(RuntimeError):
    """The source cannot be read at all on this host (no driver, no exporter, ...)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one device.

    ``t`` is Unix seconds on the oracle's clock (live scrapers stamp readings on
    receipt, so a node's own clock cannot move its samples). ``energy_mj`` is the
    device's cumulative energy counter in millijoules (NVML and DCGM both count
    in mJ since the driver loaded), or None when the source has no counter.
    ``up`` is False when the device answered but reported itself unfit to serve
    (fatal XID, uncorrectable ECC error) or the node reported an outage.
    """

    t: float
    utilization_pct: float | None
    power_w: float | None
    energy_mj: int | None
    up: bool = True


@dataclass(slots=True)
class DeviceSeries:
    """Samples of one device (or, for a node-level source, of ``gpus`` identical GPUs).

    Utilization is the average over the series' GPUs; power and the energy
    counter are totals over them.
    """

    device: str
    samples: list[Sample] = field(default_factory=list)
    gpus: int = 1


@dataclass(slots=True)
class NodeTelemetry:
    """Everything a source saw of one node, plus how often it meant to look."""

    node_id: int
    series: list[DeviceSeries]
    # Expected spacing between two samples: longer silences are gaps (missing data).
    interval_s: float


class TelemetrySource(Protocol):
    """What the reporter reads: the raw series of each node over one epoch."""

    def telemetry(
        self, nodes: Sequence[NodeInfo], window: EpochWindow
    ) -> Mapping[int, NodeTelemetry]:
        """Series for the nodes this source covers (a node it does not cover is absent)."""
        ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One scraped device sample, addressed to its node."""

    node_id: int
    device: str
    sample: Sample


class Collector(Protocol):
    """A live source: returns what every device it watches reads right now."""

    name: str

    def poll(self, now: float) -> list[Reading]:
        """One scrape; unreachable targets are logged and simply yield no readings."""
        ...


class SampleStore:
    """Thread-safe buffer of live readings, kept for ``retention_s`` seconds."""

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self._lock = threading.Lock()
        # node -> device -> samples sorted by t
        self._series: dict[int, dict[str, list[Sample]]] = defaultdict(dict)

    def add(self, readings: Sequence[Reading]) -> None:
        with self._lock:
            for r in readings:
                samples = self._series[r.node_id].setdefault(r.device, [])
                if samples and r.sample.t < samples[-1].t:
                    bisect.insort(samples, r.sample, key=lambda s: s.t)
                else:
                    samples.append(r.sample)

    def prune(self, now: float) -> None:
        cutoff = now - self.retention_s
        with self._lock:
            for devices in self._series.values():
                for device, samples in devices.items():
                    devices[device] = samples[
                        bisect.bisect_left(samples, cutoff, key=lambda s: s.t) :
                    ]

    def window(self, node_id: int, start: float, end: float) -> list[DeviceSeries]:
        with self._lock:
            devices = self._series.get(node_id, {})
            out = []
            for device, samples in sorted(devices.items()):
                lo = bisect.bisect_left(samples, start, key=lambda s: s.t)
                hi = bisect.bisect_left(samples, end, key=lambda s: s.t)
                out.append(DeviceSeries(device, list(samples[lo:hi])))
            return out


class PolledSource:
    """A ``TelemetrySource`` over a ``SampleStore`` that a ``Sampler`` fills.

    The store is keyed by the oracle's wall clock and epochs by chain time; on a
    live chain the two agree to within a block, which the aggregation's hold
    window absorbs. A margin of one interval before the epoch start is read so
    the sample that was current when the epoch began is known.
    """

    def __init__(self, store: SampleStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s

    def telemetry(
        self, nodes: Sequence[NodeInfo], window: EpochWindow
    ) -> Mapping[int, NodeTelemetry]:
        out: dict[int, NodeTelemetry] = {}
        for node in nodes:
            series = self.store.window(
                node.node_id, window.start - 2 * self.interval_s, window.end + self.interval_s
            )
            if series:
                out[node.node_id] = NodeTelemetry(node.node_id, series, self.interval_s)
        return out


class Sampler:
    """Polls a collector every ``interval_s`` on a daemon thread until stopped."""

    def __init__(self, collector: Collector, store: SampleStore, interval_s: float) -> None:
        self.collector = collector
        self.store = store
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oracle-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def poll_once(self) -> int:
        now = time.time()
        readings = self.collector.poll(now)
        self.store.add(readings)
        self.store.prune(now)
        return len(readings)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a sampler must outlive one bad scrape
                log.exception("%s: poll failed", self.collector.name)
            self._stop.wait(self.interval_s)
