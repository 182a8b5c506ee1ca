"""Telemetry sources: the simulated fleet, dcgm-exporter over real HTTP, NVML."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pynvml
import pytest

from oracle.aggregation import NodeFigures, Rejection, aggregate
from oracle.collectors.base import (
    CollectorUnavailable,
    PolledSource,
    Reading,
    Sample,
    Sampler,
    SampleStore,
)
from oracle.collectors.dcgm import DcgmCollector, parse_dcgm_text
from oracle.collectors.nvml import NvmlCollector
from oracle.collectors.simulated import Behaviour, SimulatedFleet, synthetic_nodes
from oracle.config import OracleSettings
from oracle.telemetry import EpochWindow, NodeInfo

HOUR = EpochWindow(epoch=30, start=30 * 3_600, end=31 * 3_600)


# -- simulated fleet -----------------------------------------------------------


class TestSimulatedFleet:
    NODES = synthetic_nodes(3_000, seed=3)

    def test_deterministic_per_seed_node_and_epoch(self):
        a = SimulatedFleet(1).telemetry(self.NODES[:50], HOUR)
        assert a == SimulatedFleet(1).telemetry(self.NODES[:50], HOUR)
        assert a != SimulatedFleet(2).telemetry(self.NODES[:50], HOUR)
        later = EpochWindow(31, HOUR.end, HOUR.end + 3_600)
        assert a[1].series != SimulatedFleet(1).telemetry(self.NODES[:1], later)[1].series

    def test_ten_thousand_nodes(self):
        nodes = synthetic_nodes(10_000)
        telemetry = SimulatedFleet().telemetry(nodes, HOUR)
        # broken nodes are silent for about half of the epochs; all others report
        assert 9_900 <= len(telemetry) < 10_000
        assert {n.reference_power_w for n in nodes} == {700, 400, 350, 450}

    def test_honest_nodes_aggregate_to_physical_figures(self):
        fleet = SimulatedFleet()
        telemetry = fleet.telemetry(self.NODES, HOUR)
        for node in self.NODES:
            if fleet.profile(node.node_id).behaviour is not Behaviour.HONEST:
                continue
            f = aggregate(node, telemetry[node.node_id], HOUR, HOUR.end)
            assert isinstance(f, NodeFigures), (node, f)
            m = f.measurement
            assert m.utilization_bps <= m.uptime_bps
            assert m.milli_gpu_hours <= node.gpu_count * 1_000
            # idle 15 % .. degraded 140 % of reference power while up
            assert m.energy_wh <= node.gpu_count * node.reference_power_w * 1.4
            ratio = f.power_ratio(node.reference_power_w)
            assert ratio is None or 0.12 <= ratio <= 1.45

    def test_every_dishonest_behaviour_is_caught(self):
        fleet = SimulatedFleet()
        telemetry = fleet.telemetry(self.NODES, HOUR)
        caught: Counter[Behaviour] = Counter()
        for node in self.NODES:
            behaviour = fleet.profile(node.node_id).behaviour
            result = aggregate(node, telemetry.get(node.node_id), HOUR, HOUR.end)
            if isinstance(result, Rejection):
                caught[behaviour] += 1
        assert caught[Behaviour.HONEST] == 0 and caught[Behaviour.BROKEN] == 0
        for dishonest in (
            Behaviour.OVER_100_UTILIZATION,
            Behaviour.COUNTER_BACKWARDS,
            Behaviour.INFLATED_ENERGY,
        ):
            assert caught[dishonest] >= 1, dishonest

    def test_fleet_shows_outages_gaps_and_degraded_nodes(self):
        fleet = SimulatedFleet()
        telemetry = fleet.telemetry(self.NODES, HOUR)
        figures = [aggregate(n, telemetry.get(n.node_id), HOUR, HOUR.end) for n in self.NODES]
        ok = [f for f in figures if isinstance(f, NodeFigures)]
        assert any(f.measurement.uptime_bps < 9_000 for f in ok)  # outages
        assert any(0 < f.measurement.sample_coverage_bps < 9_500 for f in ok)  # gaps
        assert any(f.measurement.sample_coverage_bps == 0 for f in ok)  # broken, silent
        degraded = [n for n in self.NODES if fleet.profile(n.node_id).efficiency > 1.1]
        assert 0.08 < len(degraded) / len(self.NODES) < 0.17

    def test_diurnal_utilization(self):
        """Average utilization over the fleet moves with the time of day of each node."""
        fleet = SimulatedFleet()
        node = NodeInfo(1, 8, 700)
        utils = []
        for hour in range(24):
            window = EpochWindow(hour + 1, hour * 3_600, (hour + 1) * 3_600)
            f = aggregate(node, fleet.telemetry([node], window).get(1), window, window.end)
            utils.append(f.measurement.utilization_bps)
        assert max(utils) - min(utils) > 1_500


# -- dcgm-exporter -----------------------------------------------------------------

# Captured-format dcgm-exporter output (default counters file; labels as it emits them).
DCGM_TEXT = (Path(__file__).parent / "data" / "dcgm_exporter.txt").read_text()


class _Exporter(BaseHTTPRequestHandler):
    """Serves whatever ``self.server.body`` holds at /metrics."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = self.server.body.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


