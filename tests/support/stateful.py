"""Shared base for chain-backed hypothesis state machines.

brownie 1.22's compiled ``state_machine`` helper rejects machine classes it did
not build itself (TypeError in ``_BrownieStateMachine.__init__``), so machines
here subclass hypothesis' ``RuleBasedStateMachine`` directly and do by hand what
brownie would: every example starts by reverting the chain to one snapshot of a
prepared world. A revert costs two RPC round trips where a redeploy would cost
dozens of transactions, which is what makes 1,000 examples affordable in CI.

Usage: build the world in module-scoped fixtures (so fn_isolation's snapshot and
ours are the same state), then ``run_machine(MyMachine, env, steps=8)``; the
machine reads ``env`` entries as attributes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from brownie import history, network, web3
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from web3.exceptions import ContractLogicError

from gpucap.revert import decode_revert
from tests.support.errors import err
from tests.support.profiles import active_profile, stateful_settings

# Mark a module's state machine tests with this: their run time is the profile's to set.
stateful_timeout = pytest.mark.timeout(active_profile().stateful_timeout_s)


class SnapshotMachine(RuleBasedStateMachine):
    """A state machine whose every example begins at the snapshot ``run_machine`` took."""

    env: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        _revert_to_example_snapshot()
        for name, value in self.env.items():
            setattr(self, name, value)


def run_machine(machine: type[SnapshotMachine], env: dict[str, Any], *, steps: int) -> None:
    """Snapshots the current chain and runs ``machine`` from it under the active profile.

    The snapshot replaces fn_isolation's (brownie keeps one); both hold the same
    state when the world was built in module fixtures, so isolation is unchanged.
    """
    machine.env = env
    provider = web3.provider
    # web3's validation middleware asks the node for its chain id before every
    # call and transaction: cache that one answer (it cannot change under a revert).
    cache_state = (provider.cache_allowed_requests, provider.cacheable_requests)
    fee_setting = network.priority_fee()
    provider.cache_allowed_requests, provider.cacheable_requests = True, {"eth_chainId"}
    _example_snapshot[0] = _rpc("evm_snapshot")
    try:
        run_state_machine_as_test(machine, settings=stateful_settings(steps=steps))
    finally:
        machine.env = {}
        _revert_to_example_snapshot()
        _example_snapshot[0] = None
        provider.cache_allowed_requests, provider.cacheable_requests = cache_state
        network.priority_fee(fee_setting)


# The node's own snapshot id for the world every example starts from. Raw
# evm_snapshot/evm_revert, not brownie's chain.revert(): that one notifies every
# registered object after a full gc.collect() (~0.2 s, most of an example's
# cost). A machine deploys no contracts, so only brownie's transaction history
# needs pruning: its nonce logic waits forever on a sender whose newest known tx
# was reverted away. The snapshot is taken after fn_isolation's, which stays valid.
_example_snapshot: list[str | None] = [None]
_example_counter = [0]


def _rpc(method: str, *params: Any) -> Any:
    response = web3.provider.make_request(method, list(params))
    if "error" in response:
        raise RuntimeError(f"{method} failed: {response['error']}")
    return response["result"]


def _revert_to_example_snapshot() -> None:
    snapshot = _example_snapshot[0]
    if snapshot is None:
        raise RuntimeError("SnapshotMachine examples run only through run_machine()")
    if _rpc("evm_revert", snapshot) is not True:
        raise RuntimeError(f"evm_revert({snapshot}) was refused by the node")
    history._revert(web3.eth.block_number)
    # A distinct priority fee per example (1 gwei + n wei) makes every example's
    # transactions distinct from every earlier example's: replaying the same steps
    # from the same snapshot would otherwise re-send byte-identical transactions
    # (same hashes) that anvil had mined and then reverted away, and brownie
    # reported one of those, rarely, as "dropped without known replacement".
    _example_counter[0] += 1
    network.priority_fee(10**9 + _example_counter[0])
    # anvil drops a snapshot once reverted to: take it again for the next example.
    _example_snapshot[0] = _rpc("evm_snapshot")


def mine_at_least(timestamp: int) -> int:
    """Mines one block stamped ``timestamp`` (or the next second, if the chain is past it).

    Raw RPC for the same reason as the revert above: brownie's chain.sleep() and
    chain.mine() each notify its whole registry. Returns the new block's timestamp.
    """
    latest = web3.eth.get_block("latest")["timestamp"]
    stamp = max(int(timestamp), latest + 1)
    _rpc("evm_setNextBlockTimestamp", stamp)
    _rpc("evm_mine")
    return stamp


def batch_views(*calls: tuple[Any, str, tuple]) -> list[Any]:
    """Runs view calls as ONE JSON-RPC batch: ``(brownie_contract, fn_name, args)``.

    An invariant that reads three views after every step would otherwise pay three
    HTTP round trips (plus brownie's per-call bookkeeping) a step, most of a
    machine's run time.
    """
    with web3.batch_requests() as batch:
        for contract, fn_name, args in calls:
            batch.add(getattr(_web3_contract(contract).functions, fn_name)(*args))
        return list(batch.execute())


_web3_contracts: dict[str, Any] = {}


def _web3_contract(contract: Any) -> Any:
    # Building a web3 contract parses its ABI (~3 ms): once per address.
    found = _web3_contracts.get(contract.address)
    if found is None:
        found = _web3_contracts[contract.address] = web3.eth.contract(
            address=contract.address, abi=contract.abi
        )
    return found


# ---------------------------------------------------------------------------
# Transactions and expected reverts for machines, through web3 directly.
#
# Why not brownie's ContractTx in a machine: after a node snapshot revert,
# brownie's receipt wait ("count > nonce, then look the hash up") occasionally
# reported a just-mined transaction as "dropped without known replacement"
# (about once per 5,000 transactions under load), failing a CI run on a flake.
# web3's wait polls the receipt by hash until it is there. Expected reverts are
# checked with eth_call: nothing is mined, the custom error is decoded, and the
# invariants still see that nothing changed.
# ---------------------------------------------------------------------------


def transact(contract: Any, fn_name: str, *args: Any, sender: Any) -> Any:
    """Sends ``contract.fn_name(*args)`` from an unlocked dev account; the receipt (status 1)."""
    fn = getattr(_web3_contract(contract).functions, fn_name)(*args)
    tx_hash = fn.transact({"from": str(sender)})
    receipt = web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.01)
    assert receipt["status"] == 1, f"{fn_name} reverted on-chain: {tx_hash.hex()}"
    return receipt


def events(contract: Any, receipt: Any, name: str) -> list[dict[str, Any]]:
    """Decoded ``name`` events ``contract`` emitted in ``receipt`` (args only)."""
    event = getattr(_web3_contract(contract).events, name)()
    return [dict(e["args"]) for e in event.process_receipt(receipt)]


def revert_of(contract: Any, fn_name: str, *args: Any, sender: Any) -> str:
    """The custom error ``contract.fn_name(*args)`` reverts with, formatted like ``err()``;
    fails the test if the call would succeed or reverts with an error the ABI lacks."""
    fn = getattr(_web3_contract(contract).functions, fn_name)(*args)
    try:
        fn.call({"from": str(sender)})
    except ContractLogicError as exc:
        data = exc.data
    except ValueError as exc:  # brownie's catch_tx_revert middleware re-raises the RPC error
        payload = exc.args[0] if exc.args else None
        if not isinstance(payload, dict) or "data" not in payload:
            raise
        data = payload["data"]
    else:
        raise AssertionError(f"{fn_name}{args!r} did not revert")
    decoded = decode_revert(contract.abi, data if isinstance(data, str) else None)
    assert decoded is not None, f"{fn_name} reverted with undecodable data {data!r}"
    return err(decoded.name, *decoded.args.values())
