"""The oracle on real telemetry: real dcgm-exporter pages over real HTTP, MIG, NVML,
unknown fields, counter against power, a sample store that survives a restart.

Fixtures are real public pages (tests/oracle/data/README.md says where from). Every
published figure is checked against a hand computation written out beside it.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from oracle.aggregation import AggregationPolicy, NodeFigures, Rejection, aggregate
from oracle.collectors.base import (
    DeviceSeries,
    NodeTelemetry,
    PolledSource,
    Reading,
    Sample,
    Sampler,
    SampleStore,
)
from oracle.collectors.dcgm import DcgmCollector, parse_dcgm_page
from oracle.collectors.nvml import NvmlCollector
from oracle.telemetry import EpochWindow, NodeInfo

DATA = Path(__file__).parent / "data"
A800 = (DATA / "dcgm_a800_mig.txt").read_text()
L40S = (DATA / "dcgm_l40s.txt").read_text()
L4 = (DATA / "dcgm_l4.txt").read_text()
UNRENDERABLE = "ERROR - FAILED TO CONVERT TO STRING"

# Hand-read from the A800 page: GPU 0's power is on its three MIG instance lines
# (78.174, 78.174, 78.446 W: one board, sampled three times), the others once.
A800_GPU0_W = (78.174 + 78.174 + 78.446) / 3
# Energy each GPU's counter gains in 6 s at the page's power, in mJ (W × 6 s × 1000).
A800_STEP_MJ = {
    0: 469_588,  # 234.794 W / 3 × 6000
    1: 335_652,  # 55.942 × 6000
    2: 322_512,  # 53.752 × 6000
    3: 341_940,  # 56.990 × 6000
    4: 351_858,  # 58.643 × 6000
    5: 327_486,  # 54.581 × 6000
    6: 342_870,  # 57.145 × 6000
    7: 330_066,  # 55.011 × 6000
}
L40S_STEP_MJ = 214_116  # 35.686 W × 6000
L4_STEP_MJ = 98_190  # 16.365 W × 6000

_ENERGY_LINE = re.compile(
    r'^(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION\{gpu="(\d+)".*\}) (\d+)$', re.MULTILINE
)


def advanced(page: str, steps: dict[int, int], k: int) -> str:
    """The page with every GPU's energy counter moved on by k steps."""
    return _ENERGY_LINE.sub(
        lambda m: f"{m.group(1)} {int(m.group(3)) + k * steps[int(m.group(2))]}", page
    )


def with_value(page: str, family: str, gpu: int, value: str, instance: str | None = None) -> str:
    """The page with one line's value replaced (the GPU's, or one MIG instance's)."""
    pattern = rf'^({family}\{{gpu="{gpu}",[^\n]*?'
    pattern += rf'GPU_I_ID="{instance}"[^\n]*?\}}) \S+$' if instance else r"\}) \S+$"
    new, count = re.subn(pattern, lambda m: f"{m.group(1)} {value}", page, flags=re.MULTILINE)
    assert count == 1, (family, gpu, instance, count)
    return new


def without_family(page: str, family: str) -> str:
    return "\n".join(line for line in page.splitlines() if family not in line) + "\n"


# -- real HTTP exporters -----------------------------------------------------------


