"""The pool loan as the API shows it: the indexed loan (``pool_loans``, ``pool_loan_events``)
plus what PoolLoans counts but does not emit, derived from the node's indexed settlements
the way the contract counts it (the cure and low-DSCR runs, arrears, recovery repaid).

Kept out of the pool router so that the router stays about HTTP, and the rules that mirror
PoolLoans (``_defaultDue``, ``_advanceLoan``) are in one place here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.app.schemas import (
    LoanDefaultPublic,
    LoanRunsPublic,
    PoolLoanEventPublic,
    PoolLoanPublic,
)
from backend.db.models import ChainEvent, NodeSettlementRow, PoolLoanEventRow, PoolLoanRow, PoolRow
from backend.services.indexing.loan_index import LOANS, STATES

BPS = 10_000
# PoolLoans' constructor terms (LoanParamsSet at its deployment overrides them): an index
# that has not seen that event yet still answers by the contract's own defaults.
DEFAULT_PARAMS = {
    "pledgeBps": 5_000,
    "defaultArrearsBps": 1_000,
    "defaultDscrBps": 10_000,
    "defaultDscrEpochs": 6,
    "cureEpochs": 3,
}


def loan_params(session: Session) -> dict[str, int]:
    """The loan terms in force at the newest indexed block (the last LoanParamsSet)."""
    ev = session.scalars(
        select(ChainEvent)
        .where(ChainEvent.contract == LOANS, ChainEvent.event == "LoanParamsSet")
        .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
    ).first()
    if ev is None:
        return dict(DEFAULT_PARAMS)
    return {name: int(ev.args[name]) for name in DEFAULT_PARAMS}


RUN_CAP = 2**16 - 1  # PoolLoans keeps each run in a uint16, saturating


def _runs(settlements: list[NodeSettlementRow], floor_bps: int) -> tuple[int, int]:
    """(clean run, low-DSCR run) at the newest settlement, counted like _advanceLoan: in
    epochs, each settlement adding the epochs of its range (skipped_from_epoch..epoch)."""
    clean = low = 0
    clean_open = low_open = True
    for row in settlements:  # newest first
        epochs = row.epoch - (row.skipped_from_epoch or row.epoch) + 1
        if clean_open:
            clean_open = not row.flagged
            clean += epochs if clean_open else 0
        if low_open:
            low_open = row.dscr_bps is not None and row.dscr_bps < floor_bps
            low += epochs if low_open else 0
        if not (clean_open or low_open):
            break
    return min(clean, RUN_CAP), min(low, RUN_CAP)


def loan_public(session: Session, pool: PoolRow) -> PoolLoanPublic | None:
    """The pool's loan; None until its raise is drawn (no loan exists before)."""
    if not pool.drawn:
        return None
    loan = session.get(PoolLoanRow, pool.node_id)
    if loan is not None and loan.pool not in (None, pool.address):
        loan = None  # the node's loan of an earlier pool: not this one's
    params = loan_params(session)
    since_draw = session.scalars(
        select(NodeSettlementRow)
        .where(
            NodeSettlementRow.node_id == pool.node_id,
            NodeSettlementRow.settled,
            NodeSettlementRow.epoch >= pool.draw_epoch,
        )
        .order_by(NodeSettlementRow.epoch.desc())
    ).all()
    arrears = (since_draw[0].arrears or 0) if since_draw else 0
    threshold = pool.drawn_assets * params["defaultArrearsBps"] // BPS
    state = loan.state if loan is not None else STATES[0]
    clean, low = _runs(since_draw, params["defaultDscrBps"])
    default = None
    runs = None
    if state == "defaulted" and loan is not None and loan.default_epoch is not None:
        recovered = session.scalar(
            select(func.coalesce(func.sum(NodeSettlementRow.debt_paid), 0)).where(
                NodeSettlementRow.node_id == pool.node_id,
                NodeSettlementRow.settled,
                NodeSettlementRow.epoch > loan.default_epoch,
            )
        )
        claim = loan.recovery_claim or 0
        default = LoanDefaultPublic(
            epoch=loan.default_epoch,
            principal_accelerated_micro_usd=loan.principal_accelerated or 0,
            arrears_micro_usd=loan.arrears_at_default or 0,
            bond_seized_micro_usd=loan.bond_seized or 0,
            stakers_loss_micro_usd=loan.stakers_loss or 0,
            reserve_cover_micro_usd=loan.reserve_cover or 0,
            holders_loss_micro_usd=loan.holders_loss or 0,
            recovery_claim_micro_usd=claim,
            recovered_micro_usd=int(recovered or 0),
            recovery_outstanding_micro_usd=max(claim - int(recovered or 0), 0),
            tx_hash=loan.default_tx or "",
        )
        arrears = 0  # the claim took them
    else:
        runs = LoanRunsPublic(
            clean_epochs=clean,
            cure_epochs=params["cureEpochs"],
            low_dscr_epochs=low,
            default_dscr_epochs=params["defaultDscrEpochs"],
            default_dscr_floor_bps=params["defaultDscrBps"],
        )
    return PoolLoanPublic(
        state=state,  # type: ignore[arg-type]
        since_epoch=loan.since_epoch if loan is not None else None,
        arrears_micro_usd=arrears,
        default_arrears_threshold_micro_usd=threshold,
        default_due=state != "defaulted"
        and (arrears > threshold or low >= params["defaultDscrEpochs"]),
        pledged_bond_micro_usd=loan.pledged if loan is not None else 0,
        pledge_released_micro_usd=loan.pledge_released if loan is not None else 0,
        runs=runs,
        default=default,
    )


def loan_history(
    session: Session, pool: PoolRow, *, limit: int, offset: int
) -> list[PoolLoanEventPublic]:
    """The loan events of the pool's node, oldest first (only once its loan is this pool's:
    a node's events before this pool's pledge belong to no loan of this pool if the pledge
    names another pool)."""
    loan = session.get(PoolLoanRow, pool.node_id)
    if loan is not None and loan.pool not in (None, pool.address):
        return []
    rows = session.scalars(
        select(PoolLoanEventRow)
        .where(PoolLoanEventRow.node_id == pool.node_id)
        .order_by(PoolLoanEventRow.block_number, PoolLoanEventRow.log_index)
        .limit(limit)
        .offset(offset)
    )
    return [_event_public(r) for r in rows]


def _event_public(r: PoolLoanEventRow) -> PoolLoanEventPublic:
    amounts: dict[str, Any] = r.amounts or {}
    return PoolLoanEventPublic(
        event=r.event,
        epoch=r.epoch,
        from_state=r.from_state,  # type: ignore[arg-type]
        to_state=r.to_state,  # type: ignore[arg-type]
        amounts_micro_usd={k: int(v) for k, v in amounts.items()},
        block_number=r.block_number,
        block_timestamp=r.block_timestamp,
        tx_hash=r.tx_hash,
    )
