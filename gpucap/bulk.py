"""Send many transactions fast: sign locally, send in JSON-RPC batches, wait for all receipts.

For seeding a development chain with thousands of transactions under interval
mining: waiting for each receipt in turn would take one block per transaction.
Each sender's transactions keep their order (consecutive nonces); there is no
order between senders, so a caller puts transactions that depend on another
sender's into a later ``send`` (a *phase*).

Gas limits are given, not estimated: an estimate against the current state is
wrong for a transaction that depends on earlier ones still in the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_typing import ABIEvent, ABIFunction
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector
from eth_utils.abi import get_abi_input_types
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxParams

from gpucap.revert import decode_revert

BATCH = 250  # requests per JSON-RPC batch: large enough to be quick, small enough for anvil


class Calldata:
    """ABI-encode calls of one contract fast: selector and argument types looked up once
    (web3's ``encode_abi`` re-resolves the function on every call: ~6 ms each)."""

    def __init__(self, abi: Sequence[dict[str, Any]]) -> None:
        self._functions = {
            item["name"]: (
                function_abi_to_4byte_selector(cast(ABIFunction, item)),
                get_abi_input_types(cast(ABIFunction, item)),
            )
            for item in abi
            if item.get("type") == "function"
        }

    def __call__(self, function: str, *args: Any) -> str:
        selector, types = self._functions[function]
        return "0x" + (selector + encode(types, args)).hex()


def event_topic(abi: Sequence[dict[str, Any]], name: str) -> bytes:
    """The signature hash (first log topic) of event ``name`` in ``abi``."""
    event = next(e for e in abi if e.get("type") == "event" and e["name"] == name)
    return event_abi_to_log_topic(cast(ABIEvent, event))


class BulkTxFailed(RuntimeError):
    """Some transactions of a phase reverted or were never mined; the message says which."""


@dataclass(frozen=True)
class PlannedTx:
    label: str  # what it does, for errors ("registerNode 17")
    sender: LocalAccount
    to: str | None  # None: a contract creation
    data: str
    gas: int
    value: int = 0


@dataclass(frozen=True)
class MinedTx:
    planned: PlannedTx
    tx_hash: HexBytes
    receipt: dict[str, Any]  # as the node sent it (hex strings): cheap to read in bulk

    def topics(self, emitter: str, topic0: bytes) -> list[list[int]]:
        """Indexed arguments (as ints) of each log of ``emitter`` whose first topic is
        ``topic0`` (an event's signature hash)."""
        wanted = "0x" + topic0.hex()
        return [
            [int(t, 16) for t in log["topics"][1:]]
            for log in self.receipt["logs"]
            if log["address"].lower() == emitter.lower() and log["topics"][0] == wanted
        ]


Progress = Callable[[int, int], None]  # (done, total)


class BulkSender:
    """Pre-signs transactions with locally tracked nonces and sends them in batches."""

    def __init__(
        self,
        w3: Web3,
        *,
        max_fee_per_gas: int = 100 * 10**9,
        priority_fee_per_gas: int = 10**9,
        abis: Sequence[Sequence[dict[str, Any]]] = (),
    ) -> None:
        self.w3 = w3
        self.chain_id = w3.eth.chain_id
        self.max_fee = max_fee_per_gas
        self.priority_fee = priority_fee_per_gas
        self._nonces: dict[str, int] = {}
        self._error_abi = [item for abi in abis for item in abi if item.get("type") == "error"]

    def next_nonce(self, address: str) -> int:
        """The nonce the next transaction of ``address`` will carry (pending ones included)."""
        if address not in self._nonces:
            self._nonces[address] = self.w3.eth.get_transaction_count(
                Web3.to_checksum_address(address), "pending"
            )
        return self._nonces[address]

    def send(
        self, planned: Sequence[PlannedTx], progress: Progress | None = None, timeout: float = 300
    ) -> list[MinedTx]:
        """Sign, send and wait for every transaction; raise BulkTxFailed if any reverted."""
        raw: list[tuple[PlannedTx, bytes]] = []
        for tx in planned:
            address = tx.sender.address
            nonce = self.next_nonce(address)
            fields: dict[str, Any] = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "gas": tx.gas,
                "maxFeePerGas": self.max_fee,
                "maxPriorityFeePerGas": self.priority_fee,
                "value": tx.value,
                "data": tx.data,
            }
            if tx.to is not None:
                fields["to"] = Web3.to_checksum_address(tx.to)
            raw.append((tx, tx.sender.sign_transaction(fields).raw_transaction))
            self._nonces[address] = nonce + 1
        hashes: list[HexBytes] = []
        for start in range(0, len(raw), BATCH):
            chunk = raw[start : start + BATCH]
            # The provider's own batch: web3's batch_requests refuses eth_sendRawTransaction.
            answers = self.w3.provider.make_batch_request(  # type: ignore[attr-defined]
                [("eth_sendRawTransaction", ["0x" + bytes(signed).hex()]) for _, signed in chunk]
            )
            for (tx, _), answer in zip(chunk, _in_request_order(answers), strict=True):
                if "result" not in answer:
                    raise BulkTxFailed(f"{tx.label}: the node refused it: {answer.get('error')}")
                hashes.append(HexBytes(answer["result"]))
        receipts = self._await_receipts(hashes, progress, timeout)
        mined = [MinedTx(tx, h, r) for (tx, _), h, r in zip(raw, hashes, receipts, strict=True)]
        failed = [m for m in mined if int(m.receipt["status"], 16) != 1]
        if failed:
            first = failed[0]
            raise BulkTxFailed(
                f"{len(failed)} of {len(mined)} transactions reverted; first: "
                f"{first.planned.label} (tx {first.tx_hash.to_0x_hex()}): {self._why(first)}"
            )
        return mined

    def _await_receipts(
        self, hashes: list[HexBytes], progress: Progress | None, timeout: float
    ) -> list[Any]:
        raw: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            waiting = [i for i in range(len(hashes)) if i not in raw]
            for start in range(0, len(waiting), BATCH):
                chunk = waiting[start : start + BATCH]
                answers = self.w3.provider.make_batch_request(  # type: ignore[attr-defined]
                    [("eth_getTransactionReceipt", [hashes[i].to_0x_hex()]) for i in chunk]
                )
                for i, answer in zip(chunk, _in_request_order(answers), strict=True):
                    if answer.get("result"):  # null while pending
                        raw[i] = answer["result"]
            if progress is not None:
                progress(len(raw), len(hashes))
            if len(raw) == len(hashes):
                break
            if time.monotonic() > deadline:
                raise BulkTxFailed(
                    f"{len(hashes) - len(raw)} of {len(hashes)} transactions not mined "
                    f"after {timeout:.0f}s"
                )
            time.sleep(0.25)
        return [raw[i] for i in range(len(hashes))]

    def _why(self, mined: MinedTx) -> str:
        """Replay the reverted call on the state before its block, to name the error."""
        tx = mined.planned
        call: dict[str, Any] = {"from": tx.sender.address, "data": tx.data, "gas": tx.gas}
        if tx.to is not None:
            call["to"] = Web3.to_checksum_address(tx.to)
        try:
            self.w3.eth.call(
                cast(TxParams, call), block_identifier=int(mined.receipt["blockNumber"], 16) - 1
            )
        except Exception as exc:  # noqa: BLE001 - any failure is the explanation we want
            data = getattr(exc, "data", None)
            decoded = decode_revert(self._error_abi, data) if isinstance(data, str) else None
            if decoded is not None:
                return str(decoded)
            return str(exc)
        return "reverted (it succeeds when replayed before its block: it depended on an earlier tx)"


def _in_request_order(answers: Any) -> list[dict[str, Any]]:
    """JSON-RPC batch answers may come in any order; their ids follow the requests'."""
    if not isinstance(answers, list):
        raise BulkTxFailed(f"the node refused the whole batch: {answers}")
    return sorted(answers, key=lambda answer: int(answer["id"]))