class _Exporters(BaseHTTPRequestHandler):
    """``server.pages[path]`` answered at once; ``/late`` after ``server.late_s``;
    ``/slow`` one byte at a time until ``server.release`` is set."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        if self.path == "/slow":
            self._trickle(server)  # type: ignore[arg-type]
            return
        if self.path == "/truncated":  # an exporter that dies halfway through its answer
            self._headers(len(L40S))
            self.wfile.write(L40S.encode()[:100])
            self.close_connection = True
            return
        if self.path == "/late":
            server.release.wait(server.late_s)  # type: ignore[attr-defined]
            body = server.pages["/late"].encode()  # type: ignore[attr-defined]
        elif self.path in server.pages:  # type: ignore[attr-defined]
            body = server.pages[self.path].encode()  # type: ignore[attr-defined]
        else:
            self.send_error(404)
            return
        if "gzip" in self.path:  # what the exporter's promhttp does when asked
            body = gzip.compress(body)
        self._headers(len(body), gzipped="gzip" in self.path)
        self.wfile.write(body)

    def _headers(self, length: int, gzipped: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _trickle(self, server) -> None:
        body = server.pages["/slow"].encode()
        self._headers(len(body))
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if server.release.wait(0.05):
                    return
            server.slow_finished.set()
        except OSError:
            return  # the scraper hung up: what a deadline does

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


@pytest.fixture
def exporters():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporters)
    server.daemon_threads = True
    server.pages = {}  # type: ignore[attr-defined]
    server.late_s = 0.0  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    server.slow_finished = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


# -- parsing real pages --------------------------------------------------------------


class TestRealPages:
    def test_a800_mig_page_with_unrenderable_lines(self):
        assert A800.count(UNRENDERABLE) == 10
        with pytest.raises(ValueError):  # what used to blank this node: the whole page
            list(text_string_to_metric_families(A800))

        page = parse_dcgm_page(A800, 7.0)

        assert page.rejected == {} and page.skipped_lines == 0
        assert sorted(page.samples) == [f"gpu{i}" for i in range(8)]
        gpu0 = page.samples["gpu0"]  # three MIG instances, one board
        assert gpu0.power_w == pytest.approx(A800_GPU0_W)  # 78.2647 W, not 234.8 W
        assert gpu0.energy_mj == 257_858_316  # once, not three times
        assert gpu0.utilization_pct == 0.0  # from GR_ENGINE_ACTIVE: no GPU_UTIL for MIG
        assert gpu0.up and gpu0.t == 7.0
        assert page.samples["gpu4"] == Sample(7.0, 0.0, 58.643, 196_329_125, True)

    def test_l40s_page(self):
        page = parse_dcgm_page(L40S, 3.0)
        assert page.samples == {"gpu0": Sample(3.0, 0.0, 35.686, 5_551_899_580, True)}

    def test_l4_page(self):
        # an idle L4 whose page also carries the profiling fields (GR_ENGINE_ACTIVE 0.0)
        page = parse_dcgm_page(L4, 3.0)
        assert page.rejected == {} and page.skipped_lines == 0
        assert page.samples == {"gpu0": Sample(3.0, 0.0, 16.365, 4_742_776, True)}

    def test_mig_utilization_weights_instances_by_slices(self):
        busy = with_value(A800, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0, "0.500000", instance="3")
        busy = with_value(busy, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0, "0.250000", instance="5")
        gpu0 = parse_dcgm_page(busy, 1.0).samples["gpu0"]
        # three 2g instances of a 7-slice A800: (2 × 0.5 + 2 × 0.25 + 2 × 0) / 7
        assert gpu0.utilization_pct == pytest.approx(100 * 1.5 / 7)  # 21.43 %

    def test_mig_gpu_without_activity_field_is_unknown_not_idle(self):
        page = parse_dcgm_page(without_family(A800, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"), 1.0)
        assert page.samples["gpu0"].utilization_pct is None
        assert page.samples["gpu0"].energy_mj == 257_858_316  # its energy is kept
        assert page.samples["gpu1"].utilization_pct == 0.0  # DCGM_FI_DEV_GPU_UTIL

    def test_unrenderable_value_in_a_field_we_read_costs_that_value_only(self, caplog):
        page = parse_dcgm_page(with_value(A800, "DCGM_FI_DEV_POWER_USAGE", 3, UNRENDERABLE), 1.0)
        assert page.skipped_lines == 1 and page.rejected == {}
        assert page.samples["gpu3"] == Sample(1.0, 0.0, None, 190_722_266, True)
        assert "1 line(s) of wanted DCGM fields could not be parsed" in caplog.text

    @pytest.mark.parametrize(
        ("family", "value", "reason"),
        [
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "+Inf", "is inf, not a finite number"),
            ("DCGM_FI_DEV_POWER_USAGE", "NaN", "is nan, not a finite number"),
            ("DCGM_FI_DEV_GPU_UTIL", "-Inf", "is -inf, not a finite number"),
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "7.5", "is 7.5, not a ratio in 0..1"),
        ],
    )
    def test_a_non_finite_or_impossible_value_drops_that_gpu_only(self, family, value, reason):
        page = parse_dcgm_page(with_value(A800, family, 2, value), 1.0)
        assert sorted(page.samples) == [f"gpu{i}" for i in (0, 1, 3, 4, 5, 6, 7)]
        assert reason in page.rejected["gpu2"]


# -- scraping over HTTP ----------------------------------------------------------------


class TestScraping:
    def test_infinite_counter_on_one_gpu_loses_nothing_else(self, exporters, caplog):
        exporters.pages["/a800"] = with_value(
            A800, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 2, "+Inf"
        )
        exporters.pages["/l40s"] = L40S
        broken = with_value(L40S, "DCGM_FI_DEV_GPU_UTIL", 0, UNRENDERABLE)
        exporters.pages["/l40s-no-util"] = with_value(
            broken, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0, UNRENDERABLE
        )
        collector = DcgmCollector(
            {
                1: url(exporters, "/a800"),
                2: url(exporters, "/l40s"),
                3: url(exporters, "/l40s-no-util"),
            }
        )
        readings = collector.poll(0.0)  # no OverflowError out of the poll
        by_node: dict[int, list[str]] = {}
        for r in readings:
            by_node.setdefault(r.node_id, []).append(r.device)
        assert by_node == {
            1: [f"gpu{i}" for i in (0, 1, 3, 4, 5, 6, 7)],
            2: ["gpu0"],
            3: ["gpu0"],
        }
        assert "node 1 gpu2: reading dropped: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION is inf" in (
            caplog.text
        )
        node3 = next(r.sample for r in readings if r.node_id == 3)
        assert node3.utilization_pct is None and node3.power_w == 35.686  # unknown, not 0 %

    def test_an_answer_cut_short_costs_that_node_only(self, exporters, caplog):
        exporters.pages["/l40s"] = L40S
        collector = DcgmCollector({1: url(exporters, "/truncated"), 2: url(exporters, "/l40s")})
        readings = collector.poll(0.0)
        assert [(r.node_id, r.device) for r in readings] == [(2, "gpu0")]
        assert "node 1: dcgm-exporter at" in caplog.text and "unreachable" in caplog.text

    def test_gzip_encoded_page(self, exporters):
        exporters.pages["/a800-gzip"] = A800
        readings = DcgmCollector({1: url(exporters, "/a800-gzip")}).poll(0.0)
        assert len(readings) == 8 and readings[0].sample.energy_mj == 257_858_316

    def test_slow_exporter_does_not_hold_the_poll_and_readings_are_stamped_on_arrival(
        self, exporters, caplog
    ):
        exporters.pages["/slow"] = L40S  # 7.6 kB at a byte per 50 ms: over 6 minutes
        exporters.pages["/fast"] = L40S
        exporters.pages["/late"] = L40S
        exporters.late_s = 0.3
        collector = DcgmCollector(
            {1: url(exporters, "/slow"), 2: url(exporters, "/fast"), 3: url(exporters, "/late")},
            deadline_s=1.0,
        )
        started = time.time()
        readings = collector.poll(started)

        assert not exporters.slow_finished.is_set()  # returned while node 1 was still sending
        assert [r.node_id for r in readings] == [2, 3]
        assert "node 1: " in caplog.text and "did not answer within the 1.0s poll deadline" in (
            caplog.text
        )
        fast, late = (r.sample.t for r in readings)
        # the late exporter answered at least 0.3 s after the poll began, and its
        # reading carries that time, not the poll's start
        assert fast >= started and late >= started + 0.3 and late > fast

    def test_a800_and_l40s_served_and_scraped_give_hand_computed_figures(self, exporters):
        """11 scrapes 6 s apart with the counters advancing at each GPU's own power."""
        store = SampleStore(retention_s=10**9)
        clock = [0.0]
        collector = DcgmCollector(
            {1: url(exporters, "/a800"), 2: url(exporters, "/l40s")}, clock=lambda: clock[0]
        )
        for k in range(11):
            exporters.pages["/a800"] = advanced(A800, A800_STEP_MJ, k)
            exporters.pages["/l40s"] = advanced(L40S, {0: L40S_STEP_MJ}, k)
            clock[0] = 1_000.0 + 6 * k
            store.add(collector.poll(0.0), polled_at=clock[0])
        window = EpochWindow(4, 1_000, 1_060)
        a800 = NodeInfo(1, 8, 400)  # A100/A800 class: 400 W
        l40s = NodeInfo(2, 1, 350)
        source = PolledSource(store, 6.0)
        telemetry = source.telemetry([a800, l40s], window)
        assert source.observed_s(window) == 60.0

        f = aggregate(a800, telemetry[1], window, 2_000.0)
        assert isinstance(f, NodeFigures)
        # 8 GPUs seen for all 60 s, all serving, all idle
        assert f.measurement.sample_coverage_bps == 10_000
        assert f.measurement.uptime_bps == 10_000
        assert f.measurement.utilization_bps == 0
        # 10 counter steps inside the window, GPU 0 counted once:
        # 10 × (469588 + 335652 + 322512 + 341940 + 351858 + 327486 + 342870 + 330066) mJ
        assert f.energy_j == pytest.approx(10 * 2_821_972 / 1000)  # 28,219.72 J
        assert f.measurement.energy_wh == 7  # floor(28219.72 / 3600)
        assert f.measurement.milli_gpu_hours == 133  # floor(8 × 60 × 1000 / 3600)
        # efficiency: nothing busy; idle draw 28219.72 J / 480 GPU-s / 400 W
        assert f.busy_gpu_hours_per_mwh == 0.0
        assert f.power_ratio(400) == pytest.approx(28_219.72 / 480 / 400)  # 0.147
        assert f.power_ratio(400) < 0.3  # idle draw is far below the old 30 % claim

        g = aggregate(l40s, telemetry[2], window, 2_000.0)
        assert isinstance(g, NodeFigures)
        assert g.measurement.sample_coverage_bps == 10_000
        assert g.energy_j == pytest.approx(10 * 214_116 / 1000)  # 2,141.16 J
        # whole Wh cannot say it: 0.59 Wh is published as 0 (a leaf-resolution limit)
        assert g.measurement.energy_wh == 0
        assert g.measurement.milli_gpu_hours == 16  # floor(60 × 1000 / 3600)
        assert g.power_ratio(350) == pytest.approx(2_141.16 / 60 / 350)  # 0.102

    def test_l4_served_and_scraped_gives_hand_computed_figures(self, exporters):
        """An idle L4 (72 W reference): 11 scrapes 6 s apart, its counter at 16.365 W."""
        store = SampleStore(retention_s=10**9)
        clock = [0.0]
        collector = DcgmCollector({3: url(exporters, "/l4")}, clock=lambda: clock[0])
        for k in range(11):
            exporters.pages["/l4"] = advanced(L4, {0: L4_STEP_MJ}, k)
            clock[0] = 1_000.0 + 6 * k
            store.add(collector.poll(0.0), polled_at=clock[0])
        window = EpochWindow(4, 1_000, 1_060)
        l4 = NodeInfo(3, 1, 72)
        f = aggregate(l4, PolledSource(store, 6.0).telemetry([l4], window)[3], window, 2e3)
        assert isinstance(f, NodeFigures)
        assert f.measurement.sample_coverage_bps == 10_000
        assert f.measurement.uptime_bps == 10_000
        assert f.measurement.utilization_bps == 0
        assert f.energy_j == pytest.approx(10 * 98_190 / 1000)  # 981.9 J
        assert f.measurement.energy_wh == 0  # 0.27 Wh: below the leaf's whole-Wh resolution
        assert f.measurement.milli_gpu_hours == 16  # floor(60 × 1000 / 3600)
        # idle draw 981.9 J / 60 s / 72 W = 22.7 % of reference: the top of the 7.5-23 % range
        assert f.power_ratio(72) == pytest.approx(981.9 / 60 / 72)

    def test_mig_node_without_activity_field_loses_coverage_not_utilization(self, exporters):
        store = SampleStore(retention_s=10**9)
        clock = [0.0]
        collector = DcgmCollector({1: url(exporters, "/a800")}, clock=lambda: clock[0])
        page = without_family(A800, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
        for k in range(11):
            exporters.pages["/a800"] = advanced(page, A800_STEP_MJ, k)
            clock[0] = 1_000.0 + 6 * k
            store.add(collector.poll(0.0), polled_at=clock[0])
        window = EpochWindow(4, 1_000, 1_060)
        node = NodeInfo(1, 8, 400)
        f = aggregate(node, PolledSource(store, 6.0).telemetry([node], window)[1], window, 2e3)
        assert isinstance(f, NodeFigures)
        # GPU 0's busy share is unknown: its 60 s are a gap, 7 of 8 GPUs observed
        assert f.measurement.sample_coverage_bps == 8_750
        assert f.measurement.uptime_bps == 10_000
        assert f.measurement.milli_gpu_hours == 116  # floor(7 × 60 × 1000 / 3600)
        # energy still counts every GPU's counter, GPU 0's included (once)
        assert f.energy_j == pytest.approx(10 * 2_821_972 / 1000)


# -- NVML ----------------------------------------------------------------------------


class _FakeDriver:
    """pynvml's own entry points answering with pynvml's own structures and errors
    for three GPUs: h0 plain, h1 in MIG mode, h2 plain; only the driver is replaced."""

    def __init__(self, monkeypatch) -> None:
        self.samples_since: list[int] = []
        self.samples = {"h0": [(1_000, 10), (2_000, 20), (3_000, 60)]}
        self.events: list[tuple[str, int]] = []
        handles = ["h0", "h1", "h2"]
        rates = pynvml.c_nvmlUtilization_t()
        rates.gpu = 91
        patch = {
            "nvmlInit": lambda: None,
            "nvmlShutdown": lambda: None,
            "nvmlDeviceGetCount": lambda: 3,
            "nvmlDeviceGetHandleByIndex": lambda i: handles[i],
            "nvmlDeviceGetIndex": handles.index,
            "nvmlDeviceGetMigMode": lambda h: [1, 1] if h == "h1" else [0, 0],
            "nvmlDeviceGetUtilizationRates": lambda h: _mig_refuses(h) or rates,
            "nvmlDeviceGetSamples": self._get_samples,
            "nvmlDeviceGetPowerUsage": lambda h: 250_000,
            "nvmlDeviceGetTotalEnergyConsumption": lambda h: 7_000_000,
            "nvmlDeviceGetTotalEccErrors": lambda h, kind, counter: 0,
            "nvmlDeviceGetMemoryInfo": lambda h: pynvml.c_nvmlMemory_t(),
            "nvmlDeviceGetTemperature": lambda h, sensor: 50,
            "nvmlEventSetCreate": lambda: "events",
            "nvmlDeviceRegisterEvents": lambda h, types, events: None,
            "nvmlEventSetWait_v2": self._wait,
        }
        for name, fn in patch.items():
            monkeypatch.setattr(pynvml, name, fn)

    def _get_samples(self, handle, sampling_type, since):
        assert sampling_type == pynvml.NVML_GPU_UTILIZATION_SAMPLES
        _mig_refuses(handle)
        self.samples_since.append(since)
        fresh = [(t, v) for t, v in self.samples.get(handle, []) if t > since]
        if not fresh:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        out = []
        for t, v in fresh:
            sample = pynvml.c_nvmlSample_t()
            sample.timeStamp = t
            sample.sampleValue.uiVal = v
            out.append(sample)
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, out

    def _wait(self, event_set, timeout_ms):
        assert timeout_ms == 0  # a poll never blocks on events
        if not self.events:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        handle, xid = self.events.pop(0)
        # c_nvmlEventData_t's fields; its device is a C handle, this driver's are names
        return _Event(handle, pynvml.nvmlEventTypeXidCriticalError, xid)


class _Event:
    def __init__(self, device: str, event_type: int, event_data: int) -> None:
        self.device = device
        self.eventType = event_type
        self.eventData = event_data


def _mig_refuses(handle):
    if handle == "h1":
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return None


class TestNvmlRealTelemetry:
    def test_mig_gpu_is_up_with_its_energy_and_unknown_utilization(self, monkeypatch):
        _FakeDriver(monkeypatch)
        readings = NvmlCollector(node_id=4).poll(10.0)
        # h1 answers NotSupported to both utilization queries: unknown, not down
        assert readings[1].sample == Sample(10.0, None, 250.0, 7_000_000, True)

    def test_utilization_is_the_mean_of_the_driver_samples_since_the_last_poll(self, monkeypatch):
        driver = _FakeDriver(monkeypatch)
        collector = NvmlCollector(node_id=4)
        first = collector.poll(10.0)
        assert first[0].sample.utilization_pct == pytest.approx((10 + 20 + 60) / 3)  # 30 %
        driver.samples["h0"].append((4_000, 90))
        second = collector.poll(20.0)
        assert second[0].sample.utilization_pct == 90.0  # only the sample after 3000 µs
        third = collector.poll(30.0)  # no new sample: the instant rate
        assert third[0].sample.utilization_pct == 91.0
        assert driver.samples_since[::2] == [0, 3_000, 4_000]  # h0's reads (h2's between)

    def test_fatal_xid_event_marks_the_gpu_down_and_it_stays_down(self, monkeypatch, caplog):
        driver = _FakeDriver(monkeypatch)
        collector = NvmlCollector(node_id=4)
        driver.events = [("h2", 79), ("h0", 13)]  # fallen off the bus; 13 is not fatal
        readings = collector.poll(10.0)
        assert [r.sample.up for r in readings] == [True, True, False]
        assert "gpu2: fatal XID 79" in caplog.text
        assert [r.sample.up for r in collector.poll(20.0)] == [True, True, False]


# -- aggregation: unknown is not zero; counter against power --------------------------

WINDOW = EpochWindow(1, 0, 60)
TEN_S = [0, 10, 20, 30, 40, 50, 60]


def series(device: str, **fields) -> DeviceSeries:
    """Samples every 10 s over the window; ``energy_w`` makes a counter rising at that rate."""
    energy_w = fields.pop("energy_w", None)
    samples = [
        Sample(
            float(t),
            fields.get("util"),
            fields.get("power"),
            None if energy_w is None else 5_000_000_000 + int(energy_w * t * 1000),
            fields.get("up", True),
        )
        for t in TEN_S
    ]
    return DeviceSeries(device, samples)


def figures(node: NodeInfo, *devices: DeviceSeries) -> NodeFigures | Rejection:
    return aggregate(node, NodeTelemetry(node.node_id, list(devices), 10.0), WINDOW, 100.0)


class TestUnknownIsNotZero:
    NODE = NodeInfo(1, 2, 700)

    def test_missing_utilization_is_a_gap_not_idle(self):
        f = figures(self.NODE, series("gpu0", util=50.0, power=100.0), series("gpu1", power=100.0))
        assert isinstance(f, NodeFigures)
        m = f.measurement
        assert m.sample_coverage_bps == 5_000  # gpu1's 60 s are unknown: 60 of 120 GPU-s
        assert m.utilization_bps == 5_000  # 50 % over what was seen, not 25 %
        assert m.uptime_bps == 10_000
        assert m.milli_gpu_hours == 16  # floor(60 × 1000 / 3600): gpu1 not attested
        assert f.energy_j == pytest.approx(2 * 100 * 60)  # gpu1's power is still known

    def test_missing_power_and_counter_is_a_gap_not_zero_watts(self):
        f = figures(self.NODE, series("gpu0", util=50.0, power=100.0), series("gpu1", util=80.0))
        assert isinstance(f, NodeFigures)
        assert f.measurement.sample_coverage_bps == 5_000
        assert f.measurement.utilization_bps == 5_000
        assert f.energy_j == pytest.approx(100 * 60)  # gpu0's only, over gpu0's coverage

    def test_a_node_with_no_energy_at_all_has_no_coverage(self):
        f = figures(NodeInfo(1, 1, 700), series("gpu0", util=80.0))
        assert isinstance(f, NodeFigures)
        m = f.measurement
        # 0 Wh here comes with 0 coverage: nothing was attested, nothing is claimed
        assert (m.sample_coverage_bps, m.uptime_bps, m.milli_gpu_hours) == (0, 0, 0)

    def test_a_down_gpu_needs_no_utilization(self):
        f = figures(NodeInfo(1, 1, 700), series("gpu0", up=False))
        assert isinstance(f, NodeFigures)
        assert f.measurement.sample_coverage_bps == 10_000
        assert f.measurement.uptime_bps == 0


class TestCounterAgainstPower:
    NODE = NodeInfo(1, 1, 700)

    def test_frozen_counter_while_power_reads_200_w_is_excluded(self):
        r = figures(self.NODE, series("gpu0", util=90.0, power=200.0, energy_w=0))
        assert isinstance(r, Rejection)
        assert r.reason == (
            "gpu0: energy counter says 0 J (0.0 W) but its power readings integrate to"
            " 12000 J (200.0 W) over the same 60s"
        )

    def test_counter_at_a_tenth_of_the_power_integral_is_excluded(self):
        r = figures(self.NODE, series("gpu0", util=90.0, power=200.0, energy_w=20))
        assert isinstance(r, Rejection) and "says 1200 J (20.0 W)" in r.reason

    def test_counter_far_above_power_is_excluded_too(self):
        r = figures(self.NODE, series("gpu0", util=90.0, power=200.0, energy_w=400))
        assert isinstance(r, Rejection) and "says 24000 J (400.0 W)" in r.reason

    def test_counter_within_tolerance_is_accepted_and_used(self):
        f = figures(self.NODE, series("gpu0", util=90.0, power=200.0, energy_w=190))
        assert isinstance(f, NodeFigures)
        assert f.energy_j == pytest.approx(190 * 60)  # the counter, not the power readings
        assert f.measurement.energy_wh == 3  # floor(11400 / 3600)

    def test_idle_noise_is_within_the_floor(self):
        # 12 W against 5 W: 7 W apart, under the 10 W floor (25 % of 12 W is only 3 W)
        f = figures(self.NODE, series("gpu0", util=0.0, power=12.0, energy_w=5))
        assert isinstance(f, NodeFigures)

    def test_tolerance_is_a_policy(self):
        strict = AggregationPolicy(energy_power_tolerance=0.01, energy_power_floor_w=0)
        node = self.NODE
        telemetry = NodeTelemetry(1, [series("gpu0", util=9.0, power=200.0, energy_w=190)], 10)
        assert isinstance(aggregate(node, telemetry, WINDOW, 100.0, strict), Rejection)


# -- the sample store survives a restart ------------------------------------------------


def _reading(t: float, energy: int) -> Reading:
    return Reading(7, "gpu0", Sample(t, 40.0, 35.686, energy, True))


class TestSampleStoreOnDisk:
    def test_readings_and_polls_survive_a_restart(self, tmp_path):
        path = tmp_path / "samples.sqlite3"
        t0 = 1_700_000_000.0  # on-disk rows older than the retention are not read back
        store = SampleStore(retention_s=10**9, path=path)
        for k in range(3):
            t = t0 + 10 * k
            store.add([_reading(t, 5_000_000 + k * 356_860)], polled_at=t)
        # no close(): a killed process leaves only what was committed
        again = SampleStore(retention_s=10**9, path=path)
        assert again.window(7, 0, 2e9) == store.window(7, 0, 2e9)
        assert [s.energy_mj for s in again.window(7, 0, 2e9)[0].samples] == [
            5_000_000,
            5_356_860,
            5_713_720,
        ]
        # polls at +0, +10, +20 each hold ≤ 20 s: 10 + 10 + 20 s of [t0, t0 + 60)
        assert again.observed_s(t0, t0 + 60, 20) == 40.0
        assert again.observed_s(t0 + 100, t0 + 160, 20) == 0.0  # it was not looking then
        assert SampleStore(retention_s=60, path=path).window(7, 0, 2e9) == []  # too old
        rows = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
        assert rows == ("wal",)

    def test_prune_forgets_old_rows_on_disk_too(self, tmp_path):
        path = tmp_path / "samples.sqlite3"
        store = SampleStore(retention_s=100, path=path)
        store.add([_reading(t, 1) for t in (10.0, 50.0, 200.0)], polled_at=200.0)
        store.prune(now=140.0)
        assert [s.t for s in store.window(7, 0, 1_000)[0].samples] == [50.0, 200.0]
        count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        assert count == 2

    def test_a_poll_that_reads_nothing_still_records_that_the_oracle_looked(self, exporters):
        exporters.pages["/gone"] = "# nothing here\n"
        store = SampleStore(retention_s=3_600)
        sampler = Sampler(DcgmCollector({1: url(exporters, "/gone")}), store, interval_s=10)
        before = time.time()
        assert sampler.poll_once() == 0
        assert store.observed_s(before - 1, before + 60, 20) > 0
        assert store.window(1, 0, 10**12) == []
