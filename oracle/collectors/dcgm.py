"""NVIDIA dcgm-exporter: scrape its Prometheus text over HTTP, one target per node.

dcgm-exporter serves one gauge/counter per field with a ``gpu`` (index) and
``UUID`` label per device, e.g.::

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",Hostname="…"} 87
    DCGM_FI_DEV_POWER_USAGE{gpu="0",…} 512.3                       # W
    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",…} 123456789      # mJ since boot

The text is parsed with prometheus-client's own parser (never by hand). A
target that is unreachable or serves garbage yields no readings for that scrape:
a gap in that node's data, logged, never a crash of the daemon.

Health: a device with uncorrectable (double-bit) volatile ECC errors, or whose
last XID is one of ``FATAL_XIDS``, is recorded as down for that sample.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

from oracle.collectors.base import Reading, Sample

log = logging.getLogger("gpucap.oracle.collectors.dcgm")

UTIL = "DCGM_FI_DEV_GPU_UTIL"
POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
ECC_DBE = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
XID = "DCGM_FI_DEV_XID_ERRORS"
FIELDS = frozenset({UTIL, POWER, ENERGY, ECC_DBE, XID})

# XIDs after which NVIDIA's XID catalogue says the GPU needs a reset or service:
# 48 double-bit ECC, 62/63/64 internal/row-remapping failures, 74 NVLink error,
# 79 fallen off the bus, 92 high single-bit ECC rate, 94/95 contained/uncontained
# ECC error, 119/120 GSP errors.
FATAL_XIDS = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})


def parse_dcgm_text(text: str, t: float) -> dict[str, Sample]:
    """Device key (``gpu<index>``) → one Sample, from one exposition page.

    Raises ValueError if the text is not Prometheus exposition format.
    """
    fields: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        if family.name not in FIELDS:
            continue
        for sample in family.samples:
            # the parser names a counter's samples <family>_total; skip _created etc.
            if sample.name not in (family.name, family.name + "_total"):
                continue
            gpu = sample.labels.get("gpu")
            if gpu is None:
                continue
            fields[f"gpu{gpu}"][family.name] = float(sample.value)
    out: dict[str, Sample] = {}
    for device, values in fields.items():
        energy = values.get(ENERGY)
        healthy = values.get(ECC_DBE, 0) == 0 and int(values.get(XID, 0)) not in FATAL_XIDS
        out[device] = Sample(
            t=t,
            utilization_pct=values.get(UTIL),
            power_w=values.get(POWER),
            energy_mj=None if energy is None else int(energy),
            up=healthy,
        )
    return out


class DcgmCollector:
    """Scrapes ``targets`` (node id → dcgm-exporter metrics URL)."""

    name = "dcgm"

    def __init__(self, targets: Mapping[int, str], timeout_s: float = 5.0) -> None:
        if not targets:
            raise ValueError("DcgmCollector needs at least one node → URL target")
        self.targets = dict(targets)
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def poll(self, now: float) -> list[Reading]:
        readings: list[Reading] = []
        for node_id, url in sorted(self.targets.items()):
            try:
                response = self._session.get(url, timeout=self.timeout_s)
                response.raise_for_status()
                samples = parse_dcgm_text(response.text, now)
            except requests.RequestException as exc:
                log.warning("node %d: dcgm-exporter at %s unreachable: %s", node_id, url, exc)
                continue
            except ValueError as exc:
                log.warning("node %d: %s served unparseable metrics: %s", node_id, url, exc)
                continue
            if not samples:
                log.warning("node %d: %s served no DCGM GPU fields", node_id, url)
            readings.extend(Reading(node_id, device, s) for device, s in sorted(samples.items()))
        return readings
