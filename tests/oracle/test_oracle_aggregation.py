"""Epoch aggregation rules (oracle/aggregation.py): gaps, resets, skew, nonsense."""

from __future__ import annotations

import pytest

from oracle.aggregation import AggregationPolicy, NodeFigures, Rejection, aggregate
from oracle.collectors.base import DeviceSeries, NodeTelemetry, Sample
from oracle.telemetry import EpochWindow, NodeInfo

WINDOW = EpochWindow(epoch=7, start=10_000, end=10_600)  # 600 s
NODE = NodeInfo(node_id=4, gpu_count=1, reference_power_w=700)
NOW = 20_000.0
INTERVAL = 60.0


def steady(
    util: float = 50.0,
    power: float = 400.0,
    times=None,
    counter_start: int = 10**10,  # mJ: ~2.8 kWh since the driver loaded
    up: bool = True,
) -> list[Sample]:
    """Samples every 60 s from one interval before the window to its end, counter
    advancing at ``power`` watts."""
    times = list(times if times is not None else range(9_940, 10_601, 60))
    return [
        Sample(t, util, power, counter_start + int(power * (t - times[0]) * 1000), up)
        for t in times
    ]


def run(*series: DeviceSeries, node: NodeInfo = NODE, now: float = NOW) -> NodeFigures | Rejection:
    return aggregate(node, NodeTelemetry(node.node_id, list(series), INTERVAL), WINDOW, now)


def figures(*series: DeviceSeries, node: NodeInfo = NODE) -> NodeFigures:
    result = run(*series, node=node)
    assert isinstance(result, NodeFigures), result
    return result


def test_full_coverage_steady_node():
    f = figures(DeviceSeries("gpu0", steady()))
    m = f.measurement
    assert (m.uptime_bps, m.utilization_bps, m.sample_coverage_bps) == (10_000, 5_000, 10_000)
    assert m.energy_wh == 400 * 600 // 3600  # 66 Wh
    assert m.milli_gpu_hours == 600 * 1000 // 3600  # 166
    assert f.energy_from_counter
    assert f.busy_gpu_hours_per_mwh == pytest.approx((300 / 3600) / (400 * 600 / 3.6e9))
    assert f.power_ratio(700) == pytest.approx(400 / 700)


def test_gap_is_missing_data_not_idleness_or_zero_energy():
    times = [t for t in range(9_940, 10_601, 60) if not 10_120 <= t <= 10_360]  # 5 samples lost
    f = figures(DeviceSeries("gpu0", steady(times=times)))
    m = f.measurement
    # held: 9940→10060 covers 10000..10060 (60 s: 10060+120 cap reaches 10180 only if no
    # next sample: next is 10420, so 10060 holds 120 s → 10180), 10420.. 10600 (180 s).
    assert m.sample_coverage_bps == (60 + 120 + 180) * 10_000 // 600
    assert m.uptime_bps == 10_000  # the gap is not downtime
    assert m.utilization_bps == 5_000  # nor idleness
    assert m.energy_wh == 66  # the counter kept counting across the gap
    assert m.milli_gpu_hours == 360 * 1000 // 3600  # delivery only where witnessed


def test_energy_in_joules_with_its_coverage_and_busy_gpu_seconds():
    m = figures(DeviceSeries("gpu0", steady())).measurement
    assert m.energy_joules == 400 * 600  # exact joules; energy_wh is derived from them
    assert (m.energy_coverage_bps, m.utilization_coverage_bps) == (10_000, 10_000)
    assert m.busy_gpu_seconds == 300  # 600 s × 50 %


