"""The operator's path, with real parts: a chain where no dev key holds anything (anvil
on a mnemonic of its own, chain 4242, a block every half second), PostgreSQL and a
redis-server (a throwaway database and an empty Redis database number), keys in
encrypted keystores written here.

Deploys with the documented command (``python -m scripts.deploy_to``) on the chain's own
stablecoin (a 6-decimal ERC-20 with permit an issuer deployed before), starts the
documented production profile (``python -m devnet serve --log-format json``) with one
oracle daemon, relays one signed forward request through the API to confirmed, and
reads every line the API, the worker, beat and the oracle wrote as a JSON object. The
refusals: the profile with a dev key or without a keystore password, the deploy with a
dev deployer key or without a stablecoin that is one, the backend's worker started alone
with a plain key (production, or development settings on this chain); each exits 2 and
says why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import Web3

from gpucap import devchain, keystore
from gpucap.deployment import Deployment
from gpucap.logs import JsonFormatter
from gpucap.signing import sign_request
from tests.support.backends import SERVERS, servers_unreachable

ROOT = devchain.REPO_ROOT
CHAIN_ID = 4242
PASSWORD = "correct horse battery staple"
ROLES = ("deployer", "relayer", "oracle-1", "oracle-2", "oracle-3", "issuer")
JSON_KEYS = {"time", "level", "logger", "message"}


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Operator:
    """Keystores and a password file in one folder, the chain they hold ETH on."""

    def __init__(self, folder: Path, rpc_url: str, mnemonic: str) -> None:
        self.folder = folder
        self.rpc_url = rpc_url
        self.password_file = folder / "password"
        self.password_file.write_text(PASSWORD + "\n")
        Account.enable_unaudited_hdwallet_features()
        self.addresses: dict[str, str] = {}
        for index, role in enumerate(ROLES):
            account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
            # Few KDF iterations: a test's keystore, opened by several processes.
            self.addresses[role] = keystore.write(
                self.keystore(role), account.key, PASSWORD, iterations=2
            )
        # anvil's relayer account 9, encrypted like the others: what must be refused.
        keystore.write(self.keystore("dev"), devchain.dev_private_key(9), PASSWORD, iterations=2)

    def keystore(self, role: str) -> Path:
        return self.folder / f"{role}.json"


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env or _clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    folder = tmp_path_factory.mktemp("operator")
    Account.enable_unaudited_hdwallet_features()
    _, mnemonic = Account.create_with_mnemonic()
    anvil = devchain.Anvil(
        port=devchain.free_port(),
        block_time=0.5,
        mixed_mining=True,  # each transaction mined at once, and a block every 0.5 s
        accounts=len(ROLES),
        mnemonic=mnemonic,
        chain_id=CHAIN_ID,
    ).start(log_path=folder / "anvil.log")
    try:
        yield Operator(folder, anvil.url, mnemonic)
    finally:
        anvil.stop()


@pytest.fixture(scope="module")
def stablecoin(operator: Operator) -> str:
    """The chain's stablecoin, there before gpucap (its issuer deployed it; anvil's accounts
    are unlocked): the test token's code stands in for a USDC with permit."""
    artifact = json.loads((ROOT / "build" / "contracts" / "TestStablecoin.json").read_text())
    w3 = Web3(Web3.HTTPProvider(operator.rpc_url))
    issuer = operator.addresses["issuer"]
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(issuer, 10**6, 3600).transact({"from": issuer})
    return str(w3.eth.wait_for_transaction_receipt(tx, timeout=30)["contractAddress"])


def _deploy_args(
    operator: Operator, keystore_role: str, manifest: Path, stablecoin: str | None
) -> list[str]:
    a = operator.addresses
    coin = ["--stablecoin-address", stablecoin] if stablecoin else []
    return [
        "scripts.deploy_to",
        "--rpc-url",
        operator.rpc_url,
        "--chain-id",
        str(CHAIN_ID),
        "--keystore",
        str(operator.keystore(keystore_role)),
        "--password-file",
        str(operator.password_file),
        "--manifest",
        str(manifest),
        "--confirmations",
        "2",
        "--relayer-address",
        a["relayer"],
        *[arg for n in (1, 2, 3) for arg in ("--oracle-address", a[f"oracle-{n}"])],
        *coin,
    ]


