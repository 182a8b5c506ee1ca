"""How many forward requests go in one batch: within its gas cap, and so that
``BatchLimits.per_block`` batches like it fill a block.

Sizing is apart from the batch's rows (``batching.py``) because it is about gas
alone: it simulates candidate batches and remembers, per relayer, what the last one
needed, so the next batch's first guess is close and its gas search short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backend.services.errors import ServiceError, TransactionReverted
from backend.services.relaying.actions import OpenRow
from backend.services.relaying.forward import batch_tx
from backend.services.relaying.relayer import GasNeed, Relayer, TxRequest

# A batch is first sized this much under what the last one's gas per request allows.
SIZE_SLACK = 0.03


class RequestTooLarge(ServiceError):
    """One request alone needs more gas than a batch may have: it can never be relayed."""

    code = "RequestTooLarge"


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int = 100
    # Gas limit a batch may have; never more than the latest block's gas limit.
    max_gas: int = 15_000_000
    # Batches are sized so that this many fill a block (a block's last transaction
    # counts its gas limit, the others their gas used: smaller batches leave less
    # of the block empty, more of them cost more relay work per request).
    per_block: int = 4


def block_share(used: float, limit: float, per_block: int) -> float:
    """The block gas ``per_block`` transactions like this one (``used``, ``limit``)
    take: a node fills a block with transactions while the gas they used plus the
    next one's gas LIMIT fits, so the last counts its limit, the others their use."""
    return (per_block - 1) * used + limit


@dataclass(frozen=True)
class GasSeen:
    """Gas per request of the last batch a relayer simulated, and its lowest limit /
    gas used: the first guess at the next batch's size (each simulation of an
    over-full batch costs full runs) and its gas search hint."""

    used: float
    limit: float
    ratio: float

    @classmethod
    def of(cls, need: GasNeed, requests: int) -> GasSeen:
        return cls(used=need.used / requests, limit=need.limit / requests, ratio=need.ratio)

    def batch_size(self, cap: int, block_gas: int, per_block: int) -> int:
        """Requests like these that fit the cap and ``per_block`` to a block, less
        SIZE_SLACK for requests a little heavier than these."""
        by_cap = cap / self.limit
        by_block = block_gas / block_share(self.used, self.limit, per_block)
        return int(min(by_cap, by_block) * (1 - SIZE_SLACK))


# What the last batch each relayer simulated needed, by relayer address.
_gas_seen: dict[str, GasSeen] = {}


def fit(
    relayer: Relayer, rows: list[OpenRow], limits: BatchLimits
) -> tuple[list[OpenRow], TxRequest]:
    """The longest prefix of ``rows`` whose batch fits: its gas limit within the cap,
    and ``limits.per_block`` batches like it within one block (block_share), as a
    transaction with its gas limit set. The first row (the task's own) is always in
    it. If that one cannot go even alone: TransactionReverted (decoded) if it would
    revert, RequestTooLarge if it needs more gas than a batch may have."""
    block_gas = relayer.block_gas_limit()
    cap = min(limits.max_gas, block_gas)
    seen = _gas_seen.get(relayer.sender)
    if seen is not None:
        rows = rows[: max(1, seen.batch_size(cap, block_gas, limits.per_block))]
    while True:
        request = batch_tx(relayer.chain, [r.params for r in rows], relayer.sender)
        try:
            need = relayer.gas_need(
                request,
                forwarded_gas=max(int(r.params["gas"]) for r in rows),
                simulate_gas=block_gas,
                hint=seen.ratio if seen is not None else None,
            )
        except TransactionReverted:
            # A non-atomic batch reverts only on a forwarder-level error; find the
            # request that causes it by sending the task's own alone.
            if len(rows) > 1:
                rows = rows[:1]
                continue
            raise
        if need.lowest_limit <= block_gas:  # not an out-of-gas cue: a real measurement
            seen = GasSeen.of(need, len(rows))
            _gas_seen[relayer.sender] = seen
        limit = need.limit
        share = block_share(need.used, limit, limits.per_block)
        if limit <= cap and (len(rows) == 1 or share <= block_gas):
            return rows, replace(request, gas=limit)
        if len(rows) == 1:
            raise RequestTooLarge(
                f"the request needs {limit} gas; a relayed batch may use at most {cap}"
            )
        room = min(cap / limit, block_gas / share)
        rows = rows[: max(1, min(len(rows) - 1, int(len(rows) * room)))]
