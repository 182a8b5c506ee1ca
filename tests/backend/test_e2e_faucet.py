"""The faucet end to end: real Redis, a uvicorn API process, a Celery worker process, anvil.

Tests run in file order and share one stack (module scope); the last ones
stop Redis and the worker on purpose.
"""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any

import requests
from eth_account import Account
from web3 import Web3

from backend.config import Settings
from backend.db.models import Action, ActionKind, ActionStatus
from backend.db.session import get_sessionmaker
from backend.redis_embedded import EmbeddedRedis
from backend.services.chain import Chain
from backend.services.relaying.actions import create_action
from backend.worker.celery_app import RELAY_TASK, create_celery
from gpucap.deployment import Deployment
from tests.backend.backend_helpers import Stack, wait_for

DRIP = 1_000 * 10**6  # DeployConfig.for_tests()


def fresh_address() -> str:
    return Account.create().address


def dripped_events(stack: Stack, address: str) -> list[Any]:
    w3 = Web3(Web3.HTTPProvider(stack.deployment.rpc_url))
    coin = Deployment.load(stack.deployment.manifest_path).contract(w3, "TestStablecoin")
    return list(coin.events.Dripped.get_logs(from_block=0, argument_filters={"recipient": address}))


def count_rows(stack: Stack) -> int:
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])
    with sessions() as session:
        return session.query(Action).count()


def test_faucet_drip_confirms_on_chain(stack: Stack) -> None:
    address = fresh_address()
    resp = stack.post("/faucet", json={"address": address})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending"
    assert body["status_url"].endswith(f"/actions/{body['action_id']}")

    action = stack.wait_final(body["action_id"])
    assert action["status"] == "confirmed", action
    assert action["tx_hash"].startswith("0x") and action["block_number"] > 0
    assert action["error_code"] is None
    assert stack.deployment.system.stablecoin.balanceOf(address) == DRIP
    events = dripped_events(stack, address)
    assert len(events) == 1
    assert events[0]["args"]["amount"] == DRIP
    assert events[0]["transactionHash"].to_0x_hex() == action["tx_hash"]

    # Second request for the same address: refused before any row exists.
    rows_before = count_rows(stack)
    again = stack.post("/faucet", json={"address": address})
    assert again.status_code == 429, again.text
    err = again.json()
    assert err["code"] == "FaucetCooldown"
    assert "next drip at" in err["reason"] and err["next_drip_at"]
    assert count_rows(stack) == rows_before


def test_same_idempotency_key_is_one_action_and_one_drip(stack: Stack) -> None:
    address = fresh_address()
    headers = {"Idempotency-Key": f"test-{uuid.uuid4()}"}
    first = stack.post("/faucet", json={"address": address}, headers=headers)
    second = stack.post("/faucet", json={"address": address}, headers=headers)
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    assert first.json()["action_id"] == second.json()["action_id"]
    assert stack.wait_final(first.json()["action_id"])["status"] == "confirmed"
    # A replay after the drip still returns the same action, not a cooldown error.
    third = stack.post("/faucet", json={"address": address}, headers=headers)
    assert third.status_code == 200 and third.json()["action_id"] == first.json()["action_id"]
    assert len(dripped_events(stack, address)) == 1
    assert stack.deployment.system.stablecoin.balanceOf(address) == DRIP

    other = stack.post("/faucet", json={"address": fresh_address()}, headers=headers)
    assert other.status_code == 409 and other.json()["code"] == "IdempotencyKeyReused"


def test_double_click_without_key_is_one_action(stack: Stack) -> None:
    address = fresh_address()
    first = stack.post("/faucet", json={"address": address})
    second = stack.post("/faucet", json={"address": address})
    assert first.status_code == 202
    if second.status_code == 200:  # still open: the default key joined them
        assert second.json()["action_id"] == first.json()["action_id"]
    else:  # the first drip was already mined: cooldown
        assert second.status_code == 429
    stack.wait_final(first.json()["action_id"])
    assert len(dripped_events(stack, address)) == 1


def test_malformed_address_is_422_with_reason(stack: Stack) -> None:
    for bad, words in [
        ("0x1234", "40 hex digits"),
        ("not-an-address", "40 hex digits"),
        ("0x000000000000000000000000000000000000DeAd", "checksum"),
        ("0x" + "0" * 40, "zero address"),
    ]:
        resp = stack.post("/faucet", json={"address": bad})
        assert resp.status_code == 422, (bad, resp.text)
        body = resp.json()
        assert body["code"] == "ValidationFailed"
        assert words in body["reason"] and body["reason"].startswith("address:"), body


