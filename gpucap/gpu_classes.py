"""The standard GPU classes a deployment registers (reference figures per GPU).

referencePowerW is the board power limit (TDP) of one GPU; referenceThroughput
is dense BF16 TFLOPS; economic life and residual value follow the field view
that accelerators are worth little after 3-5 years (see shared/seeds).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuClassSpec:
    name: str
    reference_power_w: int
    reference_throughput: int
    economic_life_months: int
    residual_value_bps: int


STANDARD_CLASSES: tuple[GpuClassSpec, ...] = (
    GpuClassSpec("H100-SXM-80GB", 700, 989, 48, 1000),
    GpuClassSpec("A100-SXM-80GB", 400, 312, 48, 500),
    GpuClassSpec("L40S-48GB", 350, 362, 48, 800),
    GpuClassSpec("RTX-4090-24GB", 450, 165, 36, 1000),
)
