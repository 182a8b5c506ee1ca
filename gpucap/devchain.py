"""A local anvil chain: the one place that knows how gpucap starts a dev node.

Used by the demo (``make demo``) and by the tests, so both run the same node
with the same hardfork as the compiler's pinned ``evm_version``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# Must match compiler.evm_version in brownie-config.yaml.
HARDFORK = "cancun"
CHAIN_ID = 31337
# Pre-funded accounts a gpucap dev chain starts with (``Anvil.accounts``): the indexes
# ``--dev-account`` accepts.
DEV_ACCOUNTS = 20
# anvil's well-known development mnemonic: its accounts are pre-funded.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def anvil_binary() -> str:
    """The anvil installed from npm into the checkout, else one on PATH."""
    local = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found is None:
        raise FileNotFoundError("anvil not found: run `make setup` first")
    return found


def dev_private_key(index: int) -> str:
    """Private key of anvil's pre-funded account ``index`` (development only)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + acct.key.hex().removeprefix("0x")


@dataclass
class Anvil:
    """An anvil process on loopback; ``stop()`` ends it."""

    port: int
    block_time: float | None = None
    accounts: int = DEV_ACCOUNTS
    # Block gas limit (None: anvil's 30M); a bulk seeder wants far more per block.
    gas_limit: int | None = None
    # Another mnemonic and chain id: a chain where no well-known dev key holds anything
    # (the production profile's tests).
    mnemonic: str = DEV_MNEMONIC
    chain_id: int = CHAIN_ID
    # With block_time: mine each transaction at once too, and a block every block_time.
    mixed_mining: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            anvil_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--hardfork",
            HARDFORK,
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
            "--mnemonic",
            self.mnemonic,
            "--silent",
        ]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
            if self.mixed_mining:
                cmd.append("--mixed-mining")
        if self.gas_limit:
            cmd += ["--gas-limit", str(self.gas_limit)]
        return cmd

    def start(self, timeout: float = 15.0, log_path: Path | None = None) -> Anvil:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait_for_node(self.process, self.url, timeout, "anvil"):
            return self
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.url} within {timeout}s")

    def is_up(self) -> bool:
        return rpc_answers(self.url)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def rpc_answers(url: str) -> bool:
    """Whether a JSON-RPC node at ``url`` answers ``eth_chainId``."""
    try:
        resp = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=1
        )
        return resp.ok
    except requests.RequestException:
        return False


def wait_for_node(
    process: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    name: str,
    detail: Callable[[], str] = lambda: "",
) -> bool:
    """Wait until the node ``process`` serves at ``url`` answers (True) or ``timeout``
    passes (False); a process that exits first raises RuntimeError (with ``detail()``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            more = detail()
            raise RuntimeError(
                f"{name} exited with {process.returncode}" + (f":\n{more}" if more else "")
            )
        if rpc_answers(url):
            return True
        time.sleep(0.05)
    return False


def env_with_toolchain(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` plus the checkout's anvil and solc on the search paths."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join(
        [
            str(REPO_ROOT / "node_modules" / ".bin"),
            str(REPO_ROOT / ".venv" / "bin"),
            env.get("PATH", ""),
        ]
    )
    env.setdefault("SOLCX_BINARY_PATH", str(REPO_ROOT / ".toolchain" / "solcx"))
    return env
