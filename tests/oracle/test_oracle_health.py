"""The health verdict and the metrics endpoint (no chain needed)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from oracle.health import HealthPolicy, MetricsServer, OracleMetrics


def test_healthy_after_success_and_small_lag():
    metrics = OracleMetrics(HealthPolicy(max_silence_s=60, max_lag_epochs=2))
    metrics.observe_chain(last_attested=5, current=8)  # epochs 6, 7 ended: lag 2
    metrics.observe_success("attested", 5, 0)
    ok, body = metrics.health()
    assert ok and body["lagEpochs"] == 2 and body["status"] == "ok"


def test_unhealthy_when_lagging_or_silent():
    metrics = OracleMetrics(HealthPolicy(max_silence_s=60, max_lag_epochs=2))
    metrics.observe_success("nothing_to_do", None, None)
    metrics.observe_chain(last_attested=5, current=9)
    ok, body = metrics.health()
    assert not ok and body["reasons"] == ["3 ended epochs unattested"]
    metrics.observe_chain(last_attested=8, current=9)
    metrics.observe_failure("QuorumUnavailable", "holds 1 key, needs 2")
    ok, body = metrics.health(now=metrics._last_success_at + 61)
    assert not ok and body["reasons"][0].startswith("no successful step for 61s")
    assert body["consecutiveFailures"] == 1
    assert body["lastError"] == "QuorumUnavailable: holds 1 key, needs 2"


def test_server_serves_metrics_and_health():
    metrics = OracleMetrics(HealthPolicy(max_silence_s=60, max_lag_epochs=0))
    metrics.set_signers(["0xAa"], "0xAa")
    metrics.observe_chain(3, 6)
    metrics.observe_failure("ChainUnreachable", "connection refused")
    server = MetricsServer(metrics, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = requests.get(f"{base}/metrics", timeout=5).text
        health = requests.get(f"{base}/health", timeout=5)
        missing = requests.get(f"{base}/nope", timeout=5)
    finally:
        server.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("gpucap_oracle_epoch_lag", ())] == 2
    assert samples[("gpucap_oracle_failures_total", (("kind", "ChainUnreachable"),))] == 1
    assert samples[("gpucap_oracle_signer_info", (("address", "0xAa"), ("role", "signer")))] == 1
    assert health.status_code == 503 and health.json()["reasons"] == ["2 ended epochs unattested"]
    assert missing.status_code == 404