def test_unknown_energy_publishes_zero_with_coverage_zero():
    """A GPU seen down all epoch (no power, no counter) is observed, but its energy is
    unknown: 0 J with energy coverage 0, never an invented "drew nothing"."""
    samples = [Sample(t, None, None, None, False) for t in range(9_940, 10_601, 60)]
    m = figures(DeviceSeries("gpu0", samples)).measurement
    assert (m.sample_coverage_bps, m.uptime_bps, m.utilization_coverage_bps) == (10_000, 0, 10_000)
    assert (m.energy_joules, m.energy_coverage_bps) == (0, 0)
    # One GPU of two with power readings: half the GPU-time's energy is known.
    two = NodeInfo(node_id=4, gpu_count=2, reference_power_w=700)
    powered = [Sample(t, 50.0, 400.0, None) for t in range(9_940, 10_601, 60)]
    m = figures(DeviceSeries("gpu0", samples), DeviceSeries("gpu1", powered), node=two).measurement
    assert (m.energy_coverage_bps, m.energy_joules) == (5_000, 400 * 600)


def test_a_lone_counter_reading_is_unknown_energy_not_zero():
    samples = [Sample(10_300, 50.0, None, 10**10, True)]
    m = figures(DeviceSeries("gpu0", samples)).measurement
    assert (m.energy_joules, m.energy_coverage_bps) == (0, 0)


def test_gap_without_counter_fills_with_observed_average_power():
    times = [9_940, 10_000, 10_060, 10_540]
    samples = [Sample(t, 80.0, 300.0, None) for t in times]
    f = figures(DeviceSeries("gpu0", samples))
    assert not f.energy_from_counter
    assert f.measurement.energy_wh == 300 * 600 // 3600


def test_no_data_at_all_is_a_zero_coverage_leaf_not_a_rejection():
    result = aggregate(NODE, None, WINDOW, NOW)
    assert isinstance(result, NodeFigures)
    m = result.measurement
    assert (m.sample_coverage_bps, m.uptime_bps, m.milli_gpu_hours, m.energy_wh) == (0, 0, 0, 0)


def test_counter_reset_counts_energy_since_the_reset():
    samples = steady()
    # reboot between 10180 and 10240: the counter restarts near zero
    after = [
        Sample(s.t, s.utilization_pct, s.power_w, int(400 * (s.t - 10_210) * 1000), True)
        for s in samples
        if s.t >= 10_240
    ]
    f = figures(DeviceSeries("gpu0", [s for s in samples if s.t < 10_240] + after))
    # lost: the 30 s before the reset inside that interval (400 W × 30 s)
    assert f.energy_j == pytest.approx(400 * 600 - 400 * 30)


def test_counter_running_backwards_excludes_the_node():
    samples = steady()
    samples[5] = Sample(samples[5].t, 50.0, 400.0, samples[2].energy_mj)
    result = run(DeviceSeries("gpu0", samples))
    assert isinstance(result, Rejection)
    assert "ran backwards" in result.reason and result.node_id == NODE.node_id


def test_energy_faster_than_the_class_can_draw_excludes_the_node():
    result = run(DeviceSeries("gpu0", steady(power=1_500)))  # > 2 × 700 W
    assert isinstance(result, Rejection)
    assert "plausible 1400 W" in result.reason


@pytest.mark.parametrize("util", [100.5, -1.0])
def test_utilization_outside_0_100_excludes_the_node(util):
    samples = steady()
    samples[3] = Sample(samples[3].t, util, 400.0, samples[3].energy_mj)
    result = run(DeviceSeries("gpu0", samples))
    assert isinstance(result, Rejection) and "outside 0..100" in result.reason


def test_negative_energy_and_power_exclude_the_node():
    bad_energy = steady()
    bad_energy[0] = Sample(bad_energy[0].t, 50.0, 400.0, -5)
    assert "negative" in run(DeviceSeries("gpu0", bad_energy)).reason
    bad_power = steady()
    bad_power[1] = Sample(bad_power[1].t, 50.0, -3.0, bad_power[1].energy_mj)
    assert "power -3.0 W" in run(DeviceSeries("gpu0", bad_power)).reason


def test_more_gpus_than_registered_excludes_the_node():
    result = run(DeviceSeries("gpu0", steady()), DeviceSeries("gpu1", steady()))
    assert isinstance(result, Rejection) and "registry says 1" in result.reason


def test_clock_stepping_back_is_resorted_not_double_counted():
    samples = steady()
    shuffled = samples[5:] + samples[:5]  # arrival order after an NTP step back
    assert figures(DeviceSeries("gpu0", shuffled)) == figures(DeviceSeries("gpu0", samples))


