"""Helpers for the backend tests: wait loops, service processes, the stack handle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from backend.db.models import NodeRow
from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain
from gpucap.signing import SECP256K1_N
from tests.support.backends import EMBEDDED, Backend

T = TypeVar("T")
ROOT = devchain.REPO_ROOT


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServiceProcess:
    """A `python -m backend ...` child in its own process group; logs to ``log_path``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "backend", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(lambda: self._exited() or ready(), timeout, f"{self.name} to be ready")
        assert self.popen.poll() is None, f"{self.name} exited:\n{self.log_tail()}"
        return self

    def _exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL if it does not exit in time."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    """Redis + API + worker against the module's live deployment."""

    api_url: str
    env: dict[str, str]
    redis: EmbeddedRedis
    api: ServiceProcess
    worker: ServiceProcess
    deployment: Any  # tests/conftest.py LiveDeployment

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.api_url + path, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.api_url + path, timeout=10, **kw)

    def wait_final(self, action_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(
            lambda: (
                (a := self.get(f"/actions/{action_id}").json())["status"] in ("confirmed", "failed")
                and a
            ),
            timeout,
            f"action {action_id} to finish",
        )

    def start_worker(self) -> None:
        self.worker.start(ready=lambda: self.worker_ok(), timeout=40)

    def worker_ok(self) -> bool:
        resp = self.get("/health")
        return bool(resp.json()["checks"]["worker"]["ok"])


@contextmanager
def running_stack(
    tmp: Path,
    deployment: Any,
    env_extra: dict[str, str] | None = None,
    worker_env_extra: dict[str, str] | None = None,
    backend: Backend = EMBEDDED,
) -> Iterator[Stack]:
    """Redis, a migrated database, the API and a worker for ``deployment`` (anything with
    ``rpc_url`` and ``manifest_path``), all stopped on the way out. ``worker_env_extra``:
    the worker's own settings on top (another node URL, shorter timeouts). ``backend``:
    the database and Redis to run on (tests/support/backends.py), removed afterwards."""
    with backend.database(tmp) as database_url:
        redis_server = backend.redis(tmp)
        try:
            env = {
                **backend_env(tmp, deployment, redis_server.url, database_url),
                **(env_extra or {}),
            }
            with _services(tmp, deployment, env, worker_env_extra, redis_server) as stack:
                yield stack
        finally:
            redis_server.stop()


@contextmanager
def _services(
    tmp: Path,
    deployment: Any,
    env: dict[str, str],
    worker_env_extra: dict[str, str] | None,
    redis_server: Any,
) -> Iterator[Stack]:
    subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    api_port = devchain.free_port()
    stack = Stack(
        api_url=f"http://127.0.0.1:{api_port}",
        env=env,
        redis=redis_server,
        api=ServiceProcess("api", ["api", "--port", str(api_port)], env, tmp / "api.log"),
        worker=ServiceProcess(
            "worker", ["worker"], {**env, **(worker_env_extra or {})}, tmp / "worker.log"
        ),
        deployment=deployment,
    )
    try:
        stack.api.start(ready=lambda: http_up(stack.api_url + "/docs"))
        stack.start_worker()
        yield stack
    finally:
        stack.worker.stop()
        stack.api.stop()
        if stack.redis is not redis_server:  # the test that restarts Redis replaced it
            stack.redis.stop()


def backend_env(
    tmp: Path, deployment: Any, redis_url: str, database_url: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        {
            "GPUCAP_ENVIRONMENT": "development",
            "GPUCAP_RUN_DIR": str(tmp / "run"),
            "GPUCAP_DATABASE_URL": database_url or f"sqlite:///{tmp / 'backend.db'}",
            # Never the checkout's .run/oracle/epochs (a demo's files): the keepers read it.
            "GPUCAP_PROOFS_DIR": str(tmp / "epochs"),
            "GPUCAP_REDIS_URL": redis_url,
            "GPUCAP_RPC_URL": deployment.rpc_url,
            "GPUCAP_MANIFEST_PATH": str(deployment.manifest_path),
            "GPUCAP_RECEIPT_TIMEOUT_SECONDS": "10",
            "GPUCAP_SWEEP_INTERVAL_SECONDS": "0.5",
            "GPUCAP_SWEEP_STALE_SECONDS": "1",
            "GPUCAP_HEALTH_TIMEOUT_SECONDS": "0.5",
            # Tests drip for many fresh addresses from one client; the limit has its test.
            "GPUCAP_FAUCET_CLIENT_LIMIT": "100000",
            # Settle every attested epoch as it comes (production waits for a day's range);
            # the cadence's own tests set theirs.
            "GPUCAP_EPOCH_SETTLE_MIN_EPOCHS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def reorg_away(block_number: int) -> int:
    """anvil_reorg: replace every block from ``block_number`` to the head by empty ones
    (the same height); their transactions are gone, from the pool too. Returns that
    height: the state at it is the reorg's, before anything is sent again (a worker
    may re-send at once, so reading "latest" afterwards can already see it)."""
    from brownie import web3

    head = web3.eth.block_number
    depth = head - block_number + 1
    web3.provider.make_request("anvil_reorg", [depth, []])  # type: ignore[arg-type]
    return head


@contextmanager
def second_api(stack: Stack, log_dir: Path, name: str, env: dict[str, str]) -> Iterator[int]:
    """Another API process beside the stack's (its Redis, database and chain) with ``env``
    on top of the stack's settings; yields its port and stops it after."""
    port = devchain.free_port()
    api = ServiceProcess(
        name, ["api", "--port", str(port)], {**stack.env, **env}, log_dir / f"{name}.log"
    )
    api.start(ready=lambda: http_up(f"http://127.0.0.1:{port}/docs"))
    try:
        yield port
    finally:
        api.stop()


def http_up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def new_faucet_action(chain: Any, sessions: Any, address: str) -> str:
    """A pending faucet action row for ``address`` (unique idempotency key) on ``chain``
    as it is now; its id."""
    import uuid

    from backend.db.models import ActionKind
    from backend.services.relaying import actions

    with sessions() as session:
        action, _ = actions.create_action(
            session,
            kind=ActionKind.FAUCET,
            idempotency_key=str(uuid.uuid4()),
            params={"address": address},
            chain=chain.identity(),
        )
        return action.id


def node_row(
    node_id: int, gpus: int = 8, operator: str = "0x000000000000000000000000000000000000dEaD"
) -> NodeRow:
    """An indexed node as the indexer writes it: for API tests that need no chain."""
    return NodeRow(
        node_id=node_id,
        operator=operator,
        class_id=1,
        gpu_count=gpus,
        region="eu-west",
        node_key="0x" + f"{node_id:040x}",
        acquisition_cost=1,
        acquired_at=1,
        status="active",
        registered_block=1,
    )


def assert_indexer_status_follows_another_process(client: Any, url: str) -> None:
    """As the worker's indexer does, another process commits the next blocks to the
    database at ``url`` (SQLite or PostgreSQL): the API's next read shows them, whatever
    it had cached."""
    script = (
        "import sys\n"
        "from sqlalchemy import create_engine, text\n"
        "engine = create_engine(sys.argv[1])\n"
        "with engine.begin() as c:\n"
        "    c.execute(text('UPDATE indexer_state SET next_block = 42, head_block = 41'))\n"
        "engine.dispose()\n"
    )
    subprocess.run([sys.executable, "-c", script, url], check=True)
    status = client.get("/api/v1/indexer").json()
    assert (status["next_block"], status["head_block"]) == (42, 41)


def assert_decoding_matches_web3(indexer: Any, pools: Sequence[str] = ()) -> set[tuple[str, str]]:
    """Every log of the manifest's contracts and of ``pools`` on the chain, decoded by the
    indexer's decoder from the node's raw answer, equals web3's ``process_log`` (after the
    ``event_decoding.jsonable``) of the same log as web3 formats it: same keys in the same
    order, same JSON (so True is not 1). Returns the (contract, event) pairs seen."""
    import json

    from backend.services.indexing.event_decoding import jsonable

    decoder = indexer.decoder
    w3 = indexer.chain.w3
    addresses = [w3.to_checksum_address(a) for a in [*decoder.addresses, *pools]]
    query = {"fromBlock": 0, "toBlock": "latest", "address": addresses}
    formatted = w3.eth.get_logs(query)  # type: ignore[arg-type]
    raw = w3.provider.make_request("eth_getLogs", [{**query, "fromBlock": "0x0"}])["result"]  # type: ignore[arg-type]
    assert len(raw) == len(formatted) > 0
    known = {p.lower() for p in pools}
    seen: set[tuple[str, str]] = set()
    for entry, web3_entry in zip(raw, formatted, strict=True):
        fast = decoder.decode(entry, known)
        if fast is None:
            continue
        contract_name, event, args = fast
        address = entry["address"].lower()
        contract = (
            w3.eth.contract(abi=decoder.pool_abi)
            if address in known
            else indexer.chain.contract(contract_name)
        )
        expected = jsonable(dict(contract.events[event]().process_log(web3_entry)["args"]))
        assert json.dumps(args) == json.dumps(expected), (contract_name, event)
        seen.add((contract_name, event))
    return seen


def new_forward_action(relayer: Any, sessions: Any, system: Any) -> str:
    """A pending forward action (validated as the API does) for a fresh wallet's
    ``setApprovalForAll``; its id."""
    from brownie import web3
    from eth_account import Account

    from backend.db.models import ActionKind
    from backend.services.relaying import actions, forward
    from gpucap.signing import sign_request

    s = system
    wallet = Account.create()
    data = s.capacity.setApprovalForAll.encode_input(s.registry.address, True)
    deadline = web3.eth.get_block("latest")["timestamp"] + 3_600
    chain_id = relayer.chain.deployment.chain_id
    req = sign_request(wallet, s.forwarder.address, chain_id, s.capacity.address, data, 0, deadline)
    params = forward.validate(relayer.chain, req)
    with sessions() as session:
        action, _ = actions.create_action(
            session,
            kind=ActionKind.FORWARD,
            idempotency_key=params.idempotency_key,
            params=params.as_params(),
            chain=relayer.chain.identity(),
        )
        return str(action.id)


@contextmanager
def service_relayer(deployment: Any, redis_url: str) -> Iterator[Any]:
    """The backend's relayer (dev account 9) on ``deployment``'s chain, in-process, for
    service tests; its Redis client is closed afterwards."""
    import redis as redis_lib

    from backend.services.chain import Chain
    from backend.services.relaying.relayer import Relayer

    chain = Chain.connect(deployment.rpc_url, str(deployment.manifest_path), 3)
    client = redis_lib.Redis.from_url(redis_url)
    try:
        yield Relayer(
            chain, devchain.dev_private_key(9), client, receipt_timeout=10, lock_seconds=10
        )
    finally:
        client.close()


def malleable_copies(signature: str) -> list[str]:
    """The high-s and the v ∈ {0, 1} copies of a valid 0x signature: eth-account recovers
    both to the signer; OpenZeppelin's ECDSA (the chain) rejects both."""
    sig = bytes.fromhex(signature.removeprefix("0x"))
    r, s_value, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = r + (SECP256K1_N - s_value).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    low_v = sig[:64] + bytes([v - 27])
    return ["0x" + copy.hex() for copy in (high_s, low_v)]
