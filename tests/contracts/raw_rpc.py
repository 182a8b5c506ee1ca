"""Raw JSON-RPC transactions and batched views for chain-backed state machines.

Why: a brownie transaction costs ~45 ms of Python (receipt polling, history, event
formatting) and a web3.py contract call ~4 ms of ABI lookups per call on a large ABI —
most of a machine's run time. Here a transaction is one RPC round trip
(eth_sendTransactionSync on anvil's automine: send and receipt in one) and a set of views is one
batch with pre-encoded calldata, decoded straight with eth_abi. Expected reverts are
checked with eth_call against the exact ABI-encoded custom error.
"""

from __future__ import annotations

from typing import Any

from brownie import web3
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from tests.support.stateful import send_sync

GAS = hex(3_000_000)


def _type_string(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param["components"])
        return f"({inner}){param['type'][len('tuple') :]}"
    return param["type"]


class TxReverted(AssertionError):
    """A transaction the machine expected to succeed reverted (the data says why)."""


def send(sender: Any, contract: Any, fn_name: str, *args: Any) -> dict[str, Any]:
    """Sends `contract.fn_name(*args)` from `sender`; returns the receipt, raising if reverted."""
    data = getattr(contract, fn_name).encode_input(*args)
    tx = {"from": str(sender), "to": contract.address, "data": data, "gas": GAS}
    receipt = send_sync(tx)
    if int(receipt["status"], 16) != 1:
        # Replay as a call for the revert data (state is unchanged by the reverted tx).
        response = web3.provider.make_request("eth_call", [tx, "latest"])
        raise TxReverted(f"{fn_name}{args} reverted: {response.get('error')}")
    return receipt


def error_data(signature: str, types: tuple[str, ...] = (), values: tuple = ()) -> str:
    """ABI-encoded custom error, e.g. ``error_data("PoolCooldownActive(uint64,uint64)", ...)``."""
    selector = function_signature_to_4byte_selector(signature)
    return "0x" + (selector + encode(list(types), list(values))).hex()


def expect_revert(sender: Any, contract: Any, fn_name: str, args: tuple, expected: str) -> None:
    """Asserts that `contract.fn_name(*args)` from `sender` reverts with exactly `expected`."""
    data = getattr(contract, fn_name).encode_input(*args)
    tx = {"from": str(sender), "to": contract.address, "data": data, "gas": GAS}
    response = web3.provider.make_request("eth_call", [tx, "latest"])
    assert "error" in response, f"{fn_name}{args} did not revert"
    got = response["error"].get("data")
    assert got == expected, f"{fn_name}{args} reverted with {got}, expected {expected}"


class Views:
    """A fixed set of view calls, read in one JSON-RPC batch and decoded with eth_abi."""

    def __init__(self, calls: list[tuple[Any, str, tuple]]) -> None:
        self._requests = []
        self._types = []
        for contract, fn_name, args in calls:
            method = getattr(contract, fn_name)
            data = method.encode_input(*args)
            self._requests.append(("eth_call", [{"to": contract.address, "data": data}, "latest"]))
            self._types.append([_type_string(o) for o in method.abi["outputs"]])

    def read(self) -> list[Any]:
        responses = web3.provider.make_batch_request(self._requests)
        values = []
        for response, types in zip(responses, self._types, strict=True):
            if "error" in response:
                raise RuntimeError(f"view failed: {response['error']}")
            decoded = decode(types, bytes.fromhex(response["result"][2:]))
            values.append(decoded[0] if len(decoded) == 1 else decoded)
        return values
