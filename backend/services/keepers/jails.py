"""Jail keeper: relay ``ChallengeJail.jail`` for a node whose attested leaves show failed
work challenges in enough recent epochs.

``ChallengeJail.jail(leaves, proofs)`` is permissionless: anyone holding attested leaves of
one node, with a failed challenge in at least ``failingEpochsToJail`` epochs among the last
``windowEpochs`` attested epochs (after the last epoch already used to jail it), may jail
it. Without a caller a node that keeps failing keeps publishing offers and raising. So
after each settlement run the settlement keeper's beat task asks this module to plan.

- The evidence comes from the index's ``node_metrics``: the indexer's copy of the oracle's
  published leaves, each verified against its epoch's attested root (``leaves.py``), read
  only while that root is still the one the index holds (joined on epoch and root). One
  SQL query per run, no file read.
- Due per node (from the chain): its ``nodeStatus`` is Active and at least
  ``failingEpochsToJail`` of its failing leaves are in the window and after
  ``usedThroughEpoch``. The evidence sent is the newest ``failingEpochsToJail`` of them
  (the least gas; the contract records the newest epoch as used either way).
- One row per node and newest evidence epoch (``jail-node:<node>:<epoch>:<attempt>``). A
  row the contract refused because the node is no longer Active or the evidence is used
  (someone jailed first) counts as done; any other failure is retried as the next attempt
  after ``retry_after_seconds``. A mined row while the chain still says due lost its
  transaction to a reorg and is re-opened (``plan_action``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import (
    OPEN_STATUSES,
    Action,
    ActionKind,
    ActionStatus,
    EpochRow,
    NodeMetricRow,
    NodeRow,
    utcnow,
)
from backend.services.chain import Chain
from backend.services.relaying.finality import plan_action
from backend.services.relaying.relayer import TxRequest
from gpucap.attestation import NodeLeaf
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

JAIL = "ChallengeJail"
HUB = "OracleHub"
REGISTRY = "NodeRegistry"
KEY_PREFIX = "jail-node"
# The contract's refusals of evidence someone else already acted on: nothing left to do.
DONE_ERRORS = ("ChallengeJailNodeNotActive", "ChallengeJailEvidenceUsed")
NODE_ACTIVE = 1  # INodeRegistry.NodeStatus.Active


@dataclass
class JailPlan:
    """What one run created (action ids) and what it left, with reasons for the log."""

    actions: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # refused as a duplicate: nothing to do


def jail_request(chain: Chain, leaves: list[NodeLeaf], proofs: list[list[str]]) -> TxRequest:
    jail = chain.contract(JAIL)
    args = [
        [leaf.values() for leaf in leaves],
        [[bytes.fromhex(p[2:]) for p in proof] for proof in proofs],
    ]
    return TxRequest(to=jail.address, data=jail.encode_abi("jail", args=args))


def jail_node_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    """The action's transaction (REQUEST_BUILDERS): ``jail(leaves, proofs)``."""
    leaves = [NodeLeaf.from_json(leaf) for leaf in params["leaves"]]
    return jail_request(chain, leaves, [list(p) for p in params["proofs"]])


def _key(node_id: int, epoch: int, attempt: int) -> str:
    return f"{KEY_PREFIX}:{node_id}:{epoch}:{attempt}"


def _row_leaf(row: NodeMetricRow) -> NodeLeaf:
    return NodeLeaf(
        node_id=row.node_id,
        epoch=row.epoch,
        uptime_bps=row.uptime_bps,
        utilization_bps=row.utilization_bps,
        sample_coverage_bps=row.sample_coverage_bps,
        utilization_coverage_bps=row.utilization_coverage_bps,
        energy_coverage_bps=row.energy_coverage_bps,
        challenges_passed=row.challenges_passed,
        challenges_failed=row.challenges_failed,
        energy_joules=row.energy_joules,
        milli_gpu_hours=row.milli_gpu_hours,
        cum_milli_gpu_hours=row.cum_milli_gpu_hours or 0,
        cum_energy_joules=row.cum_energy_joules or 0,
        cum_busy_gpu_seconds=row.cum_busy_gpu_seconds or 0,
    )