def test_unknown_action_is_404(stack: Stack) -> None:
    resp = stack.get(f"/actions/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.json()["code"] == "ActionNotFound"


def test_health_all_ok(stack: Stack) -> None:
    # The indexer's first beat may still be due right after start-up. Assert on the
    # answer that was 200: a second request can catch a busy worker missing its 0.5 s ping.
    body = wait_for(
        lambda: (r := stack.get("/health")).status_code == 200 and r.json(), 30, "a healthy stack"
    )
    assert body["status"] == "ok"
    checks = body["checks"]
    parts = {"chain", "redis", "database", "worker", "indexer"}
    assert parts | {"attestation", "keeper", "relayer", "reorgs"} == set(checks)
    assert all(c["ok"] for c in checks.values())
    assert checks["indexer"]["lag_blocks"] <= 50
    assert checks["chain"]["chain_id"] == 31337 and checks["chain"]["block"] > 0


def test_onchain_revert_is_recorded_as_failed(stack: Stack, stranger: Any) -> None:
    """A drip to an address in cooldown, inserted behind the API's pre-check."""
    address = fresh_address()
    stack.deployment.system.stablecoin.drip(address, {"from": stranger})
    settings = Settings(
        database_url=stack.env["GPUCAP_DATABASE_URL"], redis_url=stack.env["GPUCAP_REDIS_URL"]
    )
    with get_sessionmaker(settings.sqlalchemy_url)() as session:
        action, created = create_action(
            session,
            kind=ActionKind.FAUCET,
            idempotency_key=f"test:{uuid.uuid4()}",
            params={"address": address},
            chain=Chain.connect(
                stack.deployment.rpc_url, stack.deployment.manifest_path, 5.0
            ).identity(),
        )
    assert created
    create_celery(settings).send_task(RELAY_TASK, args=[action.id], ignore_result=True)
    final = stack.wait_final(action.id)
    assert final["status"] == "failed"
    assert final["error_code"] == "FaucetCooldown"
    assert address in final["error"] and "next drip at" in final["error"]
    assert len(dripped_events(stack, address)) == 1  # only the direct one


def test_redis_outage_loses_no_action(stack: Stack) -> None:
    stack.redis.stop()
    address = fresh_address()
    resp = stack.post("/faucet", json={"address": address})
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    assert stack.get(f"/actions/{action_id}").json()["status"] == ActionStatus.PENDING.value
    with get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])() as session:
        assert session.get(Action, action_id).last_enqueued_at is None  # the enqueue did fail

    health = stack.get("/health")
    assert health.status_code == 503
    checks = health.json()["checks"]
    assert checks["redis"]["ok"] is False and checks["worker"]["ok"] is False
    assert checks["chain"]["ok"] and checks["database"]["ok"]

    # Same port and data dir, as a restarted Redis would be.
    stack.redis = EmbeddedRedis(port=stack.redis.port, dir=stack.redis.dir).start()
    final = stack.wait_final(action_id, timeout=45)
    assert final["status"] == "confirmed", final
    assert stack.deployment.system.stablecoin.balanceOf(address) == DRIP


def test_one_client_cannot_drain_the_faucet(stack: Stack, tmp_path) -> None:
    """The cooldown is per recipient; a client naming fresh addresses meets its own limit.
    A second API process (same Redis, database and chain) with a limit of 3 per window."""
    from tests.backend.backend_helpers import second_api

    env = {
        "GPUCAP_FAUCET_CLIENT_LIMIT": "3",
        "GPUCAP_FAUCET_CLIENT_WINDOW_SECONDS": "86399",  # its own counter, not the suite's
    }
    with second_api(stack, tmp_path, "api-limited", env) as port:
        url = f"http://127.0.0.1:{port}"
        before = count_rows(stack)
        accepted = []
        for _ in range(3):
            resp = requests.post(f"{url}/faucet", json={"address": fresh_address()}, timeout=10)
            assert resp.status_code == 202, resp.text
            accepted.append(resp.json()["action_id"])
        refused = requests.post(f"{url}/faucet", json={"address": fresh_address()}, timeout=10)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["code"] == "FaucetClientLimit" and 0 < body["retry_after_seconds"] <= 86399
        assert count_rows(stack) == before + 3  # the refused one left nothing behind
    for action_id in accepted:
        assert stack.wait_final(action_id)["status"] == "confirmed"


def _drip_via(port: int, source: str, forwarded_for: str | None) -> tuple[int, dict]:
    """POST /faucet over a connection from ``source`` (any 127/8 address is this host)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        conn.request("POST", "/faucet", json.dumps({"address": fresh_address()}), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_forwarded_for_is_believed_from_trusted_proxies_only(stack: Stack, tmp_path) -> None:
    """An API behind a proxy at 127.0.0.2 (GPUCAP_TRUSTED_PROXIES), limit 2 per client:
    a client connecting directly (127.0.0.1) cannot escape its limit by naming other
    addresses in X-Forwarded-For; through the proxy, the client is the rightmost address
    the proxy appended, whatever the client put before it."""
    from tests.backend.backend_helpers import second_api

    env = {
        "GPUCAP_FAUCET_CLIENT_LIMIT": "2",
        "GPUCAP_FAUCET_CLIENT_WINDOW_SECONDS": "86398",  # its own counters
        "GPUCAP_TRUSTED_PROXIES": json.dumps(["127.0.0.2"]),
    }
    accepted: list[str] = []
    with second_api(stack, tmp_path, "api-proxied", env) as port:
        # Directly, forging a new address each time: still one client, 127.0.0.1.
        for forged in ("198.51.100.1", "198.51.100.2"):
            status, body = _drip_via(port, "127.0.0.1", forged)
            assert status == 202, body
            accepted.append(body["action_id"])
        status, body = _drip_via(port, "127.0.0.1", "198.51.100.3")
        assert status == 429 and body["code"] == "FaucetClientLimit", body
        assert "(127.0.0.1)" in body["reason"]

        # Through the proxy: the client is what it appended (the rightmost untrusted one).
        for chain_header in ("203.0.113.7", "10.9.9.9, 203.0.113.7"):
            status, body = _drip_via(port, "127.0.0.2", chain_header)
            assert status == 202, body
            accepted.append(body["action_id"])
        status, body = _drip_via(port, "127.0.0.2", "192.0.2.44, 203.0.113.7")
        assert status == 429 and "(203.0.113.7)" in body["reason"], body
        status, body = _drip_via(port, "127.0.0.2", "203.0.113.8")  # another client
        assert status == 202, body
        accepted.append(body["action_id"])
    for action_id in accepted:
        assert stack.wait_final(action_id)["status"] == "confirmed"


def test_health_degraded_without_worker(stack: Stack) -> None:
    wait_for(stack.worker_ok, 30, "the worker to reconnect")
    stack.worker.stop()
    resp = stack.get("/health")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["redis"]["ok"] is True
