"""Faults through the real parts: a worker killed with SIGKILL mid-run, the chain
unreachable from the worker for a while, Redis stalled (SIGSTOP) under the API, the
worker and its beat. Every action still ends confirmed exactly once.

Own stack (not the shared fixture): the worker reaches anvil through a TCP proxy
this test can cut, while the API talks to anvil directly, so requests are accepted
during the outage and the worker has to wait them out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from brownie import chain, web3
from eth_account import Account

from backend.services.relaying.nonce import NonceManager
from gpucap import devchain
from gpucap.signing import sign_request
from tests.backend.backend_helpers import (
    ServiceProcess,
    Stack,
    running_stack,
    wait_for,
)
from tests.support.tcp_proxy import TcpProxy

DRIP = 1_000 * 10**6  # DeployConfig.for_tests()


@pytest.fixture(scope="module")
def faulty(live_deployment: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    anvil_port = int(live_deployment.rpc_url.rsplit(":", 1)[1])
    proxy = TcpProxy(anvil_port)
    proxy.restore()
    worker_env = {
        "GPUCAP_RPC_URL": f"http://127.0.0.1:{proxy.port}",
        "GPUCAP_RPC_TIMEOUT_SECONDS": "1",
        "GPUCAP_RECEIPT_TIMEOUT_SECONDS": "3",
    }
    try:
        tmp = tmp_path_factory.mktemp("faults")
        with running_stack(tmp, live_deployment, worker_env_extra=worker_env) as stack:
            yield {"stack": stack, "proxy": proxy}
    finally:
        proxy.cut()


def _drips(stack: Stack, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        address = Account.create().address
        resp = stack.post("/faucet", json={"address": address})
        assert resp.status_code == 202, resp.text
        out.append((address, resp.json()["action_id"]))
    return out


def _all_confirmed_once(stack: Stack, drips: list[tuple[str, str]], timeout: float) -> None:
    for address, action_id in drips:
        final = stack.wait_final(action_id, timeout=timeout)
        assert final["status"] == "confirmed", final
        assert stack.deployment.system.stablecoin.balanceOf(address) == DRIP  # exactly once


def test_chain_unreachable_then_back(faulty) -> None:
    stack, proxy = faulty["stack"], faulty["proxy"]
    proxy.cut()
    try:
        drips = _drips(stack, 3)  # accepted: the API reaches the chain directly
        address, action_id = drips[0]
        waiting = wait_for(
            lambda: (a := stack.get(f"/actions/{action_id}").json())["error_code"] and a,
            30,
            "the worker to record why it waits",
        )
        assert waiting["status"] in ("pending", "submitted")
        assert waiting["error_code"] == "ChainUnavailable", waiting
    finally:
        proxy.restore()
    _all_confirmed_once(stack, drips, timeout=90)


def _kill_worker_once_relaying(stack: Stack, drips: list[tuple[str, str]]) -> None:
    """Let the worker start on ``drips``, then SIGKILL its whole group (no clean-up)."""
    wait_for(
        lambda: any(stack.get(f"/actions/{a}").json()["status"] != "pending" for _, a in drips),
        30,
        "the worker to start relaying",
    )
    assert stack.worker.popen is not None
    os.killpg(stack.worker.popen.pid, signal.SIGKILL)
    stack.worker.popen.wait()


def test_worker_killed_mid_run_loses_and_doubles_nothing(faulty) -> None:
    stack = faulty["stack"]
    wait_for(stack.worker_ok, 30, "the worker to answer")
    drips = _drips(stack, 8)
    _kill_worker_once_relaying(stack, drips)
    stack.start_worker()  # acks_late redelivery and the sweep pick the rest up
    _all_confirmed_once(stack, drips, timeout=120)


def test_a_starting_worker_takes_up_what_a_killed_one_left_at_once(faulty, tmp_path) -> None:
    """The periodic sweep is out of the picture (an hour): what the killed worker held
    is taken up by the new worker's start-up sweep, not after a staleness threshold."""
    stack = faulty["stack"]
    wait_for(stack.worker_ok, 30, "the worker to answer")
    usual = stack.worker
    no_sweep = {
        **usual.env,
        "GPUCAP_SWEEP_INTERVAL_SECONDS": "3600",
        "GPUCAP_SWEEP_STALE_SECONDS": "3600",
    }
    usual.stop()
    stack.worker = ServiceProcess("worker", ["worker"], no_sweep, tmp_path / "worker.log")
    try:
        stack.start_worker()
        drips = _drips(stack, 6)
        _kill_worker_once_relaying(stack, drips)
        stack.start_worker()
        # Well under the broker's hour-long visibility timeout the dead worker's tasks wait for.
        _all_confirmed_once(stack, drips, timeout=120)
        assert "start-up sweep re-enqueued" in stack.worker.log_tail(400)
    finally:
        stack.worker.stop()
        stack.worker = usual
        stack.start_worker()


