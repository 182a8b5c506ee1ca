"""Delivery settlement after capacity windows: prove what nodes delivered, then settle.

For every reservation whose window has ended (the index says which), the
scheduler (a beat task) plans two kinds of relayed actions:

1. ``prove_delivery`` for a node and token id: the attested leaves of the
   window's epochs not yet proven on-chain (a run of four epochs or more: its first
   and last leaves, ``proveDeliveryRange``), with their Merkle proofs, taken from
   the oracle's published epoch files and checked against the attested root in
   the index before use (a stale or foreign file is refused, not relayed). A range
   reads only the files of its two ends, not every epoch between.
2. ``settle_reservation`` once every epoch of the window is proven, or the
   settlement grace period is over (the contract then settles on what was
   proven; an oracle that never published leaves cannot stall a refund).

Why the backend does it: the contract lets anyone prove and settle, but without
a keeper an operator's delivered hours would go unproven (and be slashed as a
shortfall after the grace period) and holders would wait for refunds. Both
actions are idempotent by key, run through the same write-ahead relayer as
every other action, and the contract refuses doubles anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import ActionKind, EpochRow, IndexedBlock, ReservationRow
from backend.services.chain import Chain
from backend.services.indexing.leaves import ProofsDirs, ProofsUnavailable, load_epoch_proofs
from backend.services.relaying.finality import plan_action
from backend.services.relaying.relayer import TxRequest
from gpucap.attestation import NodeLeaf

log = logging.getLogger(__name__)

CAPACITY = "CapacityToken"
# Bounded proof batches: epochs proven leaf by leaf go over several transactions.
MAX_EPOCHS_PER_PROOF = 24
# From this many epochs on, a run of unproven epochs is proven from its first and last
# leaves (proveDeliveryRange, leaf v2's cumulative counters): ~117k gas whatever the run's
# length, against 86k + 14.3k per extra epoch leaf by leaf (tests/contracts/
# test_capacity_token_gas.py, 2026-12-07): cheaper from four epochs on.
MIN_EPOCHS_PER_RANGE = 4


def proof_groups(
    unproven: list[int], provable: list[tuple[NodeLeaf, list[str]]]
) -> tuple[list[list[tuple[NodeLeaf, list[str]]]], list[list[tuple[NodeLeaf, list[str]]]]]:
    """Splits a window's provable leaves into ranges (first and last leaf of a run) and
    batches proven leaf by leaf.

    A run is a stretch of consecutive unproven epochs (an epoch proven already ends it:
    the contract would refuse a range over it); its range spans its first to its last
    provable leaf, and covers the epochs between without a leaf or whose file is not
    here (the cumulative counters count them all: nothing is lost, nothing doubled).
    A span shorter than MIN_EPOCHS_PER_RANGE goes leaf by leaf.
    """
    by_epoch = {leaf.epoch: (leaf, proof) for leaf, proof in provable}
    ranges, singles = [], []
    for run in runs_of(unproven):
        leaves = [by_epoch[e] for e in run if e in by_epoch]
        if leaves and leaves[-1][0].epoch - leaves[0][0].epoch + 1 >= MIN_EPOCHS_PER_RANGE:
            ranges.append([leaves[0], leaves[-1]])
        else:
            singles.extend(leaves)
    batches = [
        singles[i : i + MAX_EPOCHS_PER_PROOF] for i in range(0, len(singles), MAX_EPOCHS_PER_PROOF)
    ]
    return ranges, batches


@dataclass
class Plan:
    """What one scheduler run asked the relayer to do (action ids) and why not more."""

    proofs: list[str] = field(default_factory=list)
    settlements: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # human reasons, for the log


def load_leaf(proofs_dir: ProofsDirs, epoch: EpochRow, node_id: int) -> tuple[NodeLeaf, list[str]]:
    """A node's leaf and proof from the oracle's file for ``epoch``, its proof checked
    against the root the chain accepted (from the index)."""
    proofs = load_epoch_proofs(proofs_dir, epoch.epoch, epoch.root, epoch.node_count)
    if node_id in proofs.leaves:
        return proofs.leaves[node_id]
    why = "excluded" if proofs.complete else "its leaf was rejected"
    raise ProofsUnavailable(f"epoch {epoch.epoch}: node {node_id} has no leaf ({why})")


def runs_of(epochs: list[int]) -> list[list[int]]:
    """Stretches of consecutive epochs (each a candidate range)."""
    runs: list[list[int]] = []
    for epoch in sorted(epochs):
        if runs and epoch == runs[-1][-1] + 1:
            runs[-1].append(epoch)
        else:
            runs.append([epoch])
    return runs


def provable_leaves(
    run: list[int], leaf_of: Callable[[int], tuple[NodeLeaf, list[str]] | None]
) -> list[tuple[NodeLeaf, list[str]]]:
    """The leaves of ``run`` that ``proof_groups`` will use, reading as few epoch files as
    it can: a run long enough for a range needs only its first and last provable leaves
    (read from each end until one is found); the files between are read only if those
    two span fewer than MIN_EPOCHS_PER_RANGE epochs (it is then proven leaf by leaf)."""
    if len(run) < MIN_EPOCHS_PER_RANGE:
        return [leaf for e in run if (leaf := leaf_of(e)) is not None]
    first = next(((i, x) for i, e in enumerate(run) if (x := leaf_of(e)) is not None), None)
    if first is None:
        return []
    start, head = first
    last = next(
        ((i, x) for i in range(len(run) - 1, start, -1) if (x := leaf_of(run[i])) is not None),
        None,
    )
    if last is None:
        return [head]
    end, tail = last
    if tail[0].epoch - head[0].epoch + 1 >= MIN_EPOCHS_PER_RANGE:
        return [head, tail]
    between = [x for e in run[start + 1 : end] if (x := leaf_of(e)) is not None]
    return [head, *between, tail]


def _leaf_of(
    session: Session, proofs_dir: ProofsDirs, epoch_number: int, node_id: int, plan: Plan
) -> tuple[NodeLeaf, list[str]] | None:
    epoch = session.get(EpochRow, epoch_number)
    if epoch is None:
        plan.waiting.append(f"node {node_id}: epoch {epoch_number} not attested yet")
        return None
    try:
        return load_leaf(proofs_dir, epoch, node_id)
    except ProofsUnavailable as exc:
        plan.waiting.append(str(exc))
        return None


def plan_due(
    session: Session,
    chain: Chain,
    proofs_dir: ProofsDirs,
    *,
    enqueue: Any | None = None,
    on_reopen: Any | None = None,
) -> Plan:
    """Create the prove and settle actions that are due now; returns their ids.

    ``now`` is the newest indexed block's time: the same clock the contract will
    compare against, as far as the index has seen it.
    """
    plan = Plan()
    now = session.scalar(select(IndexedBlock.timestamp).order_by(IndexedBlock.number.desc()))
    if now is None:
        return plan
    identity = chain.identity()
    capacity = chain.contract(CAPACITY)
    window_seconds, grace = chain.call(
        "reading capacity windows",
        lambda: (
            int(capacity.functions.windowSeconds().call()),
            int(capacity.functions.settlementGraceSeconds().call()),
        ),
    )
    open_rows = session.scalars(
        select(ReservationRow)
        .where(ReservationRow.status == "reserved")
        .where(ReservationRow.window_start + window_seconds <= now)
        .order_by(ReservationRow.reservation_id)
    ).all()
    by_obligation: dict[tuple[int, str], list[ReservationRow]] = {}
    for row in open_rows:
        by_obligation.setdefault((row.node_id, row.token_id), []).append(row)

    for (node_id, token_id), rows in by_obligation.items():
        token = int(token_id)
        first, last = chain.call(
            "reading window epochs", lambda t=token: capacity.functions.windowEpochs(t).call()
        )
        epochs = list(range(int(first), int(last) + 1))
        unproven = [
            e
            for e in epochs
            if not chain.call(
                "reading proven epochs",
                lambda e=e, n=node_id: capacity.functions.isEpochProven(n, e).call(),
            )
        ]
        provable: list[tuple[NodeLeaf, list[str]]] = []
        for run in runs_of(unproven):
            provable.extend(
                provable_leaves(run, lambda e, n=node_id: _leaf_of(session, proofs_dir, e, n, plan))
            )
        ranges, batches = proof_groups(unproven, provable)
        covered: set[int] = set()
        for span in ranges:
            covered.update(range(span[0][0].epoch, span[-1][0].epoch + 1))
        for batch in batches:
            covered.update(leaf.epoch for leaf, _ in batch)
        for batch, is_range in [(r, True) for r in ranges] + [(b, False) for b in batches]:
            params = {
                "node_id": node_id,
                "token_id": token_id,
                "leaves": [leaf.to_json() for leaf, _ in batch],
                "proofs": [proof for _, proof in batch],
            }
            if is_range:
                params["range"] = True
                key = f"prove:{node_id}:{token_id}:{batch[0][0].epoch}-{batch[-1][0].epoch}"
            else:
                key = f"prove:{node_id}:{token_id}:" + ",".join(
                    str(leaf.epoch) for leaf, _ in batch
                )
            # Planned from the chain (isEpochProven): a row that says done for epochs
            # the chain says are unproven lost its transaction to a reorg.
            action_id = plan_action(
                session,
                chain,
                identity,
                kind=ActionKind.PROVE_DELIVERY,
                idempotency_key=key,
                params=params,
                on_reopen=on_reopen,
            )
            if action_id is not None:
                plan.proofs.append(action_id)
                if enqueue is not None:
                    enqueue(action_id)
        all_proven_after = set(unproven) <= covered
        window_end = int(rows[0].window_start) + window_seconds
        if covered or not (all_proven_after or now >= window_end + grace):
            # Prove first (the settlement would freeze delivery without them), or wait
            # for the missing epochs until the grace period ends.
            if not provable:
                plan.waiting.append(
                    f"node {node_id} token {token_id}: {len(unproven)} epoch(s) unproven; "
                    f"settling after the grace period ends at {window_end + grace}"
                )
            continue
        for row in rows:
            action_id = plan_action(
                session,
                chain,
                identity,
                kind=ActionKind.SETTLE_RESERVATION,
                idempotency_key=f"settle:{row.reservation_id}",
                params={"reservation_id": row.reservation_id},
                on_reopen=on_reopen,
            )
            if action_id is not None:
                plan.settlements.append(action_id)
                if enqueue is not None:
                    enqueue(action_id)
    return plan


def prove_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    capacity = chain.contract(CAPACITY)
    leaves = [NodeLeaf.from_json(leaf).values() for leaf in params["leaves"]]
    proofs = [[bytes.fromhex(p[2:]) for p in proof] for proof in params["proofs"]]
    node, token = params["node_id"], int(params["token_id"])
    if params.get("range"):  # first and last leaf of a run (proof_groups)
        (first, last), (first_proof, last_proof) = leaves, proofs
        args = [node, token, first, first_proof, last, last_proof]
        return TxRequest(to=capacity.address, data=capacity.encode_abi("proveDeliveryRange", args))
    return TxRequest(
        to=capacity.address,
        data=capacity.encode_abi("proveDelivery", args=[node, token, leaves, proofs]),
    )


def settle_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    capacity = chain.contract(CAPACITY)
    return TxRequest(
        to=capacity.address,
        data=capacity.encode_abi("settleReservation", args=[params["reservation_id"]]),
    )