@pytest.fixture(scope="module")
def manifest(operator: Operator, stablecoin: str) -> Path:
    path = operator.folder / "deployment.json"
    deployed = _run(_deploy_args(operator, "deployer", path, stablecoin))
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert f"gpucap deployed on chain {CHAIN_ID}" in deployed.stdout
    assert "2 confirmation(s)" in deployed.stdout
    # gpucap runs on the chain's stablecoin, read as a standard ERC-20 with permit.
    entry = json.loads(path.read_text())["contracts"]["TestStablecoin"]
    assert entry == {"address": stablecoin, "abi": "build/contracts/ERC20Permit.json"}
    return path


def _serve_args(operator: Operator, manifest: Path, **options: str | None) -> list[str]:
    values: dict[str, str | None] = {
        "rpc-url": operator.rpc_url,
        "database-url": "postgresql+psycopg://nobody@127.0.0.1:1/unused",
        "redis-url": "redis://127.0.0.1:1/0",
        "manifest": str(manifest),
        "relayer-keystore": str(operator.keystore("relayer")),
        "relayer-password-file": str(operator.password_file),
        **options,
    }
    args = ["devnet", "serve"]
    for name, value in values.items():
        if value is not None:
            args += [f"--{name}", value]
    return args


def test_deploy_refuses_a_dev_key_or_no_stablecoin_before_sending_anything(
    operator: Operator, stablecoin: str
) -> None:
    w3 = Web3(Web3.HTTPProvider(operator.rpc_url))
    nonce = w3.eth.get_transaction_count(operator.addresses["deployer"])
    never = operator.folder / "never.json"
    attempts = {  # side by side: each is refused before brownie loads the project
        "dev key": _deploy_args(operator, "dev", never, stablecoin),
        "no stablecoin": _deploy_args(operator, "deployer", never, None),
    }
    running = {
        what: subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for what, args in attempts.items()
    }
    said = {what: proc.communicate(timeout=120)[1] for what, proc in running.items()}
    assert {what: proc.returncode for what, proc in running.items()} == dict.fromkeys(
        attempts, 2
    ), said
    assert "deploy refused: the deployer key is one of anvil's well-known" in said["dev key"]
    assert said["no stablecoin"] == (
        f"deploy refused: chain {CHAIN_ID} is not the dev chain: give its stablecoin's "
        "address (--stablecoin-address, $GPUCAP_STABLECOIN_ADDRESS); the test token is "
        "deployed on the dev chain only\n"
    )
    assert not never.exists()
    # What the stablecoin check (run by deploy_to, then by deploy.py) refuses and takes.
    from scripts.deploy_checks import DeployRefused, check_stablecoin

    assert check_stablecoin(w3, stablecoin, CHAIN_ID) == "tUSD"
    # Code that answers nothing: a contract, not an ERC-20 (init code returning one STOP).
    tx = w3.eth.send_transaction(
        {"from": operator.addresses["issuer"], "data": "0x600180600b6000396000f300"}
    )
    not_a_token = w3.eth.wait_for_transaction_receipt(tx, timeout=30)["contractAddress"]
    relayer = operator.addresses["relayer"]
    for address, reason in (
        (relayer, f"the stablecoin {relayer} has no code on chain {CHAIN_ID}"),
        (not_a_token, f"the stablecoin {not_a_token} does not answer decimals() and symbol()"),
        ("0x1234", "the stablecoin address '0x1234' is not an address"),
    ):
        with pytest.raises(DeployRefused, match=re.escape(reason)):
            check_stablecoin(w3, address, CHAIN_ID)
    # ...and dev account 9 sent nothing (it holds no ETH here anyway: no dev key does).
    assert w3.eth.get_transaction_count(Account.from_key(devchain.dev_private_key(9)).address) == 0
    assert w3.eth.get_balance(Account.from_key(devchain.dev_private_key(0)).address) == 0
    assert w3.eth.get_transaction_count(operator.addresses["deployer"]) == nonce


