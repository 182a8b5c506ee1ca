"""API behaviour with the chain and the queue faked (the real ones: test_e2e_faucet.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import deps
from backend.app.main import create_app
from backend.config import Settings
from backend.db.models import Action
from backend.db.session import get_sessionmaker
from backend.services.chain import ChainIdentity
from backend.services.errors import ChainUnavailable
from backend.services.relaying.faucet import FaucetState
from backend.worker.celery_app import create_celery
from gpucap import devchain

ADDRESS = "0x000000000000000000000000000000000000dEaD"
NOW = 1_800_000_000


class FakeQueue:
    """Records enqueues, and what the database held at that moment."""

    def __init__(self, settings: Settings, up: bool = True) -> None:
        self.sessions = get_sessionmaker(settings.sqlalchemy_url)
        self.up = up
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, action_id: str, *, batched: bool = False) -> bool:
        with self.sessions() as session:  # another session: sees only committed rows
            self.calls.append((action_id, session.get(Action, action_id) is not None))
        return self.up


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        run_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        redis_url=f"redis://127.0.0.1:{devchain.free_port()}/0",
    )


class UnitChain:
    """The route's chain here: its identity, or down when ``chain_state`` says so (the
    faucet's state is ``chain_state``'s too)."""

    def __init__(self, state: dict[str, object]) -> None:
        self.state = state

    def identity(self) -> ChainIdentity:
        if self.state.get("down"):
            raise ChainUnavailable("reading the chain's identity: node unreachable")
        return ChainIdentity(31337, "0x" + "11" * 32, "1:abc")


@pytest.fixture
def chain_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    state: dict[str, object] = {"next_drip_at": 0}

    def fake_state(_chain: object, _address: str) -> FaucetState:
        if state.get("down"):
            raise ChainUnavailable("reading faucet state: node unreachable")
        return FaucetState(
            next_drip_at=int(state["next_drip_at"]),
            chain_time=NOW,  # type: ignore[call-overload]
            cooldown_seconds=3600,
        )

    monkeypatch.setattr("backend.app.routers.faucet.faucet_state", fake_state)
    return state


@pytest.fixture
def queue(settings: Settings) -> FakeQueue:
    return FakeQueue(settings)


@pytest.fixture
def client(
    settings: Settings, queue: FakeQueue, chain_state: dict[str, object]
) -> Iterator[TestClient]:
    app = create_app(settings, enqueue=queue)
    app.dependency_overrides[deps.get_chain] = lambda: UnitChain(chain_state)
    with TestClient(app) as c:  # runs the lifespan: migrations
        yield c


def rows(settings: Settings) -> list[Action]:
    with get_sessionmaker(settings.sqlalchemy_url)() as session:
        return list(session.query(Action))


def test_accepts_and_enqueues_after_commit(
    client: TestClient, queue: FakeQueue, settings: Settings
) -> None:
    resp = client.post("/faucet", json={"address": ADDRESS.lower()})
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    assert queue.calls == [(action_id, True)]
    (row,) = rows(settings)
    assert row.params == {"address": ADDRESS}  # stored checksummed
    assert row.idempotency_key == f"faucet:{ADDRESS}:{NOW // 3600}"
    assert row.last_enqueued_at is not None

    body = client.get(f"/actions/{action_id}").json()
    assert body["status"] == "pending" and body["kind"] == "faucet" and body["tx_hash"] is None


def test_queue_down_still_accepts_and_keeps_row_pending(
    client: TestClient, queue: FakeQueue, settings: Settings
) -> None:
    queue.up = False
    resp = client.post("/faucet", json={"address": ADDRESS})
    assert resp.status_code == 202
    (row,) = rows(settings)
    assert row.status == "pending" and row.last_enqueued_at is None  # the sweep's to pick up


def test_double_click_is_one_action(client: TestClient, queue: FakeQueue) -> None:
    first = client.post("/faucet", json={"address": ADDRESS})
    second = client.post("/faucet", json={"address": ADDRESS})
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["action_id"] == second.json()["action_id"]
    assert len(queue.calls) == 1


def test_cooldown_is_429_and_creates_nothing(
    client: TestClient, chain_state: dict[str, object], settings: Settings, queue: FakeQueue
) -> None:
    chain_state["next_drip_at"] = NOW + 60
    resp = client.post("/faucet", json={"address": ADDRESS})
    assert resp.status_code == 429
    body = resp.json()
    assert body["code"] == "FaucetCooldown"
    assert body["next_drip_at"] == "2027-01-15T08:01:00+00:00"
    assert body["next_drip_at"] in body["reason"]
    assert rows(settings) == [] and queue.calls == []


def test_chain_down_is_503_and_creates_nothing(
    client: TestClient, chain_state: dict[str, object], settings: Settings
) -> None:
    chain_state["down"] = True
    resp = client.post("/faucet", json={"address": ADDRESS})
    assert resp.status_code == 503
    assert resp.json()["code"] == "ChainUnavailable"
    assert rows(settings) == []


def test_database_locked_is_503_and_creates_nothing(client: TestClient, settings: Settings) -> None:
    """Another writer holding SQLite's lock past the busy timeout: a 503 the client can
    retry (Retry-After), never a 500, and the rolled-back request leaves no row."""
    holder = sqlite3.connect(settings.run_dir / "api.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        resp = client.post("/faucet", json={"address": ADDRESS})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (resp.status_code, resp.json()["code"]) == (503, "DatabaseBusy")
    assert resp.headers["retry-after"] == "1"
    assert rows(settings) == []


def test_idempotency_key_reused_for_other_params_is_409(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k1"}
    assert client.post("/faucet", json={"address": ADDRESS}, headers=headers).status_code == 202
    other = "0x" + "12" * 20
    resp = client.post("/faucet", json={"address": other}, headers=headers)
    assert resp.status_code == 409
    assert resp.json()["code"] == "IdempotencyKeyReused"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "address: Field required"),
        ({"address": 12}, "address: must be 0x followed by 40 hex digits"),
        ({"address": "0xdead"}, "address: must be 0x followed by 40 hex digits"),
        ({"address": "0x000000000000000000000000000000000000DEad"}, "EIP-55 checksum"),
        ({"address": "0x" + "0" * 40}, "zero address"),
    ],
)
def test_bad_input_is_422_with_reason(client: TestClient, body: dict, words: str) -> None:
    resp = client.post("/faucet", json=body)
    assert resp.status_code == 422
    err = resp.json()
    assert err["code"] == "ValidationFailed"
    assert words in err["reason"], err


def test_unknown_action_and_route_are_json_404(client: TestClient) -> None:
    resp = client.get("/actions/nope")
    assert resp.status_code == 404
    assert resp.json() == {"code": "ActionNotFound", "reason": "no action with id nope"}
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and resp.json()["code"] == "NotFound"


def test_health_is_fast_and_degraded_when_everything_is_down(settings: Settings) -> None:
    down = settings.model_copy(
        update={
            "rpc_url": f"http://127.0.0.1:{devchain.free_port()}",
            "health_timeout_seconds": 0.5,
        }
    )
    with TestClient(create_app(down)) as c:
        started = time.monotonic()
        resp = c.get("/health")
        elapsed = time.monotonic() - started
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False and checks["worker"]["ok"] is False
    assert checks["chain"]["ok"] is False
    assert elapsed < 3.0


def test_a_permit_is_not_relayed_while_its_client_limit_cannot_count(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each relayed permit costs the relayer gas: with Redis down (here a closed port) the
    per-client count cannot be kept, so nothing is relayed (unlike the faucet's drips)."""
    from types import SimpleNamespace

    checked = SimpleNamespace(in_effect=None, state=SimpleNamespace(allowance=0))
    monkeypatch.setattr(
        "backend.app.routers.market_permits.check_permit", lambda _chain, _permit: checked
    )
    body = {
        "token": "0x" + "11" * 20,
        "owner": ADDRESS,
        "spender": "0x" + "22" * 20,
        "value": "1",
        "nonce": "0",
        "deadline": NOW + 3600,
        "signature": "0x" + "ab" * 65,
    }
    resp = client.post("/api/v1/market/permits", json=body)
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "ClientLimitUnavailable"
    assert "Redis unreachable" in resp.json()["reason"]
    assert rows(settings) == []