def _all_with_status(stack: Stack, ids: list[str], status: str) -> list[dict] | None:
    rows = [stack.get(f"/actions/{i}").json() for i in ids]
    return rows if all(r["status"] == status for r in rows) else None


def test_worker_killed_mid_batch_runs_each_request_once(faulty) -> None:
    """SIGKILL while a batch is in flight (sent, not mined): after the restart every
    request of it is confirmed, and each ran exactly once (its forwarder nonce is 1)."""
    stack = faulty["stack"]
    s = stack.deployment.system
    wait_for(stack.worker_ok, 30, "the worker to answer")
    wallets = [Account.create() for _ in range(6)]
    deadline = chain[-1].timestamp + 3_600
    data = s.capacity.setApprovalForAll.encode_input(s.registry.address, True)
    relayer = Account.from_key(devchain.dev_private_key(9)).address
    client = redis.Redis.from_url(stack.redis.url)
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        with NonceManager(client, relayer, lock_seconds=30).locked():  # let them queue up
            ids = []
            for w in wallets:
                req = sign_request(
                    w, s.forwarder.address, chain.id, s.capacity.address, data, 0, deadline
                )
                resp = stack.post("/api/v1/forward", json=req.api_body())
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["action_id"])
        rows = wait_for(lambda: _all_with_status(stack, ids, "submitted"), 30, "the batch")
        assert len({r["tx_hash"] for r in rows}) == 1  # one transaction for all six
        assert stack.worker.popen is not None
        os.killpg(stack.worker.popen.pid, signal.SIGKILL)
        stack.worker.popen.wait()
        web3.provider.make_request("evm_mine", [])
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
        client.close()
    stack.start_worker()  # the start-up sweep finds the open rows and finishes the batch
    for action_id in ids:
        final = stack.wait_final(action_id, timeout=60)
        assert final["status"] == "confirmed", final
        assert final["tx_hash"] == rows[0]["tx_hash"]
    for w in wallets:
        assert s.forwarder.nonces(w.address) == 1
        assert s.capacity.isApprovedForAll(w.address, s.registry.address)


def test_redis_stalled_then_back(faulty) -> None:
    """Redis stops answering (SIGSTOP: no reset, reads time out) while drips are asked for;
    the API answers (the enqueue fails fast, the row stays for the sweep), the worker and
    its beat notice and stay up, and once Redis answers again every drip is confirmed once
    and the beat's index runs go on."""
    stack = faulty["stack"]
    wait_for(stack.worker_ok, 30, "the worker to answer")
    assert stack.redis.process is not None and stack.worker.popen is not None
    log_before = len(stack.worker.log_path.read_text(errors="replace"))
    stack.redis.process.send_signal(signal.SIGSTOP)
    try:
        drips = _drips(stack, 3)
        wait_for(
            lambda: any(
                word in stack.worker.log_path.read_text(errors="replace")[log_before:]
                for word in ("Timeout", "timeout", "Error", "ConnectionError")
            ),
            60,
            "the worker to notice the stalled broker",
        )
        assert stack.worker.popen.poll() is None, stack.worker.log_tail()
    finally:
        stack.redis.process.send_signal(signal.SIGCONT)
    _all_confirmed_once(stack, drips, timeout=120)
    assert stack.worker.popen.poll() is None, stack.worker.log_tail()
    indexed = stack.get("/api/v1/indexer").json()["next_block"]
    _all_confirmed_once(stack, _drips(stack, 1), timeout=60)  # a new block to index
    wait_for(
        lambda: stack.get("/api/v1/indexer").json()["next_block"] > indexed,
        60,
        "the beat's index runs to go on",
    )
