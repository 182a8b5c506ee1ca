"""The deploy, relay and index path on a second EVM node implementation: Hardhat's
node (npm ``hardhat`` 2.x, Nomic's EDR) instead of anvil.

scripts/deploy.py deploys the system onto it (from a process of its own: this one's
brownie stays on the session's anvil), and the backend runs on it as on anvil: the
API validates gasless forward requests, a real Celery worker relays them in one
``executeBatch`` and indexes the chain. Hardhat has no ``eth_simulateV1`` and only its
default tracer for ``debug_traceTransaction`` (no callTracer), so the relayer takes
its standard-method fallbacks there: batch gas by ``eth_estimateGas``, and a call
that reverted inside a batch decoded by replaying it with ``eth_call`` on the
block's state. Hardhat also wraps revert data in an object ({"message", "data"}),
which every decoder must look inside of.

The test process talks to the node through web3 and the backend's own Chain class.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.config import RELAYER_DEV_ACCOUNT
from backend.services.chain import Chain
from backend.services.errors import TransactionReverted
from backend.services.relaying.nonce import NonceManager
from backend.services.relaying.relayer import TxRequest
from gpucap import devchain
from gpucap.signing import sign_request
from tests.backend.backend_helpers import Stack, running_stack, service_relayer, wait_for
from tests.conftest import LiveDeployment
from tests.support.hardhat_node import HardhatNode

H100 = "H100-SXM-80GB"
USD = 10**6


@pytest.fixture(scope="module")
def hardhat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatNode]:
    node = HardhatNode(devchain.free_port(), tmp_path_factory.mktemp("hardhat")).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def deployment(hardhat: HardhatNode, tmp_path_factory: pytest.TempPathFactory) -> LiveDeployment:
    """scripts/deploy.py's deploy_system on the Hardhat node (tests' configuration)."""
    manifest = tmp_path_factory.mktemp("hardhat-deployment") / "manifest.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.deploy_on", str(hardhat.port), str(manifest)],
        cwd=devchain.REPO_ROOT,
        env=devchain.env_with_toolchain(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return LiveDeployment(system=None, manifest_path=manifest, rpc_url=hardhat.url)


@pytest.fixture(scope="module")
def chain(deployment: LiveDeployment) -> Chain:
    return Chain.connect(deployment.rpc_url, str(deployment.manifest_path), 5.0)


@pytest.fixture(scope="module")
def stack(deployment: LiveDeployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("backend-hardhat"), deployment) as s:
        yield s


def registration(chain: Chain, wallet: LocalAccount, node_key: str) -> dict[str, Any]:
    """The /api/v1/forward body of ``wallet``'s gasless NodeRegistry.registerNode of an
    8-GPU H100 node with ``node_key``, signed for its current forwarder nonce."""
    registry = chain.contract("NodeRegistry")
    forwarder = chain.contract("GpucapForwarder")
    now = chain.w3.eth.get_block("latest")["timestamp"]
    args = _node_args(chain, node_key, now)
    data = registry.encode_abi("registerNode", args)
    nonce = forwarder.functions.nonces(wallet.address).call()
    request = sign_request(
        wallet,
        forwarder.address,
        chain.deployment.chain_id,
        registry.address,
        data,
        nonce,
        now + 3_600,
    )
    return request.api_body()


def _node_args(chain: Chain, node_key: str, now: int) -> list[Any]:
    class_id = chain.deployment.gpu_classes[H100]
    return [class_id, 8, b"eu-west".ljust(32, b"\0"), 240_000 * USD, now - 3_600, node_key]


def register(chain: Chain, operator: str, node_key: str) -> None:
    """``operator`` (one of Hardhat's unlocked dev accounts) registers a node with
    ``node_key`` directly, paying its own gas."""
    now = chain.w3.eth.get_block("latest")["timestamp"]
    call = chain.contract("NodeRegistry").functions.registerNode(*_node_args(chain, node_key, now))
    tx = call.transact({"from": operator})
    assert chain.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def forwarded(chain: Chain, signer: str) -> list[Any]:
    """Every ExecutedForwardRequest of ``signer`` on the chain."""
    event = chain.contract("GpucapForwarder").events.ExecutedForwardRequest
    return list(event.get_logs(from_block=0, argument_filters={"signer": signer}))


def test_gasless_request_is_relayed_once_confirmed_and_indexed(
    stack: Stack, chain: Chain, hardhat: HardhatNode
) -> None:
    w3 = chain.w3
    assert w3.client_version.startswith("HardhatNetwork/")
    assert w3.eth.get_block("latest")["baseFeePerGas"] > 0
    wallet, node_key = Account.create(), Account.create().address
    assert w3.eth.get_balance(wallet.address) == 0  # no ETH: the relayer pays

    relayer = Account.from_key(devchain.dev_private_key(RELAYER_DEV_ACCOUNT)).address
    sent_before = w3.eth.get_transaction_count(relayer)
    body = registration(chain, wallet, node_key)
    accepted = stack.post("/api/v1/forward", json=body)
    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["contract"], accepted.json()["function"]) == (
        "NodeRegistry",
        "registerNode",
    )
    action_id = accepted.json()["action_id"]
    again = stack.post("/api/v1/forward", json=body)  # a double click: the same action
    assert (again.status_code, again.json()["action_id"]) == (200, action_id), again.text

    final = stack.wait_final(action_id)
    assert final["status"] == "confirmed", final
    receipt = w3.eth.get_transaction_receipt(final["tx_hash"])
    assert receipt["status"] == 1
    assert receipt["effectiveGasPrice"] > 0
    assert receipt["from"] == relayer
    # Relayed exactly once: one relayer transaction, one forwarded call for the wallet,
    # its forwarder nonce used once.
    assert w3.eth.get_transaction_count(relayer) == sent_before + 1
    (ran,) = forwarded(chain, wallet.address)
    assert (ran["args"]["nonce"], ran["args"]["success"]) == (0, True)
    assert ran["transactionHash"] == receipt["transactionHash"]
    assert chain.contract("GpucapForwarder").functions.nonces(wallet.address).call() == 1

    # The worker's indexer read the node's NodeRegistered from Hardhat.
    nodes = wait_for(
        lambda: stack.get("/api/v1/nodes", params={"operator": wallet.address}).json(),
        30,
        "the gasless registration to be indexed",
    )
    assert [(n["operator"], n["node_key"], n["gpu_count"]) for n in nodes] == [
        (wallet.address, node_key, 8)
    ], nodes
    assert stack.get("/api/v1/indexer").status_code == 200


def test_call_that_reverts_inside_the_batch_fails_with_the_targets_own_error(
    stack: Stack, chain: Chain
) -> None:
    """Two requests wait while the relayer is busy; meanwhile someone registers the node
    key one of them claims, directly. They go out in one executeBatch: the other is
    confirmed, and this one fails with NodeRegistry's own error, decoded without a
    call tracer (Hardhat's has none): by replaying the call on the batch's block."""
    winner, loser = Account.create(), Account.create()
    contested = Account.create().address
    bodies = {
        "winner": registration(chain, winner, Account.create().address),
        "loser": registration(chain, loser, contested),
    }
    relayer = Account.from_key(devchain.dev_private_key(RELAYER_DEV_ACCOUNT)).address
    client = redis.Redis.from_url(stack.redis.url)
    try:
        with NonceManager(client, relayer, lock_seconds=30).locked():
            ids = {}
            for name, body in bodies.items():
                resp = stack.post("/api/v1/forward", json=body)
                assert resp.status_code == 202, resp.text
                ids[name] = resp.json()["action_id"]
            register(chain, chain.w3.eth.accounts[1], contested)  # someone else, first
    finally:
        client.close()
    final = {name: stack.wait_final(action_id) for name, action_id in ids.items()}
    assert final["winner"]["status"] == "confirmed", final
    assert final["winner"]["tx_hash"] == final["loser"]["tx_hash"], final  # one batch
    assert (final["loser"]["status"], final["loser"]["error_code"]) == (
        "failed",
        "RegistryInvalidNodeKey",
    ), final["loser"]
    assert contested.lower() in final["loser"]["error"].lower(), final["loser"]
    # The batch used the loser's nonce: its call ran once, and failed.
    (ran,) = forwarded(chain, loser.address)
    assert ran["args"]["success"] is False


def test_validation_refuses_with_the_targets_own_error(stack: Stack, chain: Chain) -> None:
    """The API's simulation on Hardhat: a call that would revert now is refused with the
    contract's custom error (Hardhat's nested revert data decoded), not "Reverted"."""
    taken = Account.create().address
    register(chain, chain.w3.eth.accounts[2], taken)
    resp = stack.post("/api/v1/forward", json=registration(chain, Account.create(), taken))
    assert (resp.status_code, resp.json()["code"]) == (422, "RegistryInvalidNodeKey"), resp.text
    assert taken.lower() in resp.json()["reason"].lower(), resp.text


def test_relayer_gas_need_by_eth_estimate_gas_on_hardhat(
    stack: Stack, chain: Chain, deployment: LiveDeployment
) -> None:
    """Relayer.gas_need without eth_simulateV1: the node's estimate, capped at the gas
    given; Hardhat's "ran out of gas" under the cap is the cue to send less (not a
    revert), and a revert is the target's own error."""
    registry = chain.contract("NodeRegistry")
    now = chain.w3.eth.get_block("latest")["timestamp"]

    def request(node_key: str) -> TxRequest:
        data = registry.encode_abi("registerNode", _node_args(chain, node_key, now))
        return TxRequest(to=registry.address, data=data)

    with service_relayer(deployment, stack.redis.url) as relayer:
        free = request(Account.create().address)
        need = relayer.gas_need(free, forwarded_gas=0, simulate_gas=5_000_000)
        assert 100_000 < need.used == need.lowest_limit < 5_000_000, need
        cramped = relayer.gas_need(free, forwarded_gas=0, simulate_gas=need.used // 2)
        assert cramped.lowest_limit == need.used // 2 + 1, cramped
        taken = Account.create().address
        register(chain, chain.w3.eth.accounts[3], taken)
        with pytest.raises(TransactionReverted) as reverted:
            relayer.gas_need(request(taken), forwarded_gas=0, simulate_gas=5_000_000)
        assert reverted.value.code == "RegistryInvalidNodeKey", reverted.value


def test_the_relayer_took_its_fallbacks_on_hardhat(stack: Stack, hardhat: HardhatNode) -> None:
    """Runs last (file order): the worker probed each optional method once, found
    Hardhat without it, and said so; it never said Hardhat offers one."""
    log = stack.worker.log_tail(100_000)
    for method in ("eth_simulateV1", "debug_traceTransaction"):
        assert f"RPC node {hardhat.url} has no {method}" in log, method
        assert f"RPC node {hardhat.url} offers {method}" not in log, method
