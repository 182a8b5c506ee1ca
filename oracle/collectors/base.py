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
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from oracle.telemetry import EpochWindow, NodeInfo

log = logging.getLogger("gpucap.oracle.collectors")

# XIDs after which NVIDIA's XID catalogue says the GPU needs a reset or service
# (both live sources mark a GPU down on them): 48 double-bit ECC, 62/63/64
# internal/row-remapping failures, 74 NVLink error, 79 fallen off the bus, 92 high
# single-bit ECC rate, 94/95 contained/uncontained ECC error, 119/120 GSP errors.
FATAL_XIDS = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})

# A silence longer than this many sampling intervals is a gap (the aggregation's
# default gap_factor; the oracle's own polling record is judged the same way).
GAP_FACTOR = 2.0


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

    def observed_s(self, window: EpochWindow) -> float:
        """Seconds of the window this oracle was watching (0: it did not observe it)."""
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

    def close(self) -> None:
        """Release what the collector holds (threads, the NVML session)."""
        ...


class SampleStore:
    """Thread-safe buffer of live readings, kept for ``retention_s`` seconds.

    With a ``path`` every reading, and the time of every poll, is also written to
    SQLite (WAL, ``synchronous=FULL``, one transaction per poll, like the
    oracle's write-ahead state) and read back on start, so a restarted oracle
    still has what it saw before, and knows when it was not looking: the polls
    table is this oracle's own observation record (``observed_s``).
    """

    def __init__(self, retention_s: float, path: Path | str | None = None) -> None:
        self.retention_s = retention_s
        self._lock = threading.Lock()
        # node -> device -> samples sorted by t
        self._series: dict[int, dict[str, list[Sample]]] = defaultdict(dict)
        self._polls: list[float] = []
        self._db: sqlite3.Connection | None = None
        if path is not None:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SAMPLES_SCHEMA)
            self._load()

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
                self._db = None

    def _load(self) -> None:
        assert self._db is not None
        cutoff = time.time() - self.retention_s
        rows = self._db.execute(
            "SELECT node_id, device, t, utilization_pct, power_w, energy_mj, up FROM samples"
            " WHERE t >= ? ORDER BY t",
            (cutoff,),
        ).fetchall()
        for node_id, device, t, util, power, energy, up in rows:
            self._series[node_id].setdefault(device, []).append(
                Sample(t, util, power, energy, bool(up))
            )
        self._polls = [
            t for (t,) in self._db.execute("SELECT t FROM polls WHERE t >= ? ORDER BY t", (cutoff,))
        ]
        if rows or self._polls:
            log.info(
                "sample store: %d readings and %d polls read back from %s",
                len(rows),
                len(self._polls),
                self._db.execute("PRAGMA database_list").fetchone()[2],
            )

    def add(self, readings: Sequence[Reading], polled_at: float | None = None) -> None:
        """Store one poll's readings; ``polled_at`` records that this oracle was looking."""
        with self._lock:
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.node_id,
                            r.device,
                            r.sample.t,
                            r.sample.utilization_pct,
                            r.sample.power_w,
                            r.sample.energy_mj,
                            int(r.sample.up),
                        )
                        for r in readings
                    ],
                )
                if polled_at is not None:
                    self._db.execute("INSERT OR IGNORE INTO polls VALUES (?)", (polled_at,))
                self._db.execute("COMMIT")
            for r in readings:
                samples = self._series[r.node_id].setdefault(r.device, [])
                if samples and r.sample.t < samples[-1].t:
                    bisect.insort(samples, r.sample, key=lambda s: s.t)
                else:
                    samples.append(r.sample)
            if polled_at is not None:
                bisect.insort(self._polls, polled_at)

    def prune(self, now: float) -> None:
        cutoff = now - self.retention_s
        with self._lock:
            for devices in self._series.values():
                for device, samples in devices.items():
                    devices[device] = samples[
                        bisect.bisect_left(samples, cutoff, key=lambda s: s.t) :
                    ]
            self._polls = self._polls[bisect.bisect_left(self._polls, cutoff) :]
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM samples WHERE t < ?", (cutoff,))
                self._db.execute("DELETE FROM polls WHERE t < ?", (cutoff,))
                self._db.execute("COMMIT")

    def window(self, node_id: int, start: float, end: float) -> list[DeviceSeries]:
        with self._lock:
            devices = self._series.get(node_id, {})
            out = []
            for device, samples in sorted(devices.items()):
                lo = bisect.bisect_left(samples, start, key=lambda s: s.t)
                hi = bisect.bisect_left(samples, end, key=lambda s: s.t)
                out.append(DeviceSeries(device, list(samples[lo:hi])))
            return out

    def observed_s(self, start: float, end: float, max_hold: float) -> float:
        """Seconds of ``[start, end)`` during which this oracle was polling: each
        poll covers until the next one, but never longer than ``max_hold``."""
        with self._lock:
            lo = max(0, bisect.bisect_left(self._polls, start) - 1)
            hi = bisect.bisect_left(self._polls, end)
            polls = self._polls[lo:hi]
        seen = 0.0
        for i, t in enumerate(polls):
            until = t + max_hold
            if i + 1 < len(polls):
                until = min(until, polls[i + 1])
            seen += max(0.0, min(until, end) - max(t, start))
        return seen


_SAMPLES_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    node_id INTEGER NOT NULL,
    device TEXT NOT NULL,
    t REAL NOT NULL,
    utilization_pct REAL,
    power_w REAL,
    energy_mj INTEGER,
    up INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_t ON samples (t);
CREATE TABLE IF NOT EXISTS polls (t REAL PRIMARY KEY);
"""


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

    def observed_s(self, window: EpochWindow) -> float:
        return self.store.observed_s(window.start, window.end, GAP_FACTOR * self.interval_s)


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
        """Stop polling, then release the collector and the store's file."""
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        self.collector.close()
        self.store.close()

    def poll_once(self) -> int:
        now = time.time()
        readings = self.collector.poll(now)
        self.store.add(readings, polled_at=now)
        self.store.prune(now)
        return len(readings)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a sampler must outlive one bad scrape
                log.exception("%s: poll failed", self.collector.name)
            # Polls start every interval whatever a poll took (up to its deadline), so
            # the spacing the aggregation judges gaps against is the one kept.
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