def test_profile_and_backend_refuse_a_dev_key_a_missing_password_and_a_plain_key(
    operator: Operator, manifest: Path
) -> None:
    dev_keystore = str(operator.keystore("dev"))
    plain = {**_clean_env(), "GPUCAP_RELAYER_KEY": "0x" + "ab" * 32}
    # The backend alone, off the dev chain: its worker opens the relayer key at start.
    backend = {
        **plain,
        "GPUCAP_MANIFEST_PATH": str(manifest),
        "GPUCAP_RUN_DIR": str(operator.folder / "backend-run"),
        "GPUCAP_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    attempts = {  # run side by side: each is refused before it touches anything
        "dev key": (_serve_args(operator, manifest, **{"relayer-keystore": dev_keystore}), None),
        "no password": (_serve_args(operator, manifest, **{"relayer-password-file": None}), None),
        "plain key": (_serve_args(operator, manifest), plain),
        "backend production": (
            ["backend", "worker"],
            {**backend, "GPUCAP_ENVIRONMENT": "production"},
        ),
        "backend development": (["backend", "worker"], backend),
    }
    running = {
        what: subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env or _clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for what, (args, env) in attempts.items()
    }
    said = {what: proc.communicate(timeout=120)[1] for what, proc in running.items()}
    codes = {what: proc.returncode for what, proc in running.items()}
    assert codes == dict.fromkeys(attempts, 2), said
    assert "cannot start: the relayer key in" in said["dev key"]
    assert "is one of anvil's well-known development keys" in said["dev key"]
    assert "cannot start: the relayer keystore" in said["no password"]
    assert "no password was given: --relayer-password-file FILE" in said["no password"]
    assert "GPUCAP_RELAYER_KEY set: the production profile takes keys" in said["plain key"]
    for what, reason in (
        ("backend production", "GPUCAP_RELAYER_KEY is set: outside a development chain"),
        (
            "backend development",
            f"GPUCAP_RELAYER_KEY (or the default dev key) refused on chain {CHAIN_ID}",
        ),
    ):
        lines = said[what].strip().splitlines()
        assert len(lines) == 1 and "invalid configuration: " + reason in lines[0], said[what]
        assert "encrypted keystore only" in lines[0]


@pytest.fixture(scope="module")
def served(operator: Operator, manifest: Path) -> Iterator[dict[str, Any]]:
    if (why := servers_unreachable()) is not None:
        pytest.skip(f"production profile not run: {why}")
    redis = SERVERS.redis(operator.folder)
    try:
        with SERVERS.database(operator.folder) as database_url:
            yield from _serve(operator, manifest, database_url, redis.url)
    finally:
        redis.stop()


