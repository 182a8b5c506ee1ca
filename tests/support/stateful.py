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

import http.client
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from brownie import history, network, web3
from brownie.network.event import _decode_logs
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_utils import collapse_if_tuple, function_signature_to_4byte_selector, to_checksum_address
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from web3._utils.abi import map_abi_data
from web3._utils.method_formatters import receipt_formatter
from web3._utils.normalizers import abi_address_to_hex, abi_bytes_to_bytes, abi_string_to_text

from gpucap.revert import DecodedError, decode_revert, error_selectors
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
    _snapshot_block[0] = int(_rpc("eth_blockNumber"), 16)
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
_snapshot_block = [0]  # its block number: where every revert lands, so not asked again
_example_counter = [0]


class _Node:
    """A lean JSON-RPC client to the test's anvil: one keep-alive ``http.client``
    connection per thread, JSON in and out, nothing else.

    Why not ``web3.provider.make_request``: requests, urllib3 and web3's caching and
    session layers cost ~0.5 ms of Python a call, half of a machine's CPU (py-spy on
    the revenue-pool machine: 52 % under ``HTTPSessionManager.make_post_request``), and
    the suite is CPU-bound on two cores. A call that fails on a connection the node
    closed is sent again on a new one, except a transaction (it may have been received).
    """

    _SENDS = frozenset({"eth_sendTransaction", "eth_sendTransactionSync", "eth_sendRawTransaction"})

    def __init__(self) -> None:
        self._local = threading.local()
        self._ids = itertools.count(1)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        url = web3.provider.endpoint_uri  # brownie may reconnect elsewhere between tests
        local = self._local
        if getattr(local, "url", None) != url:
            if getattr(local, "conn", None) is not None:
                local.conn.close()
            parts = urlsplit(url)
            local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            local.url, local.path = url, parts.path or "/"
        return local.conn, local.path

    def post(self, body: Any, *, resend: bool) -> Any:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):
            conn, path = self._connection()
            try:
                conn.request("POST", path, body=payload, headers=headers)
                return json.loads(conn.getresponse().read())
            except (http.client.HTTPException, ConnectionError):
                conn.close()  # http.client reconnects on the next request
                if attempt == 2 or not resend:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        return self.post(body, resend=method not in self._SENDS)

    def batch(self, calls: list[tuple[str, list[Any]]]) -> Any:
        body = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": p} for m, p in calls
        ]
        return self.post(body, resend=all(m not in self._SENDS for m, _ in calls))


_node = _Node()


def _rpc(method: str, *params: Any) -> Any:
    response = _node.call(method, list(params))
    if "error" in response:
        raise RuntimeError(f"{method} failed: {response['error']}")
    return response["result"]


def _revert_to_example_snapshot() -> None:
    snapshot = _example_snapshot[0]
    if snapshot is None:
        raise RuntimeError("SnapshotMachine examples run only through run_machine()")
    if _rpc("evm_revert", snapshot) is not True:
        raise RuntimeError(f"evm_revert({snapshot}) was refused by the node")
    history._revert(_snapshot_block[0])
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
    chain.mine() each notify its whole registry, and web3's get_block formats every
    field of the block for the one it needs. Two round trips: the latest block's
    stamp, then anvil's ``evm_mine(timestamp)`` (which also moves the node's clock
    there, as ``evm_setNextBlockTimestamp`` would). Returns the new block's timestamp.
    """
    latest = int(_rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    stamp = max(int(timestamp), latest + 1)
    _rpc("evm_mine", stamp)
    return stamp


# Gas limit of transact()'s transactions: given, so the node does not estimate each one.
TRANSACT_GAS = 3_000_000


class TransactFailed(AssertionError):
    """A machine's transaction reverted where the shadow expected it to succeed."""


def send_sync(tx: dict[str, Any]) -> dict[str, Any]:
    """Sends ``tx`` (from an account the node unlocks) and returns its raw receipt, in ONE
    round trip: anvil's ``eth_sendTransactionSync`` (EIP-7966) answers once the automined
    block holds it, where send + receipt polling took two or more."""
    return _rpc("eth_sendTransactionSync", tx)


