"""Leaves for tests, built by the one encoder (gpucap.attestation.NodeLeaf.measured).

``test_leaf`` keeps the old short positional form (uptime, utilization, coverage,
energy, delivered) and fills the v2 fields the way the oracle would for a fully
observed node: both coverages equal the sample coverage (energy coverage 0 only
with 0 J, the leaf's "unknown"), busy GPU-seconds from the delivered hours and the
utilization, and the cumulative counters on ``base`` (the node's previous leaf).
"""

from __future__ import annotations

from gpucap.attestation import BPS, Cumulative, NodeLeaf


def test_leaf(
    node_id: int,
    epoch: int,
    uptime_bps: int = 10_000,
    utilization_bps: int = 5_000,
    coverage_bps: int = 10_000,
    energy_joules: int = 3_600_000,
    milli_gpu_hours: int = 0,
    *,
    base: Cumulative | NodeLeaf | None = None,
    passed: int = 0,
    failed: int = 0,
    energy_coverage_bps: int | None = None,
) -> NodeLeaf:
    if isinstance(base, NodeLeaf):
        base = Cumulative.of(base)
    if energy_coverage_bps is None:
        energy_coverage_bps = coverage_bps if energy_joules else 0
    return NodeLeaf.measured(
        node_id,
        epoch,
        uptime_bps=uptime_bps,
        utilization_bps=utilization_bps,
        sample_coverage_bps=coverage_bps,
        utilization_coverage_bps=coverage_bps,
        energy_coverage_bps=energy_coverage_bps,
        energy_joules=energy_joules,
        milli_gpu_hours=milli_gpu_hours,
        busy_gpu_seconds=milli_gpu_hours * 3_600 // 1_000 * utilization_bps // BPS,
        challenges_passed=passed,
        challenges_failed=failed,
        base=base or Cumulative(),
    )


test_leaf.__test__ = False  # a helper, not a pytest test