@pytest.fixture
def exporter():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    server.body = DCGM_TEXT  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def url(server, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


class TestDcgm:
    def test_parse_fields_and_health(self):
        samples = parse_dcgm_text(DCGM_TEXT, 100.0)
        assert samples["gpu0"] == Sample(100.0, 87.0, 612.457, 88_123_456_789, True)
        # XID 79: fallen off the bus → down
        assert samples["gpu1"] == Sample(100.0, 0.0, 71.201, 41_234_567_890, False)

    def test_scrapes_a_real_http_exporter(self, exporter):
        collector = DcgmCollector({5: url(exporter)})
        readings = collector.poll(1_000.0)
        assert [(r.node_id, r.device) for r in readings] == [(5, "gpu0"), (5, "gpu1")]
        assert readings[0].sample.energy_mj == 88_123_456_789

    def test_unreachable_or_garbage_target_is_a_gap_not_a_crash(self, exporter, caplog):
        dead = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
        dead_url = url(dead)
        dead.server_close()  # nothing listens there any more
        collector = DcgmCollector(
            {1: url(exporter), 2: dead_url, 3: url(exporter, "/nope")}, deadline_s=2
        )
        readings = collector.poll(1_000.0)
        assert {r.node_id for r in readings} == {1}
        assert "node 2: dcgm-exporter at" in caplog.text and "unreachable" in caplog.text
        exporter.body = "DCGM_FI_DEV_GPU_UTIL{gpu=0 oops\n"  # type: ignore[attr-defined]
        assert DcgmCollector({1: url(exporter)}).poll(1.0) == []
        assert "1 line(s) of wanted DCGM fields could not be parsed" in caplog.text
        assert "served no DCGM GPU fields" in caplog.text

    def test_sampler_store_and_aggregation_end_to_end(self, exporter):
        """Scrapes over HTTP feed a PolledSource whose epoch aggregates like any other."""
        store = SampleStore(retention_s=3_600)
        clock = [0.0]
        collector = DcgmCollector({5: url(exporter)}, clock=lambda: clock[0])
        counter = 88_123_456_789
        for k in range(11):  # one scrape every 6 s of "time", counter at 600 W
            body = DCGM_TEXT.replace("88123456789", str(counter + k * 600 * 6 * 1000))
            exporter.body = body  # type: ignore[attr-defined]
            clock[0] = 1_000.0 + 6 * k  # readings are stamped on arrival
            store.add(collector.poll(0.0))
        window = EpochWindow(3, 1_000, 1_060)
        node = NodeInfo(5, 2, 700)
        telemetry = PolledSource(store, 6.0).telemetry([node], window)
        f = aggregate(node, telemetry[5], window, 2_000.0)
        assert isinstance(f, NodeFigures)
        assert f.measurement.sample_coverage_bps == 10_000
        assert f.measurement.uptime_bps == 5_000  # gpu1 down (XID 79)
        # gpu0: 600 W from its counter; gpu1: 41234567890 mJ constant → 0
        assert f.energy_j == pytest.approx(600 * 60)

    def test_sampler_thread_polls_until_stopped(self, exporter):
        store = SampleStore(retention_s=60)
        sampler = Sampler(DcgmCollector({5: url(exporter)}), store, interval_s=0.05)
        sampler.start()
        try:
            for _ in range(200):
                series = store.window(5, 0, 10**12)
                if series and len(series[0].samples) >= 3:
                    break
                time.sleep(0.05)
        finally:
            sampler.stop()
        assert len(store.window(5, 0, 10**12)[0].samples) >= 3

    def test_settings_parse_targets(self):
        settings = OracleSettings(
            source="dcgm", dcgm_targets="1=http://a:9400/metrics, 2=http://b/m"
        )
        assert settings.dcgm_target_map() == {1: "http://a:9400/metrics", 2: "http://b/m"}
        with pytest.raises(ValueError, match="is not node_id=http"):
            OracleSettings(source="dcgm", dcgm_targets="a:9400")
        with pytest.raises(ValueError, match="required with source=dcgm"):
            OracleSettings(source="dcgm")


def test_store_keeps_time_order_and_prunes():
    store = SampleStore(retention_s=100)
    store.add([Reading(1, "gpu0", Sample(t, 1.0, 1.0, None)) for t in (50, 10, 30, 200)])
    assert [s.t for s in store.window(1, 0, 1_000)[0].samples] == [10, 30, 50, 200]
    store.prune(now=140)
    assert [s.t for s in store.window(1, 0, 1_000)[0].samples] == [50, 200]


# -- NVML --------------------------------------------------------------------------


def _host_has_gpu() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    finally:
        pynvml.nvmlShutdown()


HAS_GPU = _host_has_gpu()


class TestNvml:
    @pytest.mark.skipif(HAS_GPU, reason="this host has an NVIDIA GPU")
    def test_without_driver_says_so_clearly(self):
        with pytest.raises(CollectorUnavailable, match="no NVIDIA driver/GPU on this host"):
            NvmlCollector(node_id=1)

    def test_reads_every_field_through_pynvml(self, monkeypatch):
        """The device calls are pynvml's own entry points answering with pynvml's own
        structures and errors; only the driver behind them is replaced."""
        handles = ["h0", "h1", "h2"]
        util = {h: pynvml.c_nvmlUtilization_t() for h in handles}
        for h, value in zip(handles, (91, 12, 0), strict=True):
            util[h].gpu = value

        def utilization(handle):
            if handle == "h2":
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
            return util[handle]

        def ecc(handle, error_type, counter_type):
            assert (error_type, counter_type) == (
                pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                pynvml.NVML_VOLATILE_ECC,
            )
            if handle == "h1":
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # consumer board
            return 0

        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used = 80 * 2**30, 30 * 2**30
        monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 3)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: handles[i])
        monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", utilization)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", lambda h: 612_345)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda h: 9_000_000)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEccErrors", ecc)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: memory)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", lambda h, sensor: 64)
        _no_samples_no_events(monkeypatch)

        readings = NvmlCollector(node_id=9).poll(500.0)

        assert [(r.node_id, r.device) for r in readings] == [(9, "gpu0"), (9, "gpu1"), (9, "gpu2")]
        assert readings[0].sample == Sample(500.0, 91.0, 612.345, 9_000_000, True)
        assert readings[1].sample == Sample(500.0, 12.0, 612.345, 9_000_000, True)
        assert readings[2].sample == Sample(500.0, None, None, None, False)  # GPU is lost

    def test_zero_devices_is_unavailable(self, monkeypatch):
        monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
        with pytest.raises(CollectorUnavailable, match="sees 0 devices"):
            NvmlCollector(node_id=1)

    @pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU and driver")
    def test_real_device(self):
        collector = NvmlCollector(node_id=1)
        try:
            readings = collector.poll(0.0)
        finally:
            collector.close()
        assert readings and all(0 <= r.sample.utilization_pct <= 100 for r in readings)


def _no_samples_no_events(monkeypatch):
    """A driver that keeps no utilization samples and has no XID event waiting."""

    def no_samples(handle, sampling_type, since):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def no_event(event_set, timeout_ms):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetSamples", no_samples)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMigMode", lambda h: [0, 0])
    monkeypatch.setattr(pynvml, "nvmlEventSetCreate", lambda: "events")
    monkeypatch.setattr(pynvml, "nvmlDeviceRegisterEvents", lambda h, types, events: None)
    monkeypatch.setattr(pynvml, "nvmlEventSetWait_v2", no_event)
