"""What the agent reads from its node's GPUs: one reading per GPU, by UUID.

``nvml`` reads the local GPUs (UUID, utilization, power, energy counter,
health) with the oracle's NVML collector; ``simulated`` stands for a node of
the oracle's simulated fleet (same profile for the same seed and node id), for
tests and the demo on hosts without a GPU.
"""

from __future__ import annotations

import math
import random
import time
from typing import Protocol

from oracle.collectors.simulated import IDLE_DRAW, SimulatedFleet


class GpuReader(Protocol):
    uuids: list[str]

    def read(self, now: float) -> list[dict]:
        """One reading per GPU: uuid, utilizationPct, powerW, energyMj, up."""
        ...


class SimulatedGpus:
    def __init__(
        self,
        node_id: int,
        gpu_count: int,
        reference_power_w: int,
        seed: int = 0,
        uuids: list[str] | None = None,
    ):
        self.profile = SimulatedFleet(seed).profile(node_id)
        self.reference_power_w = reference_power_w
        self.uuids = uuids or [f"GPU-sim{seed:04x}-{node_id:08x}-{i:04x}" for i in range(gpu_count)]
        self._rng = random.Random(f"gpucap-agent:{seed}:{node_id}")
        self._energy_mj = [self._rng.randint(10**9, 10**12) for _ in self.uuids]
        self._last = time.time()

    def read(self, now: float) -> list[dict]:
        p = self.profile
        day = (now / 86_400 + p.phase) * 2 * math.pi
        out = []
        for i, uuid in enumerate(self.uuids):
            util = min(1.0, max(0.0, p.base_utilization + p.diurnal_amplitude * math.sin(day)))
            power = self.reference_power_w * (IDLE_DRAW + (1 - IDLE_DRAW) * util) * p.efficiency
            self._energy_mj[i] += int(power * max(0.0, now - self._last) * 1000)
            out.append(
                {
                    "uuid": uuid,
                    "utilizationPct": round(util * 100, 3),
                    "powerW": round(power, 3),
                    "energyMj": self._energy_mj[i],
                    "up": True,
                }
            )
        self._last = now
        return out


class NvmlGpus:
    """The local GPUs through the oracle's NVML collector, addressed by UUID."""

    def __init__(self) -> None:
        import pynvml

        from oracle.collectors.nvml import NvmlCollector

        self._collector = NvmlCollector(node_id=1)  # raises CollectorUnavailable without a GPU
        self.uuids = [str(pynvml.nvmlDeviceGetUUID(h)) for h in self._collector._handles]

    def read(self, now: float) -> list[dict]:
        readings = self._collector.poll(now)
        return [
            {
                "uuid": self.uuids[i],
                "utilizationPct": r.sample.utilization_pct,
                "powerW": r.sample.power_w,
                "energyMj": r.sample.energy_mj,
                "up": r.sample.up,
            }
            for i, r in enumerate(readings)
        ]
