"""Read API (``/api/v1/governance``): the admin changes the timelock announced.

Every power over users' money sits behind the GpucapTimelock (the README's table of
powers); this lists what it will change and from when, from the chain index only
(``backend/services/indexing/governance.py``). Whether a pending change is due is
decided by the newest indexed block's time, the clock the reads are consistent with.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from backend.app.deps import SessionDep
from backend.app.params import Limit, Offset
from backend.app.read_cache import CachedReadRoute
from backend.app.schemas import GovernanceChangePublic
from backend.db.models import GovernanceChangeRow
from backend.services.indexing import governance

router = APIRouter(tags=["governance"], route_class=CachedReadRoute)

StatusQuery = Annotated[
    Literal["pending", "ready", "executed", "cancelled"] | None,
    Query(description="pending | ready | executed | cancelled"),
]
OperationQuery = Annotated[
    str | None,
    Query(
        pattern="^0x[0-9a-fA-F]{64}$",
        description="one operation's calls (every call of a batch), by its 0x-hex id",
    ),
]


@router.get("/governance/changes")
def list_governance_changes(
    session: SessionDep,
    status: StatusQuery = None,
    operation_id: OperationQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[GovernanceChangePublic]:
    """Calls the timelock scheduled, by time of effect (soonest first; then in the order
    they were scheduled), each decoded (contract, function, arguments) where its target is
    a gpucap contract. `ready`: pending and due by the newest indexed block's time."""
    row = GovernanceChangeRow
    now = governance.chain_time(session)
    query = select(row).order_by(row.eta, row.block_number, row.log_index, row.call_index)
    if status == "pending":
        query = query.where(row.status == governance.PENDING, row.eta > now)
    elif status == "ready":
        query = query.where(row.status == governance.PENDING, row.eta <= now)
    elif status is not None:
        query = query.where(row.status == status)
    if operation_id is not None:
        query = query.where(row.operation_id == operation_id.lower())
    rows = session.scalars(query.limit(limit).offset(offset))
    return [_public(r, now) for r in rows]


def _public(r: GovernanceChangeRow, now: int) -> GovernanceChangePublic:
    return GovernanceChangePublic(
        operation_id=r.operation_id,
        call_index=r.call_index,
        status=governance.status_of(r, now),  # type: ignore[arg-type]
        target=r.target,
        contract=r.contract,
        function=r.function,
        args=r.args,
        value=str(r.value),
        data=r.data,
        predecessor=r.predecessor,
        salt=r.salt,
        delay_seconds=r.delay_seconds,
        scheduled_at=r.scheduled_at,
        eta=r.eta,
        scheduled_block=r.block_number,
        scheduled_tx=r.scheduled_tx,
        executed_at=r.executed_at,
        executed_tx=r.executed_tx,
        cancelled_at=r.cancelled_at,
        cancelled_tx=r.cancelled_tx,
    )
