"""Epoch settlement keeper: settle every billable node's attested epochs, in order.

``EpochSettlement.settle(epoch, items)`` settles one epoch for many nodes; each
item is a node's attested leaf and its Merkle proof. A node must be settled
epoch by epoch: settling epoch e forecloses every earlier epoch of that node for
good (the contract reverts on anything at or below the last settled epoch). So
the planner (a beat task) works like this, per run:

1. Billable nodes: those that ever got usage terms or a pool (the index's
   ``UsageTermsSet``/``PoolSet`` events) and still have one on-chain
   (``usageTerms``/``poolOf``). A node is settled from the first epoch that
   starts after it became billable: the payer agreed to no earlier usage.
2. Per node, the NEXT epoch only: the first attested epoch after its last
   settled one whose published leaf verifies against the attested root. An
   epoch whose complete, verified file has no leaf for the node (the oracle
   excluded it) can never be settled for it and is passed over. A missing,
   forged or incomplete file stops the node there (logged): passing over it
   would lose that epoch. A node with an open settle action waits for it, so
   two epochs of one node are never in flight at once (the relayer may mine
   them in any order).
3. Nodes are grouped by that epoch and packed into transactions: estimated
   against the chain from the relayer's address and split in halves while a
   batch would revert or exceed ``max_batch_gas``; a node whose settlement
   reverts alone ends up alone (one bad payer cannot block the others), and
   its failed action row says why. Nodes of a batch that reverted on-chain retry
   alone at once; a node that failed alone retries after ``retry_after_seconds``.
   The contract skips an item that reverts inside a batch (``SettlementItemSkipped``)
   rather than reverting the batch: the estimate splits a batch that would skip
   anything as if it reverted, and a node skipped on-chain anyway (its item failed
   after the estimate) keeps its last settled epoch, so the next run plans it again.

Each batch is an action row (idempotency key from epoch, root, nodes and attempt)
relayed through the write-ahead relayer like every other keeper action; a
retried or duplicated plan finds the existing row. What is due comes from the chain
(``lastSettledEpoch``), not from the rows: a row that says confirmed for an epoch the
chain has not settled lost its transaction to a reorg, and is re-opened and sent again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3.exceptions import ContractLogicError

from backend.db.models import (
    OPEN_STATUSES,
    Action,
    ActionKind,
    ActionStatus,
    ChainEvent,
    EpochRow,
    utcnow,
)
from backend.services.chain import Chain
from backend.services.indexing.leaves import (
    EpochProofs,
    ProofsDirs,
    ProofsMismatch,
    ProofsUnavailable,
    load_epoch_proofs,
)
from backend.services.relaying.finality import plan_action
from backend.services.relaying.relayer import GAS_HEADROOM_DEN, GAS_HEADROOM_NUM, TxRequest
from backend.services.revert import decode_revert, revert_data
from gpucap.attestation import NodeLeaf

log = logging.getLogger(__name__)

SETTLEMENT = "EpochSettlement"
HUB = "OracleHub"
BILLABLE_EVENTS = ("UsageTermsSet", "PoolSet")
ZERO_ADDRESS = "0x" + "0" * 40
# Calldata and estimation stay small: a batch never carries more nodes than this.
MAX_ITEMS_PER_BATCH = 64
KEY_PREFIX = "settle-epoch"


@dataclass(frozen=True)
class SettleItem:
    leaf: NodeLeaf
    proof: list[str]


@dataclass
class EpochPlan:
    """What one planner run created (action ids), and why it did not do more."""

    actions: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # nothing wrong yet: a file, a retry
    rejected: list[str] = field(default_factory=list)  # forged/mismatched files, reverts
    # Attested epochs from the oldest one with work left for some node (due, waiting for a
    # file or a retry, rejected) through the newest indexed: 1 is a keeper in step.
    epochs_behind: int = 0


Estimate = Callable[[int, Sequence[SettleItem]], "int | str"]


def settle_request(chain: Chain, epoch: int, items: Sequence[SettleItem]) -> TxRequest:
    settlement = chain.contract(SETTLEMENT)
    args = [(item.leaf.values(), [bytes.fromhex(p[2:]) for p in item.proof]) for item in items]
    return TxRequest(
        to=settlement.address, data=settlement.encode_abi("settle", args=[epoch, args])
    )


def settle_epoch_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    """The action's transaction (REQUEST_BUILDERS): ``settle(epoch, items)``."""
    items = [
        SettleItem(NodeLeaf.from_json(leaf), list(proof))
        for leaf, proof in zip(params["leaves"], params["proofs"], strict=True)
    ]
    return settle_request(chain, int(params["epoch"]), items)


