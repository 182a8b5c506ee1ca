"""Default keeper: declare a pool loan in default once the chain says it is due.

``PoolLoans.declareDefault(nodeId)`` is permissionless once ``defaultDue(nodeId)`` holds
(arrears over the threshold, or DSCR under its floor for a run of settlements). Without a
caller nothing happens: the accelerated claim, the seized bond and the loss waterfall wait,
and the operator's share keeps flowing to the operator. So after each settlement run the
settlement keeper's beat task asks this module to plan, per node whose pool's raise was
drawn (from the index), one ``declare_default`` action when ``defaultDue`` is true.

- Planned from the chain (``defaultDue``), not from the rows: a row that says confirmed
  while the chain still says due lost its transaction to a reorg and is re-opened
  (``plan_action``); a loan already declared (by us or by anyone) is never due again.
- One row per node and pool (idempotency key ``declare-default:<pool>:<node>:<attempt>``).
  A row whose transaction the contract refused with ``LoanNoDefault`` is a duplicate
  (someone declared first, or the condition passed): it counts as done, never retried
  while the chain does not say due. A row that failed for any other reason is retried as
  the next attempt after ``retry_after_seconds``.
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
    PoolLoanRow,
    PoolRow,
    utcnow,
)
from backend.services.chain import Chain
from backend.services.indexing.loan_index import STATES
from backend.services.relaying.finality import plan_action
from backend.services.relaying.relayer import TxRequest
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

LOANS = "PoolLoans"
KEY_PREFIX = "declare-default"
# The contract's refusal of a declaration that is not (or no longer) due.
NOT_DUE_ERROR = "LoanNoDefault"
DEFAULTED = STATES[2]


@dataclass
class DefaultPlan:
    """What one run created (action ids) and what it left, with reasons for the log."""

    actions: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # refused as a duplicate: nothing to do


def declare_default_request(chain: Chain, node_id: int) -> TxRequest:
    loans = chain.contract(LOANS)
    return TxRequest(to=loans.address, data=loans.encode_abi("declareDefault", args=[node_id]))


def declare_default_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    """The action's transaction (REQUEST_BUILDERS): ``declareDefault(nodeId)``."""
    return declare_default_request(chain, int(params["node_id"]))


def _key(pool: str, node_id: int, attempt: int) -> str:
    return f"{KEY_PREFIX}:{pool.lower()}:{node_id}:{attempt}"


def plan_defaults(
    session: Session,
    chain: Chain,
    *,
    retry_after_seconds: float,
    enqueue: Callable[[str], Any] | None = None,
    on_reopen: Callable[[str], Any] | None = None,
) -> DefaultPlan:
    """Create (and enqueue) a ``declare_default`` action for every drawn loan the chain
    says is due; see the module notes."""
    plan = DefaultPlan()
    # A loan the index holds as defaulted is never due again (a reorg that undid the
    # default rebuilds the index first), so only the others cost a defaultDue call.
    defaulted = select(PoolLoanRow.node_id).where(PoolLoanRow.state == DEFAULTED)
    drawn = session.execute(
        select(PoolRow.node_id, PoolRow.address)
        .where(PoolRow.drawn, PoolRow.node_id.not_in(defaulted))
        .order_by(PoolRow.node_id)
    ).all()
    if not drawn:
        return plan
    try:
        loans = chain.contract(LOANS)
    except ManifestError as exc:  # a deployment from before PoolLoans: no loan to declare
        plan.waiting.append(f"no default declarations: {exc}")
        return plan
    identity = chain.identity()
    retry_before = utcnow() - timedelta(seconds=retry_after_seconds)
    for node_id, pool in drawn:
        due = chain.call(
            "reading defaultDue",
            lambda n=node_id: bool(loans.functions.defaultDue(n).call()),
        )
        rows = session.execute(
            select(Action.id, Action.status, Action.error_code, Action.updated_at)
            .where(
                Action.kind == ActionKind.DECLARE_DEFAULT.value,
                Action.idempotency_key.like(f"{KEY_PREFIX}:{pool.lower()}:{node_id}:%"),
            )
            .order_by(Action.created_at)
        ).all()
        refused = [r for r in rows if r.status == ActionStatus.FAILED.value]
        plan.done.extend(
            f"node {node_id}: {r.id} refused as a duplicate ({NOT_DUE_ERROR})"
            for r in refused
            if r.error_code == NOT_DUE_ERROR
        )
        if not due:
            continue
        if any(r.status in OPEN_STATUSES for r in rows):
            plan.waiting.append(f"node {node_id}: a declaration is in flight")
            continue
        failed = [r for r in refused if r.error_code != NOT_DUE_ERROR]
        if failed and failed[-1].updated_at > retry_before:
            plan.waiting.append(
                f"node {node_id}: declaring default failed {len(failed)} time(s) "
                f"({failed[-1].error_code}); retrying later"
            )
            continue
        # Attempt = rows that will not succeed; a mined (confirmed) row keeps its key, so
        # a reorg that took its transaction away re-opens that same row.
        action_id = plan_action(
            session,
            chain,
            identity,
            kind=ActionKind.DECLARE_DEFAULT,
            idempotency_key=_key(pool, node_id, len(refused)),
            params={"node_id": node_id, "pool": pool},
            on_reopen=on_reopen,
        )
        if action_id is not None:
            log.info("default keeper: node %d is due; declaring (action %s)", node_id, action_id)
            plan.actions.append(action_id)
            if enqueue is not None:
                enqueue(action_id)
    return plan