def test_duplicate_timestamps_count_once():
    samples = steady()
    doubled = sorted(samples + samples[2:4], key=lambda s: s.t)
    assert figures(DeviceSeries("gpu0", doubled)) == figures(DeviceSeries("gpu0", samples))


def test_timestamps_from_the_future_exclude_the_node():
    result = run(DeviceSeries("gpu0", steady()), now=10_500)
    assert isinstance(result, Rejection) and "in the future (clock skew)" in result.reason


def test_small_skew_within_tolerance_is_accepted():
    policy = AggregationPolicy(max_future_skew_s=5.0)
    telemetry = NodeTelemetry(NODE.node_id, [DeviceSeries("gpu0", steady())], INTERVAL)
    assert isinstance(aggregate(NODE, telemetry, WINDOW, 10_596.0, policy), NodeFigures)


def test_outage_counts_as_observed_downtime():
    samples = [
        Sample(
            s.t,
            0.0 if 10_120 <= s.t < 10_300 else s.utilization_pct,
            s.power_w,
            s.energy_mj,
            not 10_120 <= s.t < 10_300,
        )
        for s in steady()
    ]
    m = figures(DeviceSeries("gpu0", samples)).measurement
    assert m.sample_coverage_bps == 10_000
    assert m.uptime_bps == 7_000  # 180 of 600 s down
    assert m.utilization_bps == 3_500
    assert m.milli_gpu_hours == 420 * 1000 // 3600


def test_multi_gpu_node_weights_devices_and_counts_missing_gpus_as_unobserved():
    node = NodeInfo(node_id=4, gpu_count=4, reference_power_w=700)
    f = figures(
        DeviceSeries("gpu0", steady(util=100)),
        DeviceSeries("gpu1", steady(util=0)),
        DeviceSeries("gpu2", steady(util=50)),
        node=node,
    )
    m = f.measurement
    assert m.sample_coverage_bps == 7_500  # gpu3 never reported
    assert m.uptime_bps == 10_000
    assert m.utilization_bps == 5_000
    assert m.energy_wh == 3 * 400 * 600 // 3600
    assert m.milli_gpu_hours == 3 * 600 * 1000 // 3600


def test_a_drop_to_a_small_value_is_a_reset_but_to_a_large_one_is_backwards():
    """The line between the two: could the new value have accumulated since the
    previous reading at the plausible maximum power (2 × 700 W × 60 s = 84 kJ)?"""
    base = steady()
    reset = list(base)
    reset[5] = Sample(base[5].t, 50.0, 400.0, 80_000_000)  # 80 kJ ≤ 84 kJ
    reset[6:] = [
        Sample(s.t, 50.0, 400.0, 80_000_000 + int(400 * (s.t - base[5].t) * 1000)) for s in base[6:]
    ]
    assert isinstance(run(DeviceSeries("gpu0", reset)), NodeFigures)
    backwards = list(reset)
    backwards[5] = Sample(base[5].t, 50.0, 400.0, 90_000_000)  # 90 kJ > 84 kJ
    assert "ran backwards" in run(DeviceSeries("gpu0", backwards)).reason


def test_node_level_series_counts_power_and_energy_as_totals():
    """A series standing for 4 GPUs reports the node's total power, not per GPU."""
    node = NodeInfo(node_id=4, gpu_count=4, reference_power_w=700)
    with_counter = figures(DeviceSeries("node", steady(power=1_600), gpus=4), node=node)
    power_only = [Sample(s.t, 50.0, 1_600.0, None) for s in steady()]
    without = figures(DeviceSeries("node", power_only, gpus=4), node=node)
    for f in (with_counter, without):
        assert f.measurement.energy_wh == 1_600 * 600 // 3600
        assert f.measurement.milli_gpu_hours == 4 * 600 * 1000 // 3600
        assert f.power_ratio(700) == pytest.approx(400 / 700)
    assert with_counter.energy_from_counter and not without.energy_from_counter