def test_celery_enqueue_with_redis_down_fails_fast(settings: Settings) -> None:
    enqueue = deps.CeleryEnqueuer(create_celery(settings))
    started = time.monotonic()
    assert enqueue("some-id") is False
    assert time.monotonic() - started < 3.0


def test_the_document_describes_the_bodies_the_api_sends(client: TestClient) -> None:
    """A ValidationFailed 422 as sent matches its documented schema (with ``errors``),
    FastAPI's own ``{"detail": ...}`` model is nowhere, and every route says what it does."""
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "HTTPValidationError" not in str(doc)
    error = schemas["ErrorPublic"]
    assert set(error["required"]) == {"code", "reason"} and "errors" in error["properties"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), f"{method.upper()} {path} has no description"
            unprocessable = operation["responses"]["422"]["content"]["application/json"]
            assert unprocessable["schema"] == {"$ref": "#/components/schemas/ErrorPublic"}
    sent = client.post("/faucet", json={"address": "0x12"})
    assert sent.status_code == 422
    body = sent.json()
    assert body["code"] == "ValidationFailed"
    assert set(body) <= set(error["properties"])
    assert [set(e) for e in body["errors"]] == [set(schemas["FieldErrorPublic"]["properties"])]
    assert body["errors"][0]["field"] == "address"
