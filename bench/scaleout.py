"""Figure 6: scale-out, exactly once. The deployment's shape on PostgreSQL and a
standalone redis-server: 2 API processes, 3 worker processes and one beat relay N
signed forward requests (gasless first buys with permit, one wallet each); once a
third of them are confirmed, one worker is killed with SIGKILL. Then, checked against
the chain and the database, not assumed:

- every accepted action ended ``confirmed``, or ``failed`` with an error code;
- none ran twice: each wallet's request has exactly one ``ExecutedForwardRequest``
  on the chain, in the transaction its action row names, and a confirmed one's wallet
  holds exactly the one GPU-hour it bought;
- no nonce gap: the relayer's mined transactions of the run have consecutive nonces
  and nothing of it is left pending (its latest and pending nonce agree).

``python -m bench.scaleout N OUT`` (``make bench`` runs it as figure 7; ``--scale-out``
alone). Needs PostgreSQL on 127.0.0.1:5432 and redis-server on 127.0.0.1:6379 (the
test back end's servers: tests/support/backends.py makes and removes a database and
claims an empty Redis db number); says so and stops where they do not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import requests
from eth_account import Account
from sqlalchemy import create_engine, text
from web3 import Web3

from bench.stack import POST_CONNECTIONS, _first_buy_with_permit, _http_ok, _rpc, setup_market
from gpucap import devchain
from gpucap.deployment import Deployment
from gpucap.signing import sign_request

ROOT = devchain.REPO_ROOT
API_PROCESSES, WORKERS = 2, 3
KILL_AT_FRACTION = 1 / 3
BLOCK_TIME_S = 1
FOLLOW_TIMEOUT_S = 600.0


def _spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "backend", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.2)


def _workers_alive(api: str, count: int) -> bool:
    try:
        worker = requests.get(api + "/health", timeout=5).json()["checks"]["worker"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return bool(worker.get("ok")) and len(worker.get("workers") or []) >= count


async def _post_all(api: str, bodies: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """POST every body (POST_CONNECTIONS clients); action id -> wallet, and the errors."""
    accepted: dict[str, str] = {}
    errors: list[str] = []
    queue = iter(bodies)

    async def client() -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(api, connector=connector, timeout=timeout) as session:
            for body in queue:
                try:
                    async with session.post("/api/v1/forward", json=body) as resp:
                        answer, status = await resp.read(), resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if status not in (200, 202):
                    errors.append(f"{status} {answer[:200]!r}")
                    continue
                accepted[json.loads(answer)["action_id"]] = body["from"]

    await asyncio.gather(*(client() for _ in range(POST_CONNECTIONS)))
    return accepted, errors


def run(rpc_url: str, *, actions: int) -> dict[str, Any]:
    from tests.support.backends import SERVERS, servers_unreachable

    if (why := servers_unreachable()) is not None:
        return {"skipped": why}
    workdir = Path(tempfile.mkdtemp(prefix="gpucap-scaleout-"))
    market = setup_market(
        rpc_url, workdir, nodes=0, raw_wallets=0, raw_per_wallet=0, relayed=actions
    )
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    redis_db = SERVERS.redis(workdir)
    try:
        with SERVERS.database(workdir) as database_url:
            try:
                return _measure(w3, market, workdir, database_url, redis_db.url, procs)
            finally:
                _stop(procs)  # before their database is dropped
    finally:
        redis_db.stop()
        with contextlib.suppress(Exception):
            _rpc(w3, "evm_setAutomine", [True])


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _measure(
    w3: Web3,
    market: dict[str, Any],
    workdir: Path,
    database_url: str,
    redis_url: str,
    procs: dict[str, subprocess.Popen[bytes]],
) -> dict[str, Any]:
    api_port = devchain.free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        {
            "GPUCAP_ENVIRONMENT": "development",
            "GPUCAP_RUN_DIR": str(workdir / "run"),
            "GPUCAP_DATABASE_URL": database_url,
            "GPUCAP_REDIS_URL": redis_url,
            "GPUCAP_RPC_URL": w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            "GPUCAP_MANIFEST_PATH": str(market["manifest"]),
            "GPUCAP_PROOFS_DIR": str(workdir / "proofs"),
            "GPUCAP_API_WORKERS": str(API_PROCESSES),
            "GPUCAP_API_ACCESS_LOG": "false",
            "GPUCAP_SWEEP_INTERVAL_SECONDS": "2",
            "GPUCAP_SWEEP_STALE_SECONDS": "10",
            "PYTHONUNBUFFERED": "1",
        }
    )
    logs = workdir / "logs"
    subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    procs["api"] = _spawn("api", ["api", "--port", str(api_port)], env, logs)
    _wait(lambda: _http_ok(api + "/docs"), 60, "the API")
    for i in range(WORKERS):
        procs[f"worker{i}"] = _spawn(
            f"worker{i}", ["worker", "--no-beat", "--concurrency", "8"], env, logs
        )
    procs["beat"] = _spawn("beat", ["beat"], env, logs)
    _wait(lambda: _workers_alive(api, WORKERS), 120, "the workers")

    s = market["system"]
    forwarder = Deployment.load(market["manifest"]).contract(w3, "GpucapForwarder")
    relayer = Account.from_key(devchain.dev_private_key(9)).address
    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    buy = _first_buy_with_permit(market, deadline)
    bodies = [
        sign_request(
            w, s.forwarder.address, devchain.CHAIN_ID, s.capacity.address, buy(w), 0, deadline
        ).api_body()
        for w in market["gasless"]
    ]
    _rpc(w3, "evm_setAutomine", [False])
    _rpc(w3, "evm_setIntervalMining", [BLOCK_TIME_S])
    start_block = w3.eth.block_number + 1
    relayer_nonce_before = w3.eth.get_transaction_count(relayer, "latest")
    engine = create_engine(database_url)

    def statuses() -> dict[str, tuple[str, str | None, str | None]]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, status, tx_hash, error_code FROM actions WHERE kind = 'forward'")
            ).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    killed: dict[str, Any] = {}

    def kill_one_worker() -> None:
        while True:
            done = sum(1 for st, _, _ in statuses().values() if st == "confirmed")
            if done >= len(bodies) * KILL_AT_FRACTION:
                victim = procs["worker1"]
                os.kill(victim.pid, signal.SIGKILL)
                killed.update(confirmed_at_kill=done, at_s=round(time.perf_counter() - t0, 2))
                return
            time.sleep(0.1)

    t0 = time.perf_counter()
    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    accepted, errors = asyncio.run(_post_all(api, bodies))
    t_posted = time.perf_counter()
    deadline_s = time.monotonic() + FOLLOW_TIMEOUT_S
    while True:
        rows = statuses()
        open_ = [a for a in accepted if rows.get(a, ("pending",))[0] not in ("confirmed", "failed")]
        if not open_:
            break
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"{len(open_)} accepted actions still open after the run")
        time.sleep(0.2)
    t_done = time.perf_counter()
    killer.join(timeout=1)
    # Every transaction of the run is mined; then read the chain.
    _wait(
        lambda: (
            w3.eth.get_transaction_count(relayer, "pending")
            == w3.eth.get_transaction_count(relayer, "latest")
        ),
        60,
        "the relayer's pending transactions to be mined",
    )
    end_block = w3.eth.block_number
    rows = statuses()
    engine.dispose()

    topic = forwarder.events.ExecutedForwardRequest().topic
    logs = w3.eth.get_logs(
        {
            "address": forwarder.address,
            "fromBlock": start_block,
            "toBlock": end_block,
            "topics": [topic],
        }  # type: ignore[typeddict-item]
    )
    executed: dict[str, list[str]] = {}
    for log in logs:
        ev = forwarder.events.ExecutedForwardRequest().process_log(log)
        executed.setdefault(ev["args"]["signer"].lower(), []).append(
            "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x")
        )
    final = Counter(rows[a][0] for a in accepted)
    failed_without_reason = [a for a in accepted if rows[a][0] == "failed" and not rows[a][2]]
    twice = [a for a, who in accepted.items() if len(executed.get(who.lower(), [])) > 1]
    confirmed_not_in_its_tx = [
        a
        for a, who in accepted.items()
        if rows[a][0] == "confirmed" and executed.get(who.lower()) != [rows[a][1]]
    ]
    wrong_holding = [
        a
        for a, who in accepted.items()
        if rows[a][0] == "confirmed" and s.capacity.balanceOf(who, market["token"]) != 1
    ]
    relayer_nonces = sorted(
        int(tx["nonce"])
        for n in range(start_block, end_block + 1)
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]
        if tx["from"] == relayer
    )
    nonce_gap = relayer_nonces != list(
        range(relayer_nonce_before, relayer_nonce_before + len(relayer_nonces))
    )
    return {
        "actions": len(bodies),
        "accepted": len(accepted),
        "post_errors": errors[:5],
        "api_processes": API_PROCESSES,
        "workers": WORKERS,
        "killed_worker": killed or None,
        "final": dict(final),
        "failed_codes": dict(Counter(rows[a][2] for a in accepted if rows[a][0] == "failed")),
        "failed_without_reason": len(failed_without_reason),
        "executed_twice": len(twice),
        "confirmed_not_in_its_tx": len(confirmed_not_in_its_tx),
        "confirmed_wrong_holding": len(wrong_holding),
        "relayer_transactions": len(relayer_nonces),
        "nonce_gap": nonce_gap,
        "exactly_once": not (
            failed_without_reason or twice or confirmed_not_in_its_tx or wrong_holding or nonce_gap
        )
        and sum(final.values()) == len(accepted),
        "accept_wall_s": round(t_posted - t0, 2),
        "all_final_wall_s": round(t_done - t0, 2),
        "final_per_s": round(len(accepted) / (t_done - t0), 2),
        "block_time_s": BLOCK_TIME_S,
        "workdir": str(workdir),
    }


def main(argv: list[str]) -> None:
    """``python -m bench.scaleout N OUT``: figure 7 on a fresh anvil of its own."""
    from bench import onchain

    warnings.filterwarnings("ignore", r"rpc\.\w+ should not be called directly", FutureWarning)
    actions, out = int(argv[0]), Path(argv[1])
    with contextlib.redirect_stdout(io.StringIO()):
        onchain.load_project()
        port = devchain.free_port()
        onchain.connect(port)
        try:
            result = run(f"http://127.0.0.1:{port}", actions=actions)
        finally:
            onchain.disconnect()
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
