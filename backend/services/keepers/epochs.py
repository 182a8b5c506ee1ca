"""Epoch settlement keeper: settle every billable node's attested epochs, a range at a time.

``EpochSettlement.settle(epoch, items)`` settles one epoch for many nodes; each item is a
node's attested leaf of that epoch and its Merkle proof. Settling a node's leaf of epoch E
settles the whole range (lastSettledEpoch, E] at once (the leaf carries cumulative counters
since registration; the cost does not depend on the range's length), and forecloses every
earlier epoch of that node for good. So the planner (a beat task) works like this, per run:

1. Billable nodes: those that ever got usage terms or a pool (the index's
   ``UsageTermsSet``/``PoolSet`` events) and still have one on-chain
   (``usageTerms``/``poolOf``). A node is settled from the first epoch that
   starts after it became billable: the payer agreed to no earlier usage.
2. First settlement (the node was never settled): the first attested epoch from there whose
   published leaf verifies against the attested root, due at once. The contract bills only
   that epoch's own hours, so it must be exactly that epoch: an epoch whose complete,
   verified file has no leaf for the node (the oracle excluded it) is passed over, and a
   missing, forged or incomplete file stops the node there (logged): passing over it would
   lose that epoch.
3. Later settlements, only when due by the cadence (``cadence.py``: enough unsettled
   epochs, the oldest waiting too long, or a drawn loan whose books should be fresh); a node
   not due is in the plan's ``deferred`` with the reason, and no file is read for it. When
   due, the node settles its NEWEST attested epoch whose verified file has a leaf for it:
   files are read from the newest epoch down, and the first that verifies with the node's
   leaf is the one; a newer file that is missing, forged or incomplete (logged) or that
   excludes the node only makes the range shorter (the rest settles next time), never
   stops the node, and no older file is read at all.
4. Terms changes: the contract bills each epoch under the terms in force for it (a change to
   the payer, price or consent takes effect from ``fromEpoch``, the epoch after it was made)
   and reverts a settlement whose range holds a change after usage
   (``SettlementTermsChangeInRange``; not when the oracles passed over every epoch between
   the last settled one and the change, at most ``MAX_TERMS_GAP_EPOCHS``: no usage lies
   there). So a node whose unsettled range reaches such a pending change (``termsChanges``:
   the entries not yet spent) is due at once, whatever the cadence, for the part before the
   change: its newest verified leaf before ``fromEpoch`` (a newer file missing only shortens
   the piece, as in 3). If no epoch before the change holds a leaf of the node and every
   file there is complete (no usage before it), the range ends at exactly the oldest
   verified leaf from the change on (no usage before that one either). The rest settles at
   the normal cadence. A batch of one that the simulation says would revert
   ``SettlementTermsChangeInRange`` (a change mined after this run read the chain) is not
   sent: the next run re-reads the changes and splits the range, so that revert never loops.
5. A node with an open settle action waits for it, so two settlements of one node are never
   in flight at once (the relayer may mine them in any order).
6. Nodes are grouped by that epoch (``settle`` takes one epoch per call, so nodes whose
   newest epochs differ go in different transactions) and packed (``settle_batches.py``):
   simulated against the chain from the relayer's address, with the gas that settles every
   item (an item short of gas is skipped, not reverted, so the node's estimate alone is not
   enough), and split in halves while a batch would revert or exceed ``max_batch_gas``; a
   node whose settlement reverts alone ends up alone (one bad payer cannot block the
   others), and its failed action row says why. A node with a failed
   row in its unsettled range goes alone from then on; if it failed alone it retries after
   ``retry_after_seconds`` (whatever epoch it is planned at then), otherwise at once.
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

from backend.db.models import (
    OPEN_STATUSES,
    Action,
    ActionKind,
    ActionStatus,
    ChainEvent,
    EpochRow,
    PoolRow,
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
from backend.services.keepers.cadence import Cadence
from backend.services.keepers.settle_batches import Estimate, SettleItem, chain_estimator, pack
from backend.services.relaying.finality import plan_action

log = logging.getLogger(__name__)

SETTLEMENT = "EpochSettlement"
HUB = "OracleHub"
BILLABLE_EVENTS = ("UsageTermsSet", "PoolSet")
ZERO_ADDRESS = "0x" + "0" * 40
KEY_PREFIX = "settle-epoch"


@dataclass
class EpochPlan:
    """What one planner run created (action ids), and why it did not do more."""

    actions: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # nothing wrong yet: a file, a retry
    rejected: list[str] = field(default_factory=list)  # forged/mismatched files, reverts
    # Node → what it settles in this run's batches and why it is due now (cadence.py).
    settling: dict[int, str] = field(default_factory=dict)
    # Node → why it is not due yet by the cadence (nothing wrong: it settles later).
    deferred: dict[int, str] = field(default_factory=dict)
    # Attested epochs from the oldest one where some node's due work is planned or stuck
    # (the epoch it settles at, or waits or was rejected at) through the newest indexed:
    # 1 is a keeper in step. Nodes deferred by the cadence do not count.
    epochs_behind: int = 0


def first_epoch_after(timestamp: int, genesis: int, length: int) -> int:
    """The first epoch starting at or after ``timestamp`` (epoch 1 starts at genesis)."""
    if timestamp <= genesis:
        return 1
    return -(-(timestamp - genesis) // length) + 1


def _splitting_change(
    changes: Sequence[int], last: int, attested: Sequence[int], max_gap: int
) -> int | None:
    """The first pending terms change (fromEpoch) the node's range up to its newest attested
    epoch must not cross, as the contract decides: one with an attested epoch between the
    last settled one and it, or more than ``max_gap`` epochs there (MAX_TERMS_GAP_EPOCHS).
    A change after epochs the oracles all passed over is crossed (no usage before it)."""
    newest = attested[-1]
    for change in changes:
        if change > newest:
            return None
        if change - (last + 1) > max_gap or any(last < e < change for e in attested):
            return change
    return None


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
    # node → (epoch, failure) of its failed rows. A node with a failure in its unsettled
    # range goes alone; one whose last such failure was alone waits before retrying.
    failures: dict[int, list[tuple[int, _Failure]]]

    @classmethod
    def load(cls, session: Session) -> _History:
        busy: set[int] = set()
        failures: dict[int, list[tuple[int, _Failure]]] = {}
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
                failures.setdefault(node, []).append((int(params["epoch"]), failure))
        return cls(busy, failures)

    def attempts(self, node: int, epoch: int) -> int:
        """Failed rows of the node at this epoch so far: the next row's attempt number."""
        return sum(1 for e, _ in self.failures.get(node, []) if e == epoch)

    def _counted(self, node: int, last: int, blocks: dict[int, int]) -> list[_Failure]:
        """The node's failures in its unsettled range against the attestations held now.
        A row mined before its epoch's attestation block failed on a chain without it (a
        reorg re-sent it before the oracles attested again; it reverts OracleInvalidProof):
        the settlement itself was never refused, so it does not count."""
        return [
            f
            for e, f in self.failures.get(node, [])
            if e > last and e in blocks and (f.block is None or f.block >= blocks[e])
        ]

    def failed_before(self, node: int, last: int, blocks: dict[int, int]) -> bool:
        return bool(self._counted(node, last, blocks))

    def held_back(self, node: int, last: int, blocks: dict[int, int], retry_before: Any) -> int:
        """How many times the node's settlement failed in its unsettled range, if the last
        of them failed alone after ``retry_before`` (else 0)."""
        counted = self._counted(node, last, blocks)
        lone = max((f.alone_at for f in counted if f.alone_at is not None), default=None)
        return len(counted) if lone is not None and lone > retry_before else 0


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
    cadence: Cadence | None = None,
    enqueue: Callable[[str], Any] | None = None,
    estimate: Estimate | None = None,
    on_reopen: Callable[[str], Any] | None = None,
) -> EpochPlan:
    """Create (and enqueue) the settle actions due now; see the module notes."""
    plan = EpochPlan()
    cadence = cadence or Cadence()
    since = billable_since(session)
    if not since:
        return plan
    identity = chain.identity()
    settlement, hub = chain.contract(SETTLEMENT), chain.contract(HUB)
    genesis, length, now = chain.call(
        "reading the epoch schedule",
        lambda: (
            int(hub.functions.genesisTimestamp().call()),
            int(hub.functions.epochLengthSeconds().call()),
            int(chain.w3.eth.get_block("latest")["timestamp"]),
        ),
    )
    max_gap = chain.call(
        "reading the settlement's terms-gap bound",
        lambda: int(settlement.functions.MAX_TERMS_GAP_EPOCHS().call()),
    )
    history = _History.load(session)
    retry_before = utcnow() - timedelta(seconds=retry_after_seconds)
    pools: dict[int, str] = {}  # node → its pool on-chain (zero address: none)
    starts: dict[int, tuple[int, int]] = {}  # node → (first epoch it may settle, last settled)
    changes: dict[int, list[int]] = {}  # node → fromEpoch of its pending terms changes
    for node, became_billable in sorted(since.items()):
        if node in history.busy:
            plan.waiting.append(f"node {node}: a settlement is in flight")
            continue
        terms, pool, last, log = chain.call(
            "reading the node's settlement state",
            lambda n=node: (
                settlement.functions.usageTerms(n).call(),
                settlement.functions.poolOf(n).call(),
                int(settlement.functions.lastSettledEpoch(n).call()),
                settlement.functions.termsChanges(n).call(),
            ),
        )
        if terms[0] == ZERO_ADDRESS and pool == ZERO_ADDRESS:
            continue  # usage terms withdrawn and no pool: nothing to bill
        pools[node] = pool
        # Entries after the head take effect later; one at or before last + 1 is spent.
        changes[node] = sorted(int(entry[3]) for entry in log[1:] if int(entry[3]) > last + 1)
        starts[node] = (max(last + 1, first_epoch_after(became_billable, genesis, length)), last)
    if not starts:
        return plan
    drawn = {
        int(node): address.lower()
        for node, address in session.execute(
            select(PoolRow.node_id, PoolRow.address).where(PoolRow.drawn)
        ).all()
    }
    epochs = session.scalars(
        select(EpochRow)
        .where(EpochRow.epoch >= min(start for start, _ in starts.values()))
        .order_by(EpochRow.epoch)
    ).all()
    blocks = {row.epoch: row.block_number for row in epochs}
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

    def unusable(node: int, row: EpochRow, proofs: EpochProofs | ProofsUnavailable) -> bool:
        """Note why the node cannot settle at ``row`` (file missing/forged, or its own leaf
        does not verify) and say so; False when the file is fine (leaf there or excluded)."""
        if isinstance(proofs, ProofsUnavailable):
            (plan.rejected if isinstance(proofs, ProofsMismatch) else plan.waiting).append(
                f"node {node}: {proofs}"
            )
            return True
        if node not in proofs.leaves and not proofs.complete:
            plan.rejected.append(
                f"node {node}: epoch {row.epoch}: its published leaf does not verify "
                f"against the attested root ({proofs.rejected.get(node, 'missing')})"
            )
            return True
        return False

    # epoch → (item, attempt, alone): alone if it failed in its unsettled range before.
    due: dict[int, list[tuple[SettleItem, int, bool]]] = {}
    newest = epochs[-1].epoch if epochs else 0
    for node, (start, last) in starts.items():
        pending = [row for row in epochs if row.epoch >= start]
        if not pending:
            continue
        target: EpochRow | None = None
        stuck: int | None = None  # the oldest epoch where the node's due work is stuck
        if last == 0:
            # First settlement: exactly the first billable epoch with a verified leaf.
            why = "first settlement"
            for row in pending:
                proofs = proofs_of(row)
                if unusable(node, row, proofs):
                    stuck = row.epoch
                    break
                if node in proofs.leaves:  # type: ignore[union-attr]
                    target = row
                    break
                # The epoch's verified leaves do not include the node: nothing to settle, ever.
        elif change := _splitting_change(
            changes.get(node, []), last, [row.epoch for row in pending], max_gap
        ):
            why = f"terms change from epoch {change}: settles the epochs before it first"
            for row in reversed([r for r in pending if r.epoch < change]):
                proofs = proofs_of(row)
                if unusable(node, row, proofs):
                    stuck = row.epoch
                    continue
                if node in proofs.leaves:  # type: ignore[union-attr]
                    target = row
                    break
            if target is None and stuck is None:
                # No leaf of the node before the change (no usage): the range may end at
                # exactly its oldest verified leaf from the change on (no usage before that
                # leaf's epoch: the contract bills it under that epoch's terms).
                why = f"terms change from epoch {change}: no usage before it"
                for row in [r for r in pending if r.epoch >= change]:
                    proofs = proofs_of(row)
                    if unusable(node, row, proofs):
                        stuck = row.epoch
                        break
                    if node in proofs.leaves:  # type: ignore[union-attr]
                        target = row
                        break
        else:
            ago = float(now - (genesis + pending[0].epoch * length))
            loan = pools.get(node, ZERO_ADDRESS).lower() == drawn.get(node)
            reason = cadence.due(unsettled=len(pending), oldest_ended_ago=ago, drawn=loan)
            if reason is None:
                plan.deferred[node] = cadence.not_yet(
                    unsettled=len(pending), oldest_ended_ago=ago, drawn=loan
                )
                continue
            why = reason
            # The newest verified leaf settles the whole range; older files are not read.
            for row in reversed(pending):
                proofs = proofs_of(row)
                if unusable(node, row, proofs):
                    stuck = row.epoch
                    continue
                if node in proofs.leaves:  # type: ignore[union-attr]
                    target = row
                    break
        if target is None:
            if stuck is not None:
                plan.epochs_behind = max(plan.epochs_behind, newest - stuck + 1)
            continue  # nothing (more) to settle up to the newest attested epoch
        if count := history.held_back(node, last, blocks, retry_before):
            plan.waiting.append(
                f"node {node}: epoch {target.epoch} failed {count} time(s); retrying later"
            )
            plan.epochs_behind = max(plan.epochs_behind, newest - target.epoch + 1)
            continue
        leaf, proof = files[target.epoch].leaves[node]  # type: ignore[union-attr]
        attempt = history.attempts(node, target.epoch)
        alone = history.failed_before(node, last, blocks)
        due.setdefault(target.epoch, []).append((SettleItem(leaf, proof), attempt, alone))
        plan.settling[node] = f"epochs {last + 1}..{target.epoch}: {why}"
        plan.epochs_behind = max(plan.epochs_behind, newest - target.epoch + 1)

    roots = {row.epoch: row.root for row in epochs}
    estimate = estimate or chain_estimator(chain, to_checksum_address(sender))
    for epoch, entries in sorted(due.items()):
        attempts = {item.leaf.node_id: attempt for item, attempt, _ in entries}
        # Nodes that failed in their range before go alone: the others are not held up.
        fresh = [item for item, _, alone in entries if not alone]
        batches = pack(epoch, fresh, estimate, max_batch_gas) if fresh else []
        batches += [([item], None) for item, _, alone in entries if alone]
        for items, reason in batches:
            node_ids = [item.leaf.node_id for item in items]
            if reason is not None:
                plan.rejected.append(f"node {node_ids[0]}: epoch {epoch}: {reason}")
                if reason.startswith("SettlementTermsChangeInRange"):
                    # A change this run did not see: the next run reads it and splits the
                    # range; a row would only fail.
                    continue
            params = {
                "epoch": epoch,
                "node_ids": node_ids,
                "leaves": [item.leaf.to_json() for item in items],
                "proofs": [item.proof for item in items],
                "sender": to_checksum_address(sender),  # who the gas is simulated from
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
