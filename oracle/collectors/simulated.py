"""A simulated fleet: deterministic raw samples for any number of nodes.

Same (seed, node id, epoch) → same samples, on every oracle and after every
restart: independent oracles agree on the root, and a daemon that crashed after
posting rebuilds exactly the leaves it committed to.

Model, per node (drawn once from the seed and node id):
- a base utilization 35-85 % with a diurnal swing of ±10-30 % (a sine over the
  day, ``day_seconds`` long, phase by "region"), plus per-sample noise;
- a power efficiency factor: most nodes draw their class's reference power
  (board power per GPU) at full load, about one in eight is degraded and draws
  15-40 % more for the same work; idle draw is 15 % of reference (real idle
  GPUs on public dcgm-exporter pages draw 7.5-23 % of their reference power,
  31.5 % when a pod holds one at full clocks:
  tests/oracle/data/README.md);
- a behaviour: honest (most), ``broken`` (about 1 %: its telemetry is missing
  for half of the epochs) or dishonest (about 1.2 %, one of: utilization above
  100 %, an energy counter that runs backwards, energy inflated to 3× the class's
  power).

Per epoch: a 3 % chance of an outage (the node reports itself down for 10-40 %
of the epoch), a 5 % chance of a telemetry dropout (a 10-30 % stretch with no
samples: a gap), a 1 % chance of an energy-counter reset (reboot).

A node's samples form one series standing for all its GPUs (``gpus`` =
the registry's count): identical GPUs in one box, and cheap enough that a
10,000-node fleet is simulated in well under a second per epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gpucap.gpu_classes import STANDARD_CLASSES
from oracle.collectors.base import DeviceSeries, NodeTelemetry, Sample
from oracle.telemetry import EpochWindow, NodeInfo

SECONDS_PER_DAY = 86_400
IDLE_DRAW = 0.15


class Behaviour(StrEnum):
    HONEST = "honest"
    BROKEN = "broken"
    OVER_100_UTILIZATION = "over_100_utilization"
    COUNTER_BACKWARDS = "counter_backwards"
    INFLATED_ENERGY = "inflated_energy"


@dataclass(frozen=True)
class NodeProfile:
    base_utilization: float
    diurnal_amplitude: float
    phase: float
    efficiency: float  # power drawn relative to a healthy GPU doing the same work
    behaviour: Behaviour


class SimulatedFleet:
    """A ``TelemetrySource`` inventing plausible samples for whatever nodes it is asked about."""

    def __init__(
        self, seed: int = 0, samples_per_epoch: int = 12, day_seconds: int = SECONDS_PER_DAY
    ) -> None:
        if samples_per_epoch < 2:
            raise ValueError("samples_per_epoch must be at least 2")
        if day_seconds <= 0:
            raise ValueError("day_seconds must be positive")
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        # The diurnal cycle's period: a demo compresses the day so that the fleet visibly
        # breathes within minutes (the signal is still a pure function of seed, node, time).
        self.day_seconds = day_seconds

    def profile(self, node_id: int) -> NodeProfile:
        rng = random.Random(f"gpucap-fleet:{self.seed}:{node_id}")
        base = rng.uniform(0.35, 0.85)
        amplitude = rng.uniform(0.10, 0.30)
        phase = rng.random()
        efficiency = rng.uniform(1.15, 1.40) if rng.random() < 0.125 else rng.uniform(0.95, 1.05)
        roll = rng.random()
        if roll < 0.004:
            behaviour = Behaviour.OVER_100_UTILIZATION
        elif roll < 0.008:
            behaviour = Behaviour.COUNTER_BACKWARDS
        elif roll < 0.012:
            behaviour = Behaviour.INFLATED_ENERGY
        elif roll < 0.022:
            behaviour = Behaviour.BROKEN
        else:
            behaviour = Behaviour.HONEST
        return NodeProfile(base, amplitude, phase, efficiency, behaviour)

    def observed_s(self, window: EpochWindow) -> float:
        """The fleet is rebuilt from its seed: every epoch is observable, whole."""
        return float(window.seconds)

    def telemetry(
        self, nodes: Sequence[NodeInfo], window: EpochWindow
    ) -> Mapping[int, NodeTelemetry]:
        interval = window.seconds / self.samples_per_epoch
        out: dict[int, NodeTelemetry] = {}
        for node in nodes:
            series = self._series(node, window, interval)
            if series is not None:
                out[node.node_id] = NodeTelemetry(node.node_id, [series], interval)
        return out

    def _series(self, node: NodeInfo, window: EpochWindow, interval: float) -> DeviceSeries | None:
        profile = self.profile(node.node_id)
        rng = random.Random(f"gpucap-fleet:{self.seed}:{node.node_id}:{window.epoch}")
        if profile.behaviour is Behaviour.BROKEN and rng.random() < 0.5:
            return None
        outage = _stretch(rng, window, 0.03, 0.10, 0.40)
        dropout = _stretch(rng, window, 0.05, 0.10, 0.30)
        reset_at = rng.randrange(2, self.samples_per_epoch) if rng.random() < 0.01 else None
        counter = rng.randint(10**9, 10**12)  # mJ since the driver loaded
        ref_w = node.reference_power_w * node.gpu_count
        samples: list[Sample] = []
        # One sample before the epoch so its first seconds are covered too.
        for k in range(-1, self.samples_per_epoch + 1):
            t = window.start + k * interval
            if k == reset_at:
                counter = 0
            up = not (outage and outage[0] <= t < outage[1])
            day = (t / self.day_seconds + profile.phase) * 2 * math.pi
            util = profile.base_utilization + profile.diurnal_amplitude * math.sin(day)
            util = min(1.0, max(0.0, util + rng.gauss(0, 0.05))) if up else 0.0
            draw = (IDLE_DRAW + (1 - IDLE_DRAW) * util) * profile.efficiency if up else 0.1
            power = ref_w * draw
            reported_util = util * 100
            if profile.behaviour is Behaviour.OVER_100_UTILIZATION and k == 3:
                reported_util = 100 + rng.uniform(5, 40)
            if not (dropout and dropout[0] <= t < dropout[1]):
                samples.append(Sample(t, reported_util, power, counter, up))
            step_mj = power * interval * 1000
            if profile.behaviour is Behaviour.INFLATED_ENERGY:
                step_mj = ref_w * 3 * interval * 1000
            counter += int(step_mj)
            if profile.behaviour is Behaviour.COUNTER_BACKWARDS and k == 4:
                counter -= int(3 * step_mj) + 10**6
        return DeviceSeries("node", samples, gpus=node.gpu_count)


def _stretch(
    rng: random.Random, window: EpochWindow, chance: float, shortest: float, longest: float
) -> tuple[float, float] | None:
    """A random sub-interval of the window (or None), drawn whatever the outcome
    so that later draws do not depend on whether this one hit."""
    hit = rng.random() < chance
    length = window.seconds * rng.uniform(shortest, longest)
    start = window.start + rng.uniform(0, window.seconds - length)
    return (start, start + length) if hit else None


def synthetic_nodes(count: int, seed: int = 0) -> list[NodeInfo]:
    """``count`` registry-like nodes (ids 1..count) over the standard GPU classes,
    for load tests and benchmarks that need a fleet without a chain."""
    rng = random.Random(f"gpucap-fleet-nodes:{seed}")
    return [
        NodeInfo(
            node_id,
            rng.choice((1, 2, 4, 8, 8, 8)),
            rng.choice(STANDARD_CLASSES).reference_power_w,
        )
        for node_id in range(1, count + 1)
    ]
