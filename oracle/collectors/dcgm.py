"""NVIDIA dcgm-exporter: scrape its Prometheus text over HTTP, one target per node.

dcgm-exporter serves one gauge/counter per field with a ``gpu`` (index) and
``UUID`` label per device, e.g.::

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",Hostname="…"} 87
    DCGM_FI_DEV_POWER_USAGE{gpu="0",…} 512.3                       # W
    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",…} 123456789      # mJ since boot

Real pages carry much more than the oracle reads, and some of it cannot be
parsed: the exporter writes ``ERROR - FAILED TO CONVERT TO STRING`` in place of
a value it could not render (vGPU fields on a MIG host, for instance). So only
the lines of the families in ``FIELDS`` are handed, one at a time, to
prometheus-client's own parser (never parsed by hand); everything else on the
page is ignored, and a broken line of a family we do read costs that one value,
logged, never the page.

Validation is per GPU: a value that is not a finite number (NaN, ±Inf), or a
profiling ratio outside 0..1, drops that GPU's reading for this scrape with the
reason logged (a gap in that GPU's data). Finite values outside their physical
range (utilization over 100 %, negative power or energy) are passed on so that
the aggregation excludes the node with the reason: they are lies, not noise.

MIG. A GPU split into MIG instances is listed once per instance (labels
``GPU_I_ID``, ``GPU_I_PROFILE`` such as ``2g.20gb``). Power and the energy
counter are the parent GPU's, repeated on each instance line: they are folded
into one reading of the parent (power averaged, the counter's highest value), so
energy is never counted once per instance. A MIG GPU has no
``DCGM_FI_DEV_GPU_UTIL``; its busy share comes from the profiling field
``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (a 0..1 ratio per instance), weighted by each
instance's slices over the GPU's total (7 on A100/A800/H100/H200, 4 on A30):
slices nobody was given are idle. Older exporters (2.x, NVIDIA's own MIG
example) also list the board's own ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` beside its
instances': that is DCGM's measurement of the whole GPU and is taken when the
weighted sum agrees with it (within ``MIG_ACTIVITY_AGREEMENT_PCT``); when they
disagree (a page listing one busy 1g instance of seven slices while the board
reads 99.6 %) the utilization is unknown, logged, rather than either guess.
Without any activity field the utilization is unknown (None), never 0.

Lines may be indented (blanks or tabs before the name), as Prometheus's own
text parser accepts; such pages are served by proxies and copied from docs.

Health: a device with uncorrectable (double-bit) volatile ECC errors, or whose
last XID is one of ``FATAL_XIDS``, is recorded as down for that sample.

Scraping: all targets at once on a thread pool, under ONE deadline per poll. A
target still sending when the deadline passes (a byte a second keeps a per-read
timeout happy forever) is abandoned for this poll. Each reading is stamped when
its page has fully arrived, not when the poll began.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from oracle.collectors.base import FATAL_XIDS, Reading, Sample

log = logging.getLogger("gpucap.oracle.collectors.dcgm")

UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
ECC_DBE = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
XID = "DCGM_FI_DEV_XID_ERRORS"
FIELDS = frozenset({UTIL, GR_ACTIVE, POWER, ENERGY, ECC_DBE, XID})


# Compute slices of a whole GPU in MIG mode, by model; 7 unless listed.
_MIG_SLICES = (("A30", 4),)
_DEFAULT_MIG_SLICES = 7
_PROFILE_SLICES = re.compile(r"^(\d+)g\.")
# Leading blanks and tabs are allowed before a metric name, as Prometheus's own
# text parser allows them (pages copied from documentation come indented).
_LINE_NAME = re.compile(r"^[ \t]*([A-Za-z_:][A-Za-z0-9_:]*)")
# GPU-level and instance-weighted activity of one MIG GPU further apart than
# this (percentage points) leave its utilization unknown rather than picking one.
MIG_ACTIVITY_AGREEMENT_PCT = 5.0


@dataclass
class _Gpu:
    """The wanted values of one physical GPU, gathered from its (instance) lines."""

    model: str = ""
    # field → values (one per line: several for a MIG GPU)
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # MIG instance id → (slices, GR_ENGINE_ACTIVE ratio or None)
    instances: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedPage:
    """Samples per device key (``gpu<index>``), and why other GPUs were dropped."""

    samples: dict[str, Sample]
    rejected: dict[str, str]
    skipped_lines: int


def parse_dcgm_page(text: str, t: float) -> ParsedPage:
    """One exposition page → one Sample per GPU (MIG instances folded into their GPU)."""
    gpus: dict[str, _Gpu] = defaultdict(_Gpu)
    skipped = 0
    for line in text.splitlines():
        match = _LINE_NAME.match(line)
        if match is None or match.group(1) not in FIELDS:
            continue  # comments, blank lines, families we do not read
        try:
            families = list(text_string_to_metric_families(line + "\n"))
        except ValueError:
            skipped += 1
            log.debug("unparseable line skipped: %.200s", line)
            continue
        for family in families:
            for sample in family.samples:
                gpu = sample.labels.get("gpu")
                if gpu is None:
                    continue
                entry = gpus[f"gpu{gpu}"]
                entry.model = sample.labels.get("modelName", entry.model)
                value = float(sample.value)
                instance = sample.labels.get("GPU_I_ID")
                if instance is not None and match.group(1) == GR_ACTIVE:
                    profile = _PROFILE_SLICES.match(sample.labels.get("GPU_I_PROFILE", ""))
                    slices = int(profile.group(1)) if profile else None
                    entry.instances[instance] = (slices, value)
                elif instance is not None:
                    entry.instances.setdefault(instance, (None, None))
                    entry.values[match.group(1)].append(value)
                else:
                    entry.values[match.group(1)].append(value)
    if skipped:
        log.warning(
            "%d line(s) of wanted DCGM fields could not be parsed and were skipped", skipped
        )
    samples: dict[str, Sample] = {}
    rejected: dict[str, str] = {}
    for device, entry in sorted(gpus.items()):
        try:
            samples[device] = _sample(entry, t, device)
        except ValueError as exc:
            rejected[device] = str(exc)
    return ParsedPage(samples, rejected, skipped)


def parse_dcgm_text(text: str, t: float) -> dict[str, Sample]:
    """Device key (``gpu<index>``) → one Sample; rejected GPUs are logged and left out."""
    page = parse_dcgm_page(text, t)
    for device, reason in page.rejected.items():
        log.warning("%s: reading dropped: %s", device, reason)
    return page.samples


def _sample(gpu: _Gpu, t: float, device: str = "") -> Sample:
    for name, values in gpu.values.items():
        for v in values:
            if not math.isfinite(v):
                raise ValueError(f"{name} is {v}, not a finite number")
    for v in gpu.values.get(GR_ACTIVE, []):
        _check_ratio(v, "GPU")
    util = _utilization(gpu, device)
    power = gpu.values.get(POWER)
    energy = gpu.values.get(ENERGY)
    ecc = gpu.values.get(ECC_DBE, [])
    xids = gpu.values.get(XID, [])
    healthy = not any(v > 0 for v in ecc) and not any(int(v) in FATAL_XIDS for v in xids)
    return Sample(
        t=t,
        utilization_pct=util,
        # a MIG GPU repeats its board's power and counter on every instance line
        power_w=None if not power else sum(power) / len(power),
        energy_mj=None if not energy else int(max(energy)),
        up=healthy,
    )


def _utilization(gpu: _Gpu, device: str = "") -> float | None:
    """Busy % of the whole GPU, or None when it cannot be known."""
    direct = gpu.values.get(UTIL)
    if direct and not gpu.instances:
        return direct[0]
    ratio_values = gpu.values.get(GR_ACTIVE)  # lines without GPU_I_ID: the whole board
    whole = None
    if ratio_values:
        _check_ratio(ratio_values[0], "GPU")
        whole = 100 * ratio_values[0]
    if not gpu.instances:
        return whole
    weighted = _instance_weighted(gpu)
    if whole is None:
        return weighted
    # Older exporters (2.x) list the board's own activity beside its instances'.
    # The board's is DCGM's measurement; the weighted sum assumes every slice
    # the page does not list was idle. When they disagree, neither is taken.
    if weighted is not None and abs(whole - weighted) > MIG_ACTIVITY_AGREEMENT_PCT:
        log.warning(
            "%s: MIG GPU activity %.1f %% but its listed instances make %.1f %%:"
            " utilization unknown",
            device or "gpu",
            whole,
            weighted,
        )
        return None
    return whole


def _instance_weighted(gpu: _Gpu) -> float | None:
    """Busy % from the MIG instances, weighted by their slices; unlisted slices idle."""
    total = next((n for model, n in _MIG_SLICES if model in gpu.model), _DEFAULT_MIG_SLICES)
    busy = 0.0
    for instance, (slices, ratio) in sorted(gpu.instances.items()):
        if slices is None or ratio is None:
            return None  # an instance without a profile or activity: unknown
        _check_ratio(ratio, f"instance {instance}")
        busy += slices * ratio
    return 100 * busy / total


def _check_ratio(ratio: float, where: str) -> None:
    if not (math.isfinite(ratio) and 0 <= ratio <= 1):
        raise ValueError(f"{GR_ACTIVE} of {where} is {ratio}, not a ratio in 0..1")


class _Deadline(Exception):
    pass


class DcgmCollector:
    """Scrapes ``targets`` (node id → dcgm-exporter metrics URL) concurrently.

    ``deadline_s`` bounds a whole poll; ``clock`` stamps readings (wall clock).
    """

    name = "dcgm"

    def __init__(
        self,
        targets: Mapping[int, str],
        deadline_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        max_workers: int = 32,
    ) -> None:
        if not targets:
            raise ValueError("DcgmCollector needs at least one node → URL target")
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        self.targets = dict(targets)
        self.deadline_s = deadline_s
        self.clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=min(max_workers, len(self.targets)), thread_name_prefix="dcgm-scrape"
        )
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def poll(self, now: float) -> list[Reading]:
        """One scrape of every target; returns by ``deadline_s`` whatever answered."""
        deadline = time.monotonic() + self.deadline_s
        futures: dict[Future, int] = {}
        for node_id, url in sorted(self.targets.items()):
            with self._lock:
                if node_id in self._busy:
                    log.warning(
                        "node %d: previous scrape of %s still running; skipped", node_id, url
                    )
                    continue
                self._busy.add(node_id)
            futures[self._pool.submit(self._scrape, node_id, url, deadline)] = node_id
        readings: list[Reading] = []
        pending = set(futures)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    readings.extend(future.result())
                except Exception:  # noqa: BLE001 - one target's failure never costs the others
                    log.exception("node %d: scrape failed", futures[future])
        for future in pending:
            node_id = futures[future]
            log.warning(
                "node %d: %s did not answer within the %.1fs poll deadline",
                node_id,
                self.targets[node_id],
                self.deadline_s,
            )
        return sorted(readings, key=lambda r: (r.node_id, r.device))

    def _scrape(self, node_id: int, url: str, deadline: float) -> list[Reading]:
        try:
            body = self._fetch(url, deadline)
        except _Deadline:
            return []
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3's own errors: the body is read from the raw stream (see _fetch)
            log.warning("node %d: dcgm-exporter at %s unreachable: %s", node_id, url, exc)
            return []
        finally:
            with self._lock:
                self._busy.discard(node_id)
        t = self.clock()  # stamped when the page arrived
        page = parse_dcgm_page(body, t)
        for device, reason in page.rejected.items():
            log.warning("node %d %s: reading dropped: %s", node_id, device, reason)
        if not page.samples and not page.rejected:
            log.warning("node %d: %s served no DCGM GPU fields", node_id, url)
        return [Reading(node_id, d, s) for d, s in sorted(page.samples.items())]

    @staticmethod
    def _fetch(url: str, deadline: float) -> str:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        # (connect, per-read) timeouts never beyond the poll's deadline; the loop
        # below enforces the deadline on the body as a whole.
        with requests.get(url, timeout=(left, left), stream=True) as response:
            response.raise_for_status()
            chunks = []
            # read1 returns whatever has arrived (a trickle comes back byte by byte),
            # so the deadline is checked as the body arrives, not once it is whole.
            while chunk := response.raw.read1(65_536, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Deadline
            return b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
