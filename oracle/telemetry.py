"""Where node measurements come from: a protocol plus a simulated fleet.

The reporter only sees ``TelemetrySource.measure``; NVML and DCGM collectors
(later) plug in beside ``SimulatedFleet`` without touching it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from gpucap.attestation import BPS, SECONDS_PER_HOUR, milli_gpu_hours


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


class TelemetrySource(Protocol):
    def measure(self, node: NodeInfo, window: EpochWindow) -> NodeMeasurement:
        """Aggregate the node's telemetry over ``window``."""
        ...


class SimulatedFleet:
    """Deterministic, seeded fake telemetry: same (seed, node, epoch) → same figures.

    Determinism matters beyond tests: a daemon that crashes after posting can
    rebuild exactly the leaves it committed to, and two dev oracles would agree.

    Model: uptime 90-100 %; utilization of the up time 40-95 %; delivered
    capacity = GPUs × up seconds; energy = GPUs × reference power × (idle 30 % +
    70 % × utilization) × up time.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed

    def measure(self, node: NodeInfo, window: EpochWindow) -> NodeMeasurement:
        rng = random.Random(f"gpucap-sim:{self._seed}:{node.node_id}:{window.epoch}")
        uptime_bps = rng.randint(9_000, BPS)
        busy_share_bps = rng.randint(4_000, 9_500)
        # Utilization over the whole epoch: busy share of the time the node was up.
        utilization_bps = uptime_bps * busy_share_bps // BPS
        coverage_bps = rng.randint(9_500, BPS)
        up_seconds = window.seconds * uptime_bps // BPS
        gpu_up_seconds = node.gpu_count * up_seconds
        draw_bps = 3_000 + 7_000 * busy_share_bps // BPS
        energy_wh = gpu_up_seconds * node.reference_power_w * draw_bps // BPS // SECONDS_PER_HOUR
        return NodeMeasurement(
            uptime_bps=uptime_bps,
            utilization_bps=utilization_bps,
            sample_coverage_bps=coverage_bps,
            energy_wh=energy_wh,
            milli_gpu_hours=milli_gpu_hours(gpu_up_seconds),
        )
