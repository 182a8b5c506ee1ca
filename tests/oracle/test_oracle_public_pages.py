"""More real dcgm-exporter pages from public repositories, served over real HTTP.

Four pages of other GPU models and exporter generations than
test_oracle_real_telemetry.py's (tests/oracle/data/README.md says where each comes
from): a busy Tesla T4 whose page has no HELP/TYPE lines, an RTX 4000 Ada page with
Kubernetes pod labels and an XID line carrying ``err_code``/``err_msg``, NVIDIA's own
MIG example from the dcgm-exporter 2.x documentation (an A100, indented, profiling
fields only, no ``modelName``, the board's activity listed beside one instance's), and
an 8 × H100 host whose page (a grep of the real one) has power but no energy counter.

Every published figure is checked against a hand computation written beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oracle.aggregation import NodeFigures, aggregate
from oracle.collectors.base import PolledSource, Sample, SampleStore
from oracle.collectors.dcgm import DcgmCollector, parse_dcgm_page
from oracle.telemetry import EpochWindow, NodeInfo
from tests.oracle.test_oracle_real_telemetry import exporters, url  # noqa: F401 (fixture)

DATA = Path(__file__).parent / "data"
T4 = (DATA / "dcgm_t4.txt").read_text()
RTX4000ADA = (DATA / "dcgm_rtx4000ada.txt").read_text()
A100_MIG = (DATA / "dcgm_a100_mig_docs.txt").read_text()
H100X8 = (DATA / "dcgm_h100x8_sampled.txt").read_text()

# Energy each GPU's counter gains in 6 s at its page's power, in mJ (W × 6 s × 1000).
T4_STEP_MJ = 409_464  # 68.244 W
RTX_STEP_MJ = 245_874  # 40.979 W
A100_STEP_MJ = 2_458_152  # 409.692 W
# The H100 page has no counter: its energy is the integral of these powers (W).
H100_W = [67.268, 67.616, 66.477, 69.523, 66.297, 66.324, 115.220, 69.424]

# The counter line of any page: indented or not, ``gpu`` anywhere among the labels.
_ENERGY_LINE = re.compile(
    r'^(\s*DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION\{[^}]*\bgpu="(\d+)"[^}]*\}) (\d+)$', re.MULTILINE
)


def advanced(page: str, steps: dict[int, int], k: int) -> str:
    """The page with every GPU's energy counter moved on by k steps."""
    new, count = _ENERGY_LINE.subn(
        lambda m: f"{m.group(1)} {int(m.group(3)) + k * steps[int(m.group(2))]}", page
    )
    assert count == len(steps)
    return new


# -- parsing ------------------------------------------------------------------------


class TestParsing:
    def test_t4_page_without_help_or_type_lines(self):
        assert "# HELP" not in T4 and "# TYPE" not in T4
        page = parse_dcgm_page(T4, 2.0)
        # GPU_UTIL (91 %) is the busy share; GR_ENGINE_ACTIVE (0.156) is not used beside it
        assert page.samples == {"gpu0": Sample(2.0, 91.0, 68.244, 15_152_422_938, True)}
        assert page.rejected == {} and page.skipped_lines == 0

    def test_rtx_4000_ada_page_with_pod_labels_and_xid_reason_labels(self):
        page = parse_dcgm_page(RTX4000ADA, 2.0)
        assert page.samples == {"gpu0": Sample(2.0, 0.0, 40.979, 455_497_156, True)}

    def test_h100_page_without_energy_counter_gives_power_only(self):
        page = parse_dcgm_page(H100X8, 2.0)
        # gpu6 carries container/namespace/pod labels on every line: still one reading
        assert page.samples == {
            f"gpu{i}": Sample(2.0, 0.0, w, None, True) for i, w in enumerate(H100_W)
        }

    def test_indented_page_is_read_as_prometheus_reads_it(self):
        # NVIDIA's documented MIG example is indented (reST); Prometheus's own parser
        # skips leading blanks, the oracle's line filter used to drop every line.
        assert all(line.startswith("   ") for line in A100_MIG.splitlines() if line)
        page = parse_dcgm_page(A100_MIG, 2.0)
        assert sorted(page.samples) == ["gpu0"]
        gpu0 = page.samples["gpu0"]
        assert (gpu0.power_w, gpu0.energy_mj, gpu0.up) == (409.692, 319_159_391, True)

    def test_mig_board_activity_that_contradicts_its_instances_is_unknown(self, caplog):
        # the board reads 0.995630; its one listed 1g instance (of 7 slices) 0.995687,
        # which weighted by slices is 14.2 %: the page does not say which is true
        gpu0 = parse_dcgm_page(A100_MIG, 2.0).samples["gpu0"]
        assert gpu0.utilization_pct is None
        assert "MIG GPU activity 99.6 % but its listed instances make 14.2 %" in caplog.text

    def test_mig_board_activity_that_agrees_with_its_instances_is_taken(self):
        board = 'Hostname="ub20-a100-k8s"} 0.995630'
        assert A100_MIG.count(board) == 1
        page = A100_MIG.replace(board, 'Hostname="ub20-a100-k8s"} 0.150000')
        # |15.0 - 100 × 0.995687 / 7| = |15.0 - 14.22| ≤ 5 points: the board's own figure
        assert parse_dcgm_page(page, 2.0).samples["gpu0"].utilization_pct == pytest.approx(15.0)


# -- served over HTTP, scraped, aggregated ----------------------------------------------


