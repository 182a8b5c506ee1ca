"""Hardhat's node (npm ``hardhat`` 2.x, with Nomic's EDR inside): a second EVM node
implementation beside anvil, so that tests show the deploy, relay and index path is
not anvil's alone.

It runs as gpucap's dev chain does (gpucap/devchain.py): the same chain id, hardfork
and mnemonic, so the dev accounts (deployer 0, oracles 6-8, relayer 9) are the same
keys; and a non-zero base fee. Its config, cache and Hardhat's own data files live in
the caller's folder, nothing in the checkout or under ~.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gpucap import devchain

# The first block's base fee (wei): EIP-1559 fees the relayer must read from the node.
BASE_FEE_WEI = 1_000_000_000


def hardhat_binary() -> Path:
    found = devchain.REPO_ROOT / "node_modules" / ".bin" / "hardhat"
    if not found.exists():
        raise FileNotFoundError("hardhat not found in node_modules: run `make setup` first")
    return found


@dataclass
class HardhatNode:
    """A ``hardhat node`` on loopback at ``port``; ``workdir`` holds its files and log."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "hardhat.log"

    def write_config(self) -> Path:
        sources = self.workdir / "sources"  # empty: `hardhat node` compiles nothing
        sources.mkdir(parents=True, exist_ok=True)
        config = {
            "networks": {
                "hardhat": {
                    "chainId": devchain.CHAIN_ID,
                    "hardfork": devchain.HARDFORK,
                    "initialBaseFeePerGas": BASE_FEE_WEI,
                    "accounts": {"mnemonic": devchain.DEV_MNEMONIC, "count": 20},
                }
            },
            "paths": {
                "sources": str(sources),
                "cache": str(self.workdir / "cache"),
                "artifacts": str(self.workdir / "artifacts"),
            },
        }
        path = self.workdir / "hardhat.config.js"
        path.write_text(f"module.exports = {json.dumps(config, indent=2)};\n")
        return path

    def start(self, timeout: float = 30.0) -> HardhatNode:
        config = self.write_config()
        env = {
            **os.environ,
            # No consent prompt; Hardhat's analytics id and caches go to workdir, not ~.
            "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
            "XDG_DATA_HOME": str(self.workdir / "xdg-data"),
            "XDG_CACHE_HOME": str(self.workdir / "xdg-cache"),
            "XDG_CONFIG_HOME": str(self.workdir / "xdg-config"),
        }
        cmd = [
            str(hardhat_binary()),
            "--config",
            str(config),
            "node",
            "--hostname",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=devchain.REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if devchain.wait_for_node(self.process, self.url, timeout, "hardhat node", self.log_tail):
            return self
        self.stop()
        raise TimeoutError(f"hardhat node did not answer on {self.url} within {timeout}s")

    def is_up(self) -> bool:
        return devchain.rpc_answers(self.url)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None
