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
    """One node over one epoch, in the units of IOracleHub.NodeLeaf (v2).

    A coverage of 0 means the figure it covers is unknown: ``energy_joules`` is then
    0 and must not be read as "drew nothing". ``busy_gpu_seconds`` is not a leaf field
    of its own; it feeds the leaf's cumulative ``cumBusyGpuSeconds``.
    """

    uptime_bps: int
    utilization_bps: int
    sample_coverage_bps: int
    utilization_coverage_bps: int
    energy_coverage_bps: int
    energy_joules: int
    milli_gpu_hours: int
    busy_gpu_seconds: int

    @property
    def energy_wh(self) -> int:
        """Whole Wh, rounded down (derived: the leaf carries joules)."""
        return self.energy_joules // 3_600