@pytest.fixture
def scraped(exporters):  # noqa: F811 (the imported fixture)
    """The four pages on four nodes, 11 polls 6 s apart, counters at each page's power."""
    store = SampleStore(retention_s=10**9)
    clock = [0.0]
    collector = DcgmCollector(
        {n: url(exporters, f"/node{n}") for n in (1, 2, 3, 4)}, clock=lambda: clock[0]
    )
    for k in range(11):
        exporters.pages["/node1"] = advanced(T4, {0: T4_STEP_MJ}, k)
        exporters.pages["/node2"] = advanced(RTX4000ADA, {0: RTX_STEP_MJ}, k)
        exporters.pages["/node3"] = advanced(A100_MIG, {0: A100_STEP_MJ}, k)
        exporters.pages["/node4"] = H100X8
        clock[0] = 1_000.0 + 6 * k
        readings = collector.poll(0.0)
        assert sorted({r.node_id for r in readings}) == [1, 2, 3, 4]
        store.add(readings, polled_at=clock[0])
    collector.close()
    window = EpochWindow(4, 1_000, 1_060)
    nodes = {
        1: NodeInfo(1, 1, 70),  # Tesla T4: 70 W board
        2: NodeInfo(2, 1, 130),  # RTX 4000 Ada Generation: 130 W
        3: NodeInfo(3, 1, 400),  # A100 SXM4: 400 W
        4: NodeInfo(4, 8, 700),  # H100 SXM5: 700 W
    }
    source = PolledSource(store, 6.0)
    assert source.observed_s(window) == 60.0
    telemetry = source.telemetry(list(nodes.values()), window)
    figures = {n: aggregate(node, telemetry[n], window, 2_000.0) for n, node in nodes.items()}
    assert all(isinstance(f, NodeFigures) for f in figures.values())
    return figures


class TestServedAndScraped:
    def test_busy_t4(self, scraped):
        f = scraped[1]
        m = f.measurement
        # one GPU seen and serving for all 60 s, 91 % busy
        assert (m.sample_coverage_bps, m.uptime_bps, m.utilization_coverage_bps) == (
            10_000,
            10_000,
            10_000,
        )
        assert m.utilization_bps == 9_100
        assert m.busy_gpu_seconds == 54  # floor(60 × 0.91 = 54.6)
        assert m.milli_gpu_hours == 16  # floor(60 × 1000 / 3600)
        # 10 counter steps inside the window: 10 × 409464 mJ
        assert f.energy_from_counter
        assert f.energy_j == pytest.approx(4_094.64)
        assert (m.energy_joules, m.energy_coverage_bps, m.energy_wh) == (4_094, 10_000, 1)
        assert f.power_ratio(70) == pytest.approx(4_094.64 / 60 / 70)  # 0.975: near its 70 W cap
        # 54.6 busy GPU-s / 3600 per (4094.64 J / 3.6e9 J per MWh)
        assert f.busy_gpu_hours_per_mwh == pytest.approx(54.6 / 3_600 / (4_094.64 / 3.6e9))

    def test_rtx_4000_ada_held_by_a_pod_but_idle(self, scraped):
        f = scraped[2]
        m = f.measurement
        assert (m.sample_coverage_bps, m.uptime_bps, m.utilization_bps) == (10_000, 10_000, 0)
        assert m.utilization_coverage_bps == 10_000 and m.busy_gpu_seconds == 0
        assert f.energy_j == pytest.approx(10 * 245.874)  # 2,458.74 J
        assert (m.energy_joules, m.energy_coverage_bps) == (2_458, 10_000)
        assert m.milli_gpu_hours == 16
        # 40.979 W of 130 W: 31.5 %, with its SM clock at 2310 MHz (a pod holds it)
        assert f.power_ratio(130) == pytest.approx(2_458.74 / 60 / 130)
        assert f.busy_gpu_hours_per_mwh == 0.0

    def test_a100_mig_energy_counted_once_utilization_unknown_not_idle(self, scraped):
        f = scraped[3]
        m = f.measurement
        # the board's activity and its instance's disagree: utilization unknown, so its
        # 60 s are a gap (coverage 0) and no GPU-hours are attested, never 0 % busy
        assert (m.sample_coverage_bps, m.utilization_coverage_bps) == (0, 0)
        assert (m.uptime_bps, m.utilization_bps, m.milli_gpu_hours, m.busy_gpu_seconds) == (
            0,
            0,
            0,
            0,
        )
        # its energy is still measured: 10 × 2458152 mJ from the board's one counter
        assert f.energy_from_counter
        assert f.energy_j == pytest.approx(24_581.52)
        assert (m.energy_joules, m.energy_coverage_bps, m.energy_wh) == (24_581, 10_000, 6)

    def test_h100_host_energy_from_power_when_the_page_has_no_counter(self, scraped):
        f = scraped[4]
        m = f.measurement
        assert (m.sample_coverage_bps, m.uptime_bps, m.utilization_bps) == (10_000, 10_000, 0)
        assert m.utilization_coverage_bps == 10_000
        assert m.milli_gpu_hours == 133  # floor(8 × 60 × 1000 / 3600)
        # no counter: Σ power × 60 s = 588.149 W × 60 s
        assert not f.energy_from_counter
        assert f.energy_j == pytest.approx(sum(H100_W) * 60)  # 35,288.94 J
        assert (m.energy_joules, m.energy_coverage_bps, m.energy_wh) == (35_288, 10_000, 9)
        # idle draw: 35288.94 J / 480 GPU-s / 700 W = 10.5 % of reference
        assert f.power_ratio(700) == pytest.approx(sum(H100_W) / 8 / 700)