def transact(contract: Any, fn_name: str, args: tuple, sender: Any) -> Events:
    """Sends ``contract.fn_name(*args)`` from ``sender`` and returns its events.

    For a machine's expected-success transactions: brownie's own path (receipt
    thread, nonce and fee lookups, history bookkeeping) costs ~40 ms a transaction
    against the one RPC it needs (send_sync), and a machine sends a few each
    example. Reverts the shadow expects go through ``revert_of`` (as calls); a
    revert here raises TransactFailed with the decoded reason. The transactions
    stay out of brownie's history, which the snapshot revert prunes anyway; the
    node picks their nonces.
    """
    data = getattr(contract, fn_name).encode_input(*args)
    tx = {"from": str(sender), "to": contract.address, "data": data, "gas": hex(TRANSACT_GAS)}
    receipt = send_sync(tx)
    if int(receipt["status"], 16) != 1:
        try:  # replay as a call for the reason (the state is unchanged by the revert)
            getattr(contract, fn_name).call(*args, {"from": sender})
        except Exception as exc:  # noqa: BLE001 - any failure is the reason we report
            raise TransactFailed(f"{fn_name}{args} reverted: {exc}") from exc
        raise TransactFailed(f"{fn_name}{args} reverted (a call of it succeeds)")
    return Events(receipt)


class Events:
    """A ``transact`` receipt's events as brownie decodes them (its ``EventDict``: read as
    ``events["Name"]["field"]``, ``"Name" in events``), decoded on first use.

    Why lazy: formatting the receipt and decoding its logs costs ~2 ms a transaction,
    and most of a machine's transactions (every one, in the revenue-pool machine) are
    checked through views, never through their events.
    """

    def __init__(self, raw_receipt: dict[str, Any]) -> None:
        self._receipt = raw_receipt
        self._decoded: Any = None

    def _events(self) -> Any:
        if self._decoded is None:
            self._decoded = _decode_logs(receipt_formatter(self._receipt)["logs"])
        return self._decoded

    def __getitem__(self, key: Any) -> Any:
        return self._events()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._events()

    def __iter__(self) -> Any:
        return iter(self._events())

    def __len__(self) -> int:
        return len(self._events())

    def __getattr__(self, name: str) -> Any:  # keys(), items(), count(), ...
        return getattr(self._events(), name)

    def __repr__(self) -> str:
        return repr(self._events())


def batch_views(*calls: tuple[Any, str, tuple]) -> list[Any]:
    """Runs view calls as ONE JSON-RPC batch: ``(brownie_contract, fn_name, args)``.

    An invariant that reads three views after every step would otherwise pay three
    HTTP round trips (plus brownie's per-call bookkeeping) a step, most of a
    machine's run time. Encoding and decoding go straight through eth_abi with the
    function's types cached per (address, name, arity): web3's contract-function
    path re-resolves the ABI on every call (~4 ms each, which dominated machines
    reading a dozen views a step); the calldata of a call is cached too (an invariant
    reads the same calls after every step). Results read like web3's: one output is
    returned as is (a struct as a tuple), several as a tuple; addresses are checksummed.
    """
    requests, decoders = [], []
    for contract, fn_name, args in calls:
        view = _view(contract, fn_name, len(args))
        requests.append(("eth_call", [_call_of(contract, fn_name, args, view), "latest"]))
        decoders.append(view)
    responses = _node.batch(requests)
    if not isinstance(responses, list):  # the node rejected the whole batch
        raise RuntimeError(f"batch of views failed: {responses}")
    results = []
    for response, view, (contract, fn_name, args) in zip(
        sorted(responses, key=lambda r: r["id"]), decoders, calls, strict=True
    ):
        if "error" in response:
            raise RuntimeError(f"{fn_name}{tuple(args)} on {contract.address}: {response['error']}")
        values = abi_decode(view.outputs, bytes.fromhex(response["result"][2:]))
        if view.has_address:
            values = _checksummed(values)
        results.append(values[0] if len(values) == 1 else tuple(values))
    return results


@dataclass(frozen=True)
class _View:
    selector: bytes
    inputs: list[str]
    outputs: list[str]
    has_address: bool  # some output holds an address (to checksum)


_views: dict[tuple[str, str, int], _View] = {}
# (address, fn_name, args) → eth_call object; cleared when full (args vary in some machines).
_calls: dict[tuple[Any, ...], dict[str, str]] = {}
_CALLS_MAX = 4_096


