"""The epoch settlement keeper's transactions: ``settle(epoch, items)`` for a batch of nodes,
the gas it needs, and batches packed so that none would revert, skip an item or exceed a
gas cap (the planner, ``epochs.py``, decides which nodes settle at which epoch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from web3.exceptions import ContractLogicError

from backend.services.chain import Chain
from backend.services.errors import TransactionReverted
from backend.services.relaying.relayer import GAS_HEADROOM_DEN, GAS_HEADROOM_NUM, TxRequest
from backend.services.revert import decode_revert, revert_data
from gpucap.attestation import NodeLeaf

SETTLEMENT = "EpochSettlement"
# Calldata and estimation stay small: a batch never carries more nodes than this.
MAX_ITEMS_PER_BATCH = 64
# The most gas a settle simulation may use (a block's worth on a 30M-gas chain).
MAX_SETTLE_GAS = 30_000_000


@dataclass(frozen=True)
class SettleItem:
    leaf: NodeLeaf
    proof: list[str]


Estimate = Callable[[int, Sequence[SettleItem]], "int | str"]


def settle_request(chain: Chain, epoch: int, items: Sequence[SettleItem]) -> TxRequest:
    settlement = chain.contract(SETTLEMENT)
    args = [(item.leaf.values(), [bytes.fromhex(p[2:]) for p in item.proof]) for item in items]
    return TxRequest(
        to=settlement.address, data=settlement.encode_abi("settle", args=[epoch, args])
    )


def settle_epoch_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    """The action's transaction (REQUEST_BUILDERS): ``settle(epoch, items)`` with the gas
    that settles every item that can settle now (``settle_gas``); a batch that would
    revert raises TransactionReverted (decoded), as the relayer's own estimate would."""
    items = [
        SettleItem(NodeLeaf.from_json(leaf), list(proof))
        for leaf, proof in zip(params["leaves"], params["proofs"], strict=True)
    ]
    request = settle_request(chain, int(params["epoch"]), items)
    if "sender" not in params:  # planned before rows named their sender: the relayer estimates
        return request
    call = {"from": params["sender"], "to": request.to, "data": request.data}
    try:
        gas, _ = settle_gas(chain, call)
    except ContractLogicError as exc:
        decoded = decode_revert(revert_data(exc.data), chain.error_abis)
        raise TransactionReverted(decoded.reason, code=decoded.code) from exc
    return TxRequest(to=request.to, data=request.data, gas=gas)


def _settled_with(chain: Chain, call: dict[str, Any], gas: int) -> int:
    out = chain.call(
        "simulating settle",
        lambda: chain.w3.eth.call({**call, "gas": gas}),  # type: ignore[arg-type]
    )
    return int.from_bytes(out, "big")


def settle_gas(chain: Chain, call: dict[str, Any]) -> tuple[int, int]:
    """(gas, items settled) of a ``settle`` call: the least gas found, from the estimate
    with the relayer's headroom, at which as many items settle as with a whole block's gas.
    Why not the estimate alone: the node's estimate is the least gas at which the
    transaction succeeds, and a batch succeeds when an item runs out of gas in its own call
    frame and is skipped (the contract catches it), so a heavy item (a drawn pool's node)
    at the end of a batch could be skipped for want of gas the estimate never asked for.
    Raises ContractLogicError if the batch reverts."""
    settled = _settled_with(chain, call, MAX_SETTLE_GAS)
    estimate = chain.call(
        "estimating settle",
        lambda: chain.w3.eth.estimate_gas(call),  # type: ignore[arg-type]
    )
    gas = min(MAX_SETTLE_GAS, int(estimate) * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN)
    while gas < MAX_SETTLE_GAS and _settled_with(chain, call, gas) < settled:
        gas = min(MAX_SETTLE_GAS, gas * 3 // 2)
    return gas, settled


def chain_estimator(chain: Chain, sender: str) -> Estimate:
    """Gas of ``settle(epoch, items)`` from ``sender`` (``settle_gas``), or the decoded
    revert reason if it would revert now, or why not if it would skip an item: the contract
    skips an item that reverts (``SettlementItemSkipped``) instead of reverting the batch,
    and returns how many settled, so a simulated batch that settles fewer than all its
    items is split like one that reverts (a batch whose every item reverts still reverts)."""

    def estimate(epoch: int, items: Sequence[SettleItem]) -> int | str:
        request = settle_request(chain, epoch, items)
        call = {"from": sender, "to": request.to, "data": request.data}
        try:
            gas, settled = settle_gas(chain, call)
        except ContractLogicError as exc:
            decoded = decode_revert(revert_data(exc.data), chain.error_abis)
            return f"{decoded.code}: {decoded.reason}"
        skipped = len(items) - settled
        if skipped:
            return f"SettlementItemSkipped: {skipped} of {len(items)} items would be skipped"
        return gas

    return estimate


def pack(
    epoch: int, items: Sequence[SettleItem], estimate: Estimate, max_gas: int
) -> list[tuple[list[SettleItem], str | None]]:
    """Split ``items`` into batches that fit ``max_gas`` and would not revert; a single
    item that still reverts (or does not fit) comes back alone with the reason."""
    out: list[tuple[list[SettleItem], str | None]] = []
    for start in range(0, len(items), MAX_ITEMS_PER_BATCH):
        out.extend(
            _bisect(epoch, list(items[start : start + MAX_ITEMS_PER_BATCH]), estimate, max_gas)
        )
    return out


def _bisect(
    epoch: int, items: list[SettleItem], estimate: Estimate, max_gas: int
) -> list[tuple[list[SettleItem], str | None]]:
    result = estimate(epoch, items)
    if isinstance(result, int) and result <= max_gas:
        return [(items, None)]
    if len(items) == 1:
        reason = result if isinstance(result, str) else f"needs {result} gas (cap {max_gas})"
        return [(items, reason)]
    mid = len(items) // 2
    return _bisect(epoch, items[:mid], estimate, max_gas) + _bisect(
        epoch, items[mid:], estimate, max_gas
    )
