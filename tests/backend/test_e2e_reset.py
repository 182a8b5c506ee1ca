"""A chain reset under a running backend (``anvil_reset``, then the same deployment
again): the same database, API and worker; every action starts fresh on the new chain.
The chain is a node of this module's own (a reset of the shared one would pull every
other module's deployment from under it), deployed by ``tests.support.deploy_on``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import Web3

from gpucap import devchain
from gpucap.deployment import Deployment
from tests.backend.backend_helpers import (
    ROOT,
    Stack,
    running_stack,
    wait_for,
)


@dataclass
class OwnChain:
    """What backend_env needs of a deployment, on this module's node."""

    rpc_url: str
    manifest_path: Path
    anvil: devchain.Anvil

    def deploy(self) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.support.deploy_on",
                str(self.anvil.port),
                str(self.manifest_path),
            ],
            cwd=ROOT,
            env=devchain.env_with_toolchain(),
            check=True,
            capture_output=True,
        )

    def rpc(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        answer = requests.post(self.rpc_url, json=body, timeout=10).json()
        assert "error" not in answer, answer
        return answer["result"]

    def drip_balance(self, address: str) -> int:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url))
        coin = Deployment.load(self.manifest_path).contract(w3, "TestStablecoin")
        return int(coin.functions.balanceOf(address).call())


@pytest.fixture(scope="module")
def own_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnChain]:
    tmp = tmp_path_factory.mktemp("own-chain")
    anvil = devchain.Anvil(port=devchain.free_port()).start(log_path=tmp / "anvil.log")
    node = OwnChain(anvil.url, tmp / "manifest.json", anvil)
    try:
        node.deploy()
        yield node
    finally:
        anvil.stop()


@pytest.fixture(scope="module")
def reset_stack(own_chain: OwnChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("reset-backend")
    with running_stack(tmp, own_chain, {"GPUCAP_INDEX_INTERVAL_SECONDS": "0.5"}) as stack:
        yield stack


def test_after_a_reset_and_redeploy_the_faucet_answers_fresh_and_pays(
    own_chain: OwnChain, reset_stack: Stack
) -> None:
    address = Account.create().address
    first = reset_stack.post("/faucet", json={"address": address})
    assert first.status_code == 202, first.text
    old = reset_stack.wait_final(first.json()["action_id"])
    assert old["status"] == "confirmed"
    drip = own_chain.drip_balance(address)
    assert drip > 0
    # Within the cooldown on the same chain: the same action, nothing paid twice.
    assert reset_stack.post("/faucet", json={"address": address}).status_code == 429

    old_genesis = own_chain.rpc("eth_getBlockByNumber", ["0x0", False])["hash"]
    own_chain.rpc("anvil_reset", [])
    own_chain.deploy()  # the same deployer from nonce 0: the same addresses
    new_genesis = own_chain.rpc("eth_getBlockByNumber", ["0x0", False])["hash"]
    assert new_genesis != old_genesis and own_chain.drip_balance(address) == 0

    again = reset_stack.post("/faucet", json={"address": address})
    assert again.status_code == 202, again.text  # a new action, not the old chain's
    new_id = again.json()["action_id"]
    assert new_id != old["id"]
    new = reset_stack.wait_final(new_id)
    assert new["status"] == "confirmed" and new["genesis_hash"] == new_genesis
    assert own_chain.drip_balance(address) == drip
    # The old row is kept as it was, on the chain it was made on.
    kept = reset_stack.get(f"/actions/{old['id']}").json()
    assert (kept["status"], kept["genesis_hash"]) == ("confirmed", old_genesis)
    # The worker's index started over on the new chain.
    wait_for(
        lambda: reset_stack.get("/health").json()["checks"]["indexer"]["ok"],
        30,
        "the indexer to follow the new chain",
    )