def failing_leaves(session: Session, oldest_epoch: int) -> dict[int, list[NodeMetricRow]]:
    """Node id → its verified leaves with a failed challenge from ``oldest_epoch`` on, in
    epoch order, for nodes the index holds as active (v2 leaves only: a v1 row lacks the
    cumulative counters its hash needs)."""
    rows = session.scalars(
        select(NodeMetricRow)
        .join(
            EpochRow,
            (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root),
        )
        .join(NodeRow, NodeRow.node_id == NodeMetricRow.node_id)
        .where(
            NodeMetricRow.epoch >= oldest_epoch,
            NodeMetricRow.challenges_failed > 0,
            NodeMetricRow.cum_milli_gpu_hours.is_not(None),
            NodeRow.status == "active",
        )
        .order_by(NodeMetricRow.node_id, NodeMetricRow.epoch)
    ).all()
    by_node: dict[int, list[NodeMetricRow]] = {}
    for row in rows:
        by_node.setdefault(row.node_id, []).append(row)
    return by_node


def plan_jails(
    session: Session,
    chain: Chain,
    *,
    retry_after_seconds: float,
    enqueue: Callable[[str], Any] | None = None,
    on_reopen: Callable[[str], Any] | None = None,
) -> JailPlan:
    """Create (and enqueue) a ``jail_node`` action for every node whose verified leaves
    meet the jail rule the chain holds now; see the module notes."""
    plan = JailPlan()
    try:
        jail = chain.contract(JAIL)
    except ManifestError as exc:  # a deployment from before ChallengeJail
        plan.waiting.append(f"no challenge jails: {exc}")
        return plan
    hub, registry = chain.contract(HUB), chain.contract(REGISTRY)
    failing_needed, window = chain.call(
        "reading the jail rule", lambda: jail.functions.params().call()
    )
    last = int(
        chain.call("reading lastAttestedEpoch", lambda: hub.functions.lastAttestedEpoch().call())
    )
    oldest = last - window + 1 if last >= window else 1
    candidates = {
        node: rows
        for node, rows in failing_leaves(session, oldest).items()
        if len(rows) >= failing_needed
    }
    if not candidates:
        return plan
    identity = chain.identity()
    retry_before = utcnow() - timedelta(seconds=retry_after_seconds)
    for node_id, rows in candidates.items():
        used = int(
            chain.call(
                "reading usedThroughEpoch",
                lambda n=node_id: jail.functions.usedThroughEpoch(n).call(),
            )
        )
        fresh = [r for r in rows if r.epoch > used and r.epoch <= last]
        if len(fresh) < failing_needed:
            continue
        status = int(
            chain.call(
                "reading nodeStatus", lambda n=node_id: registry.functions.nodeStatus(n).call()
            )
        )
        if status != NODE_ACTIVE:
            continue
        evidence = fresh[-failing_needed:]
        newest = evidence[-1].epoch
        rows_sent = session.execute(
            select(Action.id, Action.status, Action.error_code, Action.updated_at)
            .where(
                Action.kind == ActionKind.JAIL_NODE.value,
                Action.idempotency_key.like(f"{KEY_PREFIX}:{node_id}:{newest}:%"),
            )
            .order_by(Action.created_at)
        ).all()
        if any(r.status in OPEN_STATUSES for r in rows_sent):
            plan.waiting.append(f"node {node_id}: a jail call is in flight")
            continue
        refused = [r for r in rows_sent if r.status == ActionStatus.FAILED.value]
        plan.done.extend(
            f"node {node_id}: {r.id} refused as a duplicate ({r.error_code})"
            for r in refused
            if r.error_code in DONE_ERRORS
        )
        if refused and refused[-1].updated_at > retry_before:
            plan.waiting.append(
                f"node {node_id}: jailing failed {len(refused)} time(s) "
                f"({refused[-1].error_code}); retrying later"
            )
            continue
        action_id = plan_action(
            session,
            chain,
            identity,
            kind=ActionKind.JAIL_NODE,
            idempotency_key=_key(node_id, newest, len(refused)),
            params={
                "node_id": node_id,
                "epochs": [r.epoch for r in evidence],
                "leaves": [_row_leaf(r).to_json() for r in evidence],
                "proofs": [list(r.proof) for r in evidence],
            },
            on_reopen=on_reopen,
        )
        if action_id is not None:
            log.info(
                "jail keeper: node %d failed challenges in epochs %s; jailing (action %s)",
                node_id,
                [r.epoch for r in evidence],
                action_id,
            )
            plan.actions.append(action_id)
            if enqueue is not None:
                enqueue(action_id)
    return plan
