"""The database lost under the API and the worker, and back: PostgreSQL behind a TCP
proxy this test cuts (every connection dropped, new ones refused).

While it is gone the API answers 503 with a code and a reason (never 500), the
worker and its beat log why and stay up; once it is back the actions accepted just
before the cut are confirmed, each exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from eth_account import Account
from sqlalchemy.exc import OperationalError

from tests.backend.backend_helpers import Stack, running_stack, wait_for
from tests.support.tcp_proxy import TcpProxy

DRIP = 1_000 * 10**6  # DeployConfig.for_tests()
POSTGRES_PORT = 5432
POSTGRES_ADMIN = f"postgresql+psycopg://postgres@127.0.0.1:{POSTGRES_PORT}/postgres"


@pytest.fixture(scope="module")
def database(live_deployment: Any) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped at the end."""
    name = f"gpucap_dbloss_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:{POSTGRES_PORT} ({exc.orig})")
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def cut_db(
    live_deployment: Any, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    proxy = TcpProxy(POSTGRES_PORT)
    proxy.restore()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{database}"
    try:
        tmp = tmp_path_factory.mktemp("dbloss")
        with running_stack(tmp, live_deployment, env_extra={"GPUCAP_DATABASE_URL": url}) as stack:
            yield {"stack": stack, "proxy": proxy}
    finally:
        proxy.cut()


def _drip(stack: Stack) -> tuple[str, str]:
    address = Account.create().address
    resp = stack.post("/faucet", json={"address": address})
    assert resp.status_code == 202, resp.text
    return address, resp.json()["action_id"]


def _refused_with_reason(resp: Any) -> dict:
    assert resp.status_code == 503, (resp.status_code, resp.text)
    body = resp.json()
    assert body["code"] == "DatabaseUnavailable" and body["reason"], body
    return body


def test_database_lost_and_back(cut_db) -> None:
    stack, proxy = cut_db["stack"], cut_db["proxy"]
    wait_for(stack.worker_ok, 30, "the worker to answer")
    drips = [_drip(stack) for _ in range(4)]  # accepted; the worker is on them
    worker_log_before = len(stack.worker.log_path.read_text(errors="replace"))
    proxy.cut()
    try:
        # Reads and writes that need the database: 503 with a code, never a 500.
        _refused_with_reason(stack.get(f"/actions/{drips[0][1]}"))
        _refused_with_reason(stack.post("/faucet", json={"address": Account.create().address}))
        # Every read route that lists from the index: a 503 that says why (a cached
        # answer may still be a 200), never a 500.
        for path in (
            "epochs",
            "fleet/metrics",
            "gpu-classes",
            "indexer",
            "nodes",
            "offers",
            "pools",
            "price-index",
            "reservations",
        ):
            resp = stack.get(f"/api/v1/{path}")
            if resp.status_code != 200:
                _refused_with_reason(resp)
        _refused_with_reason(stack.get("/api/v1/offers", params={"status": "open"}))
        health = stack.get("/health")
        assert health.status_code == 503
        assert health.json()["checks"]["database"]["ok"] is False
        # The worker and its beat meet the loss (the sweep runs every 0.5 s), say why,
        # and stay up.
        wait_for(
            lambda: (
                "database"
                in stack.worker.log_path.read_text(errors="replace")[worker_log_before:].lower()
            ),
            60,
            "the worker to log the lost database",
        )
        assert stack.worker.popen is not None and stack.worker.popen.poll() is None
        assert stack.api.popen is not None and stack.api.popen.poll() is None
    finally:
        proxy.restore()

    coin = stack.deployment.system.stablecoin
    for address, action_id in drips:
        final = stack.wait_final(action_id, timeout=120)
        assert final["status"] == "confirmed", final
        assert coin.balanceOf(address) == DRIP  # exactly once
    assert stack.worker.popen.poll() is None, stack.worker.log_tail()
    worker_log = stack.worker.log_path.read_text(errors="replace")[worker_log_before:]
    assert "Traceback" not in worker_log, worker_log[-4000:]
    _, after = _drip(stack)  # and new work flows again
    assert stack.wait_final(after, timeout=60)["status"] == "confirmed"
