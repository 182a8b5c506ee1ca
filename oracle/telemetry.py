"""The value types shared by collectors, aggregation and the reporter.

Sources of raw samples live in oracle/collectors/, the rules that turn them into
leaf figures in oracle/aggregation.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeInfo:
    """What the registry says about a node that a measurement needs."""

    node_id: int
    gpu_count: int
    reference_power_w: int


@dataclass(frozen=True)
class EpochWindow:
    """Epoch ``epoch`` covers ``[start, end)`` in chain time (seconds)."""

    epoch: int
    start: int
    end: int

    @property
    def seconds(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class NodeMeasurement:
    """One node over one epoch, in the units of IOracleHub.NodeLeaf."""

    uptime_bps: int
    utilization_bps: int
    sample_coverage_bps: int
    energy_wh: int
    milli_gpu_hours: int
