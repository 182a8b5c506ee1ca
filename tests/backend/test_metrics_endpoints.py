"""Prometheus /metrics of the API (two processes: multiprocess mode) and of the worker,
scraped over HTTP after real actions (faucet drips relayed by the worker on anvil)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from gpucap import devchain
from tests.backend.backend_helpers import Stack, running_stack, wait_for


@pytest.fixture(scope="module")
def worker_metrics_port() -> int:
    return devchain.free_port()


@pytest.fixture(scope="module")
def stack(
    live_deployment: Any, tmp_path_factory: pytest.TempPathFactory, worker_metrics_port: int
) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("metrics"),
        live_deployment,
        {"GPUCAP_API_WORKERS": "2"},
        {"GPUCAP_WORKER_METRICS_PORT": str(worker_metrics_port)},
    ) as s:
        yield s


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_api_counts_requests_by_route_and_status_across_processes(stack: Stack) -> None:
    before = samples(stack.api_url + "/metrics")
    address = Account.create().address
    accepted = stack.post("/faucet", json={"address": address})
    assert accepted.status_code == 202, accepted.text
    action_id = accepted.json()["action_id"]
    assert stack.wait_final(action_id)["status"] == "confirmed"
    refused = stack.post("/faucet", json={"address": "0x1234"})
    assert refused.status_code == 422
    for _ in range(6):  # spread over both processes; the scrape sums them
        assert stack.get("/no/such/route").status_code == 404

    after = samples(stack.api_url + "/metrics")

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    total = "gpucap_api_requests_total"
    assert grew(total, route="/faucet", method="POST", status="202") == 1
    assert grew(total, route="/faucet", method="POST", status="422") == 1
    assert grew(total, route="unmatched", method="GET", status="404") == 6
    # Raw ids never become labels: the action's reads are under the route template.
    assert grew(total, route="/actions/{action_id}", method="GET", status="200") >= 1
    assert not any(action_id in str(labels) for _, labels in after)
    assert grew("gpucap_api_request_duration_seconds_count", route="/faucet", method="POST") == 2
    # What an operator alerts on, from the database.
    assert value(after, "gpucap_actions", kind="faucet", status="confirmed") >= 1
    assert value(after, "gpucap_oldest_open_action_age_seconds") == 0


def test_worker_counts_tasks_index_lag_and_queue(stack: Stack, worker_metrics_port: int) -> None:
    url = f"http://127.0.0.1:{worker_metrics_port}/metrics"
    address = Account.create().address
    action_id = stack.post("/faucet", json={"address": address}).json()["action_id"]
    assert stack.wait_final(action_id)["status"] == "confirmed"

    def relayed_and_indexed() -> dict | None:
        found = samples(url)
        relayed = value(
            found, "gpucap_worker_tasks_total", task="gpucap.relay_action", outcome="success"
        )
        indexed = value(
            found, "gpucap_worker_tasks_total", task="gpucap.index_chain", outcome="success"
        )
        return found if relayed and indexed and relayed >= 1 else None

    found = wait_for(relayed_and_indexed, 30, "relay and index tasks in the worker's metrics")
    assert (
        value(found, "gpucap_worker_task_duration_seconds_count", task="gpucap.relay_action") >= 1
    )
    relayed = value(found, "gpucap_relay_seconds_count", kind="faucet", outcome="confirmed")
    assert relayed is not None and relayed >= 2  # this test's drip and the one before
    assert value(found, "gpucap_relay_seconds_sum", kind="faucet", outcome="confirmed") > 0
    assert value(found, "gpucap_index_lag_blocks") is not None
    assert value(found, "gpucap_indexed_block") > 0
    assert value(found, "gpucap_queue_depth", queue="celery") is not None
    assert value(found, "gpucap_queue_unacked") is not None
    assert value(found, "gpucap_actions", kind="faucet", status="confirmed") >= 2


def test_read_cache_hits_are_counted_under_their_route(stack: Stack) -> None:
    """A hit is answered before routing; it still counts under the route's template."""
    before = samples(stack.api_url + "/metrics")
    for _ in range(4):
        assert stack.get("/api/v1/nodes/1/metrics").status_code in (200, 404)
    after = samples(stack.api_url + "/metrics")
    counted = sum(
        v - before.get((name, labels), 0)
        for (name, labels), v in after.items()
        if name == "gpucap_api_requests_total"
        and ("route", "/api/v1/nodes/{node_id}/metrics") in labels
    )
    assert counted == 4, [k for k in after if k[0] == "gpucap_api_requests_total"]