def chain_estimator(chain: Chain, sender: str) -> Estimate:
    """Gas of ``settle(epoch, items)`` from ``sender`` (with the relayer's headroom), or the
    decoded revert reason if it would revert now, or why not if it would skip an item: the
    contract skips an item that reverts (``SettlementItemSkipped``) instead of reverting the
    batch, and returns how many settled, so a simulated batch that settles fewer than all its
    items is split like one that reverts (a batch whose every item reverts still reverts)."""

    def estimate(epoch: int, items: Sequence[SettleItem]) -> int | str:
        request = settle_request(chain, epoch, items)
        call = {"from": sender, "to": request.to, "data": request.data}
        try:
            settled = chain.call("simulating settle", lambda: chain.w3.eth.call(call))  # type: ignore[arg-type]
            gas = chain.call("estimating settle", lambda: chain.w3.eth.estimate_gas(call))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            decoded = decode_revert(revert_data(exc.data), chain.error_abis)
            return f"{decoded.code}: {decoded.reason}"
        skipped = len(items) - int.from_bytes(settled, "big")
        if skipped:
            return f"SettlementItemSkipped: {skipped} of {len(items)} items would be skipped"
        return int(gas) * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN

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


def first_epoch_after(timestamp: int, genesis: int, length: int) -> int:
    """The first epoch starting at or after ``timestamp`` (epoch 1 starts at genesis)."""
    if timestamp <= genesis:
        return 1
    return -(-(timestamp - genesis) // length) + 1


def _key(epoch: int, root: str, node_ids: Sequence[int], attempt: int) -> str:
    """Same key ⇔ same epoch, root (so the same leaves and proofs), nodes and attempt."""
    digest = hashlib.sha256(",".join(map(str, sorted(node_ids))).encode()).hexdigest()[:24]
    return f"{KEY_PREFIX}:{epoch}:{root[2:18]}:{digest}:{attempt}"


@dataclass(frozen=True)
class _Failure:
    alone_at: Any  # when it failed, if it was alone in its batch (else None)
    block: int | None  # where its transaction was mined (None: refused before mining)


@dataclass
class _History:
    """The settle-epoch actions that matter for this run."""

    busy: set[int]  # nodes with an open action
    # (node, epoch) → its failed rows. A node whose batch failed goes alone next time
    # at once; one that failed alone waits before retrying.
    failures: dict[tuple[int, int], list[_Failure]]

    @classmethod
    def load(cls, session: Session) -> _History:
        busy: set[int] = set()
        failures: dict[tuple[int, int], list[_Failure]] = {}
        rows = session.execute(
            select(Action.status, Action.params, Action.updated_at, Action.block_number).where(
                Action.kind == ActionKind.SETTLE_EPOCH.value,
                Action.status.in_((*OPEN_STATUSES, ActionStatus.FAILED.value)),
            )
        ).all()
        for status, params, updated_at, block in rows:
            nodes = [int(n) for n in params["node_ids"]]
            if status in OPEN_STATUSES:
                busy.update(nodes)
                continue
            failure = _Failure(updated_at if len(nodes) == 1 else None, block)
            for node in nodes:
                failures.setdefault((node, int(params["epoch"])), []).append(failure)
        return cls(busy, failures)

    def attempts(self, node: int, epoch: int) -> int:
        """Failed rows of the node's epoch so far: the next row's attempt number."""
        return len(self.failures.get((node, epoch), []))

    def held_back(self, node: int, row: EpochRow, retry_before: Any) -> int:
        """How many times the node's epoch failed against the attestation it is planned
        on now, if the last of them failed alone after ``retry_before`` (else 0). A row
        mined before that attestation's block failed on a chain without it (a reorg
        re-sent it before the oracles attested again; it reverts OracleInvalidProof):
        the settlement itself was never refused, so it goes again at once."""
        counted = [
            f
            for f in self.failures.get((node, row.epoch), [])
            if f.block is None or f.block >= row.block_number
        ]
        last = max((f.alone_at for f in counted if f.alone_at is not None), default=None)
        return len(counted) if last is not None and last > retry_before else 0


def billable_since(session: Session) -> dict[int, int]:
    """Node id → block time of its first usage-terms or pool event (from the index)."""
    rows = session.execute(
        select(ChainEvent.args, ChainEvent.block_timestamp)
        .where(ChainEvent.contract == SETTLEMENT, ChainEvent.event.in_(BILLABLE_EVENTS))
        .order_by(ChainEvent.block_number, ChainEvent.log_index)
    ).all()
    first: dict[int, int] = {}
    for args, timestamp in rows:
        first.setdefault(int(args["nodeId"]), int(timestamp))
    return first


def plan_epoch_settlements(
    session: Session,
    chain: Chain,
    proofs_dir: ProofsDirs,
    *,
    sender: str,
    max_batch_gas: int,
    retry_after_seconds: float,
    enqueue: Callable[[str], Any] | None = None,
    estimate: Estimate | None = None,
    on_reopen: Callable[[str], Any] | None = None,
) -> EpochPlan:
    """Create (and enqueue) the settle actions due now; see the module notes."""
    plan = EpochPlan()
    since = billable_since(session)
    if not since:
        return plan
    identity = chain.identity()
    settlement, hub = chain.contract(SETTLEMENT), chain.contract(HUB)
    genesis, length = chain.call(
        "reading the epoch schedule",
        lambda: (
            int(hub.functions.genesisTimestamp().call()),
            int(hub.functions.epochLengthSeconds().call()),
        ),
    )
    history = _History.load(session)
    retry_before = utcnow() - timedelta(seconds=retry_after_seconds)
    starts: dict[int, int] = {}  # node → first epoch it may settle now
    for node, became_billable in sorted(since.items()):
        if node in history.busy:
            plan.waiting.append(f"node {node}: a settlement is in flight")
            continue
        terms, pool, last = chain.call(
            "reading the node's settlement state",
            lambda n=node: (
                settlement.functions.usageTerms(n).call(),
                settlement.functions.poolOf(n).call(),
                int(settlement.functions.lastSettledEpoch(n).call()),
            ),
        )
        if terms[0] == ZERO_ADDRESS and pool == ZERO_ADDRESS:
            continue  # usage terms withdrawn and no pool: nothing to bill
        starts[node] = max(last + 1, first_epoch_after(became_billable, genesis, length))
    if not starts:
        return plan
    epochs = session.scalars(
        select(EpochRow).where(EpochRow.epoch >= min(starts.values())).order_by(EpochRow.epoch)
    ).all()
    files: dict[int, EpochProofs | ProofsUnavailable] = {}

    def proofs_of(row: EpochRow) -> EpochProofs | ProofsUnavailable:
        if row.epoch not in files:
            try:
                files[row.epoch] = load_epoch_proofs(
                    proofs_dir, row.epoch, row.root, row.node_count
                )
            except ProofsUnavailable as exc:
                files[row.epoch] = exc
        return files[row.epoch]

    due: dict[int, list[tuple[SettleItem, int]]] = {}  # epoch → (item, attempt)
    newest = epochs[-1].epoch if epochs else 0
    for node, start in starts.items():
        for row in epochs:
            if row.epoch < start:
                continue
            proofs = proofs_of(row)
            if isinstance(proofs, ProofsUnavailable):
                (plan.rejected if isinstance(proofs, ProofsMismatch) else plan.waiting).append(
                    f"node {node}: {proofs}"
                )
                break
            if node in proofs.leaves:
                if count := history.held_back(node, row, retry_before):
                    plan.waiting.append(
                        f"node {node}: epoch {row.epoch} failed {count} time(s); retrying later"
                    )
                    break
                leaf, proof = proofs.leaves[node]
                attempt = history.attempts(node, row.epoch)
                due.setdefault(row.epoch, []).append((SettleItem(leaf, proof), attempt))
                break
            if not proofs.complete:
                plan.rejected.append(
                    f"node {node}: epoch {row.epoch}: its published leaf does not verify "
                    f"against the attested root ({proofs.rejected.get(node, 'missing')})"
                )
                break
            # The epoch's verified leaves do not include the node: nothing to settle, ever.
        else:
            continue  # no work left for this node up to the newest attested epoch
        # The loop stopped at work for this node (due, waiting or rejected) at row.epoch.
        plan.epochs_behind = max(plan.epochs_behind, newest - row.epoch + 1)

    roots = {row.epoch: row.root for row in epochs}
    estimate = estimate or chain_estimator(chain, to_checksum_address(sender))
    for epoch, entries in sorted(due.items()):
        attempts = {item.leaf.node_id: attempt for item, attempt in entries}
        # Nodes that failed at this epoch before go alone: the others are not held up.
        fresh = [item for item, attempt in entries if attempt == 0]
        batches = pack(epoch, fresh, estimate, max_batch_gas) if fresh else []
        batches += [([item], None) for item, attempt in entries if attempt > 0]
        for items, reason in batches:
            node_ids = [item.leaf.node_id for item in items]
            if reason is not None:
                plan.rejected.append(f"node {node_ids[0]}: epoch {epoch}: {reason}")
            params = {
                "epoch": epoch,
                "node_ids": node_ids,
                "leaves": [item.leaf.to_json() for item in items],
                "proofs": [item.proof for item in items],
            }
            key = _key(epoch, roots[epoch], node_ids, max(attempts[n] for n in node_ids))
            # Planned from the chain: a row that says done for work the chain says is
            # due lost its transaction to a reorg; it goes again.
            action_id = plan_action(
                session,
                chain,
                identity,
                kind=ActionKind.SETTLE_EPOCH,
                idempotency_key=key,
                params=params,
                on_reopen=on_reopen,
            )
            if action_id is not None:
                plan.actions.append(action_id)
                if enqueue is not None:
                    enqueue(action_id)
    return plan