def _serve(
    operator: Operator, manifest: Path, database_url: str, redis_url: str
) -> Iterator[dict[str, Any]]:
    run_dir = operator.folder / "run"
    api = f"http://127.0.0.1:{devchain.free_port()}"
    options = {
        "database-url": database_url,
        "redis-url": redis_url,
        "oracle-keystore": str(operator.keystore("oracle-1")),
        "oracle-password-file": str(operator.password_file),
        "oracle-metrics-port": str(devchain.free_port()),
        "api-port": api.rsplit(":", 1)[1],
        "run-dir": str(run_dir),
        "log-format": "json",
    }
    env = {**_clean_env(), "GPUCAP_ORACLE_SOURCE": "simulated"}
    out = open(operator.folder / "serve.out", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [sys.executable, "-m", *_serve_args(operator, manifest, **options)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=out,
    )
    try:
        _wait_for(lambda: proc.poll() is not None or _worker_ok(api), 90, "the profile to be up")
        assert proc.poll() is None, (operator.folder / "serve.out").read_text()
        yield {"proc": proc, "api": api, "logs": run_dir / "logs", "out": out}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        out.close()


def _worker_ok(api: str) -> bool:
    try:
        return bool(requests.get(f"{api}/health", timeout=5).json()["checks"]["worker"]["ok"])
    except (requests.RequestException, ValueError, KeyError):
        return False


def test_profile_relays_a_signed_forward_request_to_confirmed(
    operator: Operator, manifest: Path, served: dict[str, Any]
) -> None:
    w3 = Web3(Web3.HTTPProvider(operator.rpc_url))
    deployment = Deployment.load(manifest)
    capacity = deployment.contract(w3, "CapacityToken")
    registry = deployment.contract(w3, "NodeRegistry")
    forwarder = deployment.contract(w3, "GpucapForwarder")
    wallet = Account.create()  # no ETH: the relayer pays
    data = capacity.encode_abi("setApprovalForAll", [registry.address, True])
    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    request = sign_request(wallet, forwarder.address, CHAIN_ID, capacity.address, data, 0, deadline)
    # The chain's own stablecoin has no faucet: a 404 with the reason, nothing relayed.
    faucet = requests.post(f"{served['api']}/faucet", json={"address": wallet.address}, timeout=10)
    assert (faucet.status_code, faucet.json()["code"]) == (404, "FaucetUnavailable"), faucet.text
    accepted = requests.post(f"{served['api']}/api/v1/forward", json=request.api_body(), timeout=10)
    assert accepted.status_code == 202, accepted.text
    action_id = accepted.json()["action_id"]
    final = _wait_for(
        lambda: (
            (a := requests.get(f"{served['api']}/actions/{action_id}", timeout=5).json())["status"]
            in ("confirmed", "failed")
            and a
        ),
        60,
        "the action to finish",
    )
    assert final["status"] == "confirmed", final
    assert final["chain_id"] == CHAIN_ID
    assert capacity.functions.isApprovedForAll(wallet.address, registry.address).call()
    # Sent and paid for by the relayer's keystore key, with EIP-1559 fees from the node.
    tx = w3.eth.get_transaction(final["tx_hash"])
    receipt = w3.eth.get_transaction_receipt(final["tx_hash"])
    assert tx["from"] == operator.addresses["relayer"]
    assert tx["type"] == 2 and receipt["effectiveGasPrice"] > 0

    # Every line each process wrote is one JSON object; the relay's carries the action id.
    logs = served["logs"]
    lines = {name: _json_lines(logs / f"{name}.log") for name in ("api", "worker", "beat")}
    lines["oracle-1"] = _wait_for(
        lambda: _json_lines(logs / "oracle-1.log"), 30, "the oracle to log"
    )
    for name, entries in lines.items():
        assert entries, name
        for entry in entries:
            assert entry.keys() >= JSON_KEYS, (name, entry)
    assert any(e["logger"] == "uvicorn.access" and e.get("status") == 202 for e in lines["api"])
    relayed = _wait_for(
        lambda: [
            e
            for e in _json_lines(logs / "worker.log")
            if action_id in e.get("action_ids", []) and "mined in block" in e["message"]
        ],
        10,
        "the worker's line about the mined batch",
    )
    assert relayed[0]["tx_hash"] == final["tx_hash"]
    assert any("oracle daemon started" in e["message"] for e in lines["oracle-1"])


def test_profile_stops_every_process_on_sigterm(served: dict[str, Any]) -> None:
    import psutil

    proc = served["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 4  # worker, beat, api, oracle (and their own children)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    out = _json_lines(Path(served["out"].name))
    assert [e["message"] for e in out][-2:] == ["stopping", "all processes stopped"]
    # Shutting down wrote JSON too (Celery prints its shutdown notice: a record here).
    worker = _json_lines(served["logs"] / "worker.log")
    assert any(e["message"] == "worker: Warm shutdown (MainProcess)" for e in worker)
    for name in ("api", "beat", "oracle-1"):
        assert _json_lines(served["logs"] / f"{name}.log")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as a JSON object (fails on one that is not)."""
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line[:300]}") from None
        assert isinstance(entry, dict), (path.name, number, line)
        entries.append(entry)
    return entries


def test_a_json_line_carries_the_exception_and_the_extra_fields() -> None:
    record = logging.LogRecord("gpucap.x", logging.ERROR, __file__, 1, "failed %s", ("a",), None)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    record.action_id = "42"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("ERROR", "gpucap.x", "failed a")
    assert entry["time"].endswith("Z")
    assert "RuntimeError: boom\nsecond line" in entry["exception"]
    assert entry["action_id"] == "42"


@pytest.mark.parametrize("command", ["backend", "oracle", "agent"])
def test_every_command_line_refuses_an_unknown_log_format_alike(command: str) -> None:
    """One --log-format (gpucap.logs.LogFormatOption) for every process: a format it does
    not know, on the command line or in $GPUCAP_LOG_FORMAT, is a usage error (exit 2)."""
    from typer.testing import CliRunner

    if command == "backend":
        from backend.__main__ import cli as app

        args = ["--log-format", "xml", "migrate"]
    else:
        app = __import__(f"{command}.__main__", fromlist=["app"]).app
        args = ["run", "--log-format", "xml"]
    without = [a for a in args if a not in ("--log-format", "xml")]
    for argv, env in ((args, {}), (without, {"GPUCAP_LOG_FORMAT": "xml"})):
        result = CliRunner().invoke(app, argv, env=env)
        assert result.exit_code == 2, result.output
        assert "--log-format" in result.output
        assert "must be one of text, json, not 'xml'" in result.output