def _call_of(contract: Any, fn_name: str, args: Any, view: _View) -> dict[str, str]:
    try:
        key = (contract.address, fn_name, tuple(args))
        found = _calls.get(key)
    except TypeError:  # an unhashable argument (a list): encode it every time
        key, found = None, None
    if found is None:
        data = view.selector + abi_encode(view.inputs, list(args))
        found = {"to": contract.address, "data": "0x" + data.hex()}
        if key is not None:
            if len(_calls) >= _CALLS_MAX:
                _calls.clear()
            _calls[key] = found
    return found


def _view(contract: Any, fn_name: str, arity: int) -> _View:
    key = (contract.address, fn_name, arity)
    found = _views.get(key)
    if found is None:
        matches = [
            item
            for item in contract.abi
            if item.get("type") == "function"
            and item["name"] == fn_name
            and len(item["inputs"]) == arity
        ]
        if len(matches) != 1:
            raise ValueError(f"{fn_name} with {arity} arguments: {len(matches)} ABI matches")
        fn = matches[0]
        inputs = [collapse_if_tuple(i) for i in fn["inputs"]]
        outputs = [collapse_if_tuple(o) for o in fn["outputs"]]
        found = _views[key] = _View(
            selector=function_signature_to_4byte_selector(f"{fn_name}({','.join(inputs)})"),
            inputs=inputs,
            outputs=outputs,
            has_address=any("address" in o for o in outputs),
        )
    return found


def _checksummed(value: Any) -> Any:
    """eth_abi decodes addresses lowercase; web3 (and brownie) hand them out checksummed."""
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_checksummed(v) for v in value)
    return value


# ---------------------------------------------------------------------------
# Expected reverts, as eth_calls decoded to ``err()``'s "Name: args" form.
#
# Why not ``brownie.reverts`` around a transaction: after a node snapshot revert,
# brownie's receipt wait ("count > nonce, then look the hash up") occasionally
# reported a just-mined transaction as "dropped without known replacement"
# (about once per 5,000 transactions under load), failing CI on a flake. A call
# mines nothing, so the invariants also see that nothing changed.
# ---------------------------------------------------------------------------


def revert_of(contract: Any, fn_name: str, *args: Any, sender: Any) -> str:
    """The custom error ``contract.fn_name(*args)`` reverts with, formatted like ``err()``;
    fails the test if the call would succeed or reverts with an error the ABI lacks.

    ``contract`` is anything with ``address`` and ``abi`` (a machine may add a library's
    errors to a contract's ABI). One raw eth_call, encoded from the ABI types
    ``batch_views`` caches, and a decode against the contract's error selectors,
    computed once per address: web3's contract-call path (ABI resolution, argument
    normalisation, middlewares) and re-hashing every error of the ABI per check cost
    several ms each, and machines check hundreds of expected reverts per run.
    Arguments go to eth_abi as they are; ones it refuses (0x-hex for bytes, say) are
    normalised as web3 would first.
    """
    fn = _view(contract, fn_name, len(args))
    try:
        encoded = abi_encode(fn.inputs, list(args))
    except EncodingError:
        encoded = abi_encode(fn.inputs, map_abi_data(_WEB3_NORMALIZERS, fn.inputs, args))
    call = {
        "from": str(sender),
        "to": contract.address,
        "data": "0x" + (fn.selector + encoded).hex(),
    }
    response = _node.call("eth_call", [call, "latest"])
    if "error" not in response:
        raise AssertionError(f"{fn_name}{args!r} did not revert")
    data = response["error"].get("data")
    decoded = _decode_error(contract, data if isinstance(data, str) else None)
    assert decoded is not None, f"{fn_name}{args!r} reverted with undecodable data {data!r}"
    return err(decoded.name, *decoded.args.values())


_WEB3_NORMALIZERS = [abi_address_to_hex, abi_bytes_to_bytes, abi_string_to_text]
_error_entries: dict[str, dict[bytes, Any]] = {}


def _decode_error(contract: Any, data: str | None) -> DecodedError | None:
    selectors = _error_entries.get(contract.address)
    if selectors is None:
        selectors = _error_entries[contract.address] = error_selectors(contract.abi)
    if data is None or len(data) < 10:
        return None
    entry = selectors.get(bytes.fromhex(data[2:10]))
    return None if entry is None else decode_revert([entry], data)
