"""Read API (``/api/v1``): revenue pools, pool positions and history, node settlements.

From the chain index only (``backend/services/indexing/pool_index.py``); positions are brought up
to date with RevenuePool's own rules (``pool_book``) at request time, from the database.
Time-dependent answers (round state, the current epoch's debt service, the node's
collateral at book and marked to the market: backend/risk/collateral.py) use the newest
indexed block's time, the clock the reads are consistent with.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.app.deps import MarkRuleDep, SessionDep
from backend.app.errors import ApiError
from backend.app.loan_views import loan_history, loan_public
from backend.app.params import INT64_MAX, IdPath, IdQuery, Limit, Offset, address_param
from backend.app.read_cache import CachedReadRoute
from backend.app.schemas import (
    CollateralMarketPublic,
    CoolingPublic,
    ErrorPublic,
    ExcludedTradesPublic,
    MarkRulePublic,
    NodeSettlementPublic,
    PoolCollateralPublic,
    PoolDebtPublic,
    PoolEpochPublic,
    PoolLoanEventPublic,
    PoolPositionPublic,
    PoolPublic,
    PoolRiskPublic,
    PoolRoundPublic,
    SettlementSplitPublic,
    SkippedEpochsPublic,
)
from backend.db.models import (
    IndexedBlock,
    IndexerState,
    NodeRow,
    NodeSettlementRow,
    PoolEpochRow,
    PoolPositionRow,
    PoolRow,
    PoolTermsRow,
)
from backend.risk import formulas
from backend.risk.collateral import NodeCollateral, node_collateral, trailing_unknown_epochs
from backend.services.indexing import pool_book
from backend.services.indexing.pool_index import cohort_lookup
from backend.services.pricing.trades import MarkRule

router = APIRouter(tags=["pools"], route_class=CachedReadRoute)

INFINITE = 2**256 - 1  # RiskModel.INFINITE
ERRORS = {404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}}
AddressPath = Annotated[str, Path(description="0x address (any case; EIP-55 checked)")]


def _ratio(value: int | None) -> int | None:
    return None if value is None or value >= INFINITE else value


def _as_of(session: Session) -> tuple[int, int]:
    """(block, timestamp) of the newest indexed block; (0, 0) before the first run."""
    row = session.scalars(select(IndexedBlock).order_by(IndexedBlock.number.desc())).first()
    state = session.scalars(select(IndexerState).order_by(IndexerState.updated_at.desc())).first()
    block = state.next_block - 1 if state else 0
    return block, row.timestamp if row else 0


def _round_state(pool: PoolRow, terms: PoolTermsRow, now: int) -> str:
    """RevenuePool.roundStatus at ``now``, with the draw as a fourth state."""
    if pool.drawn:
        return "drawn"
    if pool.raised >= terms.target_assets:
        return "succeeded"
    return "failed" if now >= terms.funding_deadline else "open"


def _collateral_public(
    c: NodeCollateral | None, rule: MarkRule, outstanding: int, epochs: tuple[int, int]
) -> PoolCollateralPublic | None:
    if c is None:
        return None
    stats = c.price.stats
    return PoolCollateralPublic(
        book_value=c.mark.book,
        curve=c.curve,  # type: ignore[arg-type]
        market_value=c.mark.implied,
        marked_value=c.mark.marked,
        basis=c.mark.basis,
        ltv_bps_book=_ratio(formulas.ltv_bps(outstanding, c.mark.book)),
        ltv_bps_marked=_ratio(formulas.ltv_bps(outstanding, c.mark.marked)),
        remaining_life_seconds=c.remaining_life_seconds,
        utilization_bps=c.utilization_bps,
        utilization_attested=c.utilization_attested,
        utilization_epochs=epochs[0],
        utilization_unknown_epochs=epochs[1],
        capital_share_bps=c.capital_share_bps,
        market=CollateralMarketPublic(
            class_id=c.price.class_id,
            since=c.price.since,
            until=c.price.until,
            trades=stats.trades,
            gpu_hours=stats.gpu_hours,
            volume=stats.volume,
            price_per_gpu_hour=stats.vwap,
            excluded=ExcludedTradesPublic(
                trades=c.price.excluded.trades,
                gpu_hours=c.price.excluded.gpu_hours,
                volume=c.price.excluded.volume,
            ),
            enough=c.price.enough,
        ),
        rule=MarkRulePublic(
            lookback_seconds=rule.lookback_seconds,
            min_trades=rule.min_trades,
            min_volume=rule.min_volume,
            source=rule.source,
        ),
        as_of=c.as_of,
    )


def _pool_views(
    session: Session, rows: list[tuple[PoolRow, PoolTermsRow]], rule: MarkRule
) -> list[PoolPublic]:
    """The pools' answers, their nodes' collateral read together (one set of queries)."""
    _, now = _as_of(session)
    node_ids = [pool.node_id for pool, _ in rows]
    collateral = node_collateral(session, node_ids, rule, now)
    unknown = trailing_unknown_epochs(session, node_ids)
    return [
        _pool_public(
            session, pool, terms, rule, collateral.get(pool.node_id), unknown[pool.node_id]
        )
        for pool, terms in rows
    ]


def _pool_public(
    session: Session,
    pool: PoolRow,
    terms: PoolTermsRow,
    rule: MarkRule,
    collateral: NodeCollateral | None,
    utilization_epochs: tuple[int, int],
) -> PoolPublic:
    as_of_block, now = _as_of(session)
    epoch = pool_book.epoch_at(now, terms.genesis_timestamp, terms.epoch_length_seconds)
    drawn = pool.drawn_assets if pool.drawn else 0
    outstanding = formulas.debt_outstanding(drawn, terms.tenor_epochs, pool.draw_epoch, epoch)
    principal, interest = formulas.debt_service_due(
        drawn,
        terms.tenor_epochs,
        terms.rate_bps,
        terms.epoch_length_seconds,
        pool.draw_epoch,
        epoch,
    )
    last = session.scalars(
        select(NodeSettlementRow)
        .where(NodeSettlementRow.node_id == pool.node_id, NodeSettlementRow.settled)
        .order_by(NodeSettlementRow.epoch.desc())
    ).first()
    risk = None
    if last is not None:
        risk = PoolRiskPublic(
            collateral_value=last.collateral_value,
            ltv_bps=_ratio(last.ltv_bps),
            dscr_bps=_ratio(last.dscr_bps),
            flagged=last.flagged,
            dscr_breach=last.dscr_breach,
            ltv_breach=last.ltv_breach,
            last_settled_epoch=last.epoch,
        )
    return PoolPublic(
        address=pool.address,
        node_id=pool.node_id,
        operator=terms.operator,
        name=terms.name,
        symbol=terms.symbol,
        stablecoin=terms.stablecoin,
        genesis_timestamp=terms.genesis_timestamp,
        epoch_length_seconds=terms.epoch_length_seconds,
        cooldown_epochs=terms.cooldown_epochs,
        current_epoch=epoch,
        round=PoolRoundPublic(
            target=terms.target_assets,
            deadline=terms.funding_deadline,
            share_price=terms.share_price,
            raised=pool.raised,
            refunded=pool.refunded,
            state=_round_state(pool, terms, now),  # type: ignore[arg-type]
        ),
        debt=PoolDebtPublic(
            principal=drawn,
            rate_bps=terms.rate_bps,
            tenor_epochs=terms.tenor_epochs,
            draw_epoch=pool.draw_epoch if pool.drawn else None,
            service_per_epoch=principal + interest,
            outstanding=outstanding,
            arrears=(last.arrears or 0) if last is not None else 0,
        ),
        total_shares=str(pool.total_shares),
        total_staked=str(pool.staked_shares),
        revenue_distributed=pool.revenue_in,
        revenue_claimed=pool.revenue_paid,
        losses_booked=pool.loss_assets,
        loss_shares=str(pool.loss_shares),
        released_shares=str(pool.released_shares),
        last_distributed_epoch=pool.last_distributed_epoch,
        risk=risk,
        loan=loan_public(session, pool),
        collateral=_collateral_public(collateral, rule, outstanding, utilization_epochs),
        as_of_block=as_of_block,
    )


def position_public(
    session: Session, pool: PoolRow, position: PoolPositionRow
) -> PoolPositionPublic:
    view = pool_book.stake_view(pool, cohort_lookup(session, pool.address), position)
    staked = view.earning_shares + view.pending_shares
    return PoolPositionPublic(
        pool=pool.address,
        node_id=pool.node_id,
        holder=position.holder,
        shares=str(position.shares),
        staked=str(staked),
        staked_earning=str(view.earning_shares),
        staked_warming=str(view.pending_shares),
        activation_epoch=view.activation_epoch or None,
        cooling=CoolingPublic(
            amount=str(view.cooling_shares), unlock_epoch=view.unlock_epoch or None
        ),
        claimable=view.claimable_assets,
        claimed=view.claimed_assets,
        principal_shares=str(view.principal_shares),
        loss_taken=str(view.loss_shares),
        released=str(view.released_shares),
    )


def _pool_or_404(session: Session, address: str) -> tuple[PoolRow, PoolTermsRow]:
    checked = address_param(address, "address")
    pool, terms = session.get(PoolRow, checked), session.get(PoolTermsRow, checked)
    if pool is None or terms is None:
        raise ApiError(
            404, "PoolNotFound", f"no pool {checked} has been indexed (bound by PoolSet)"
        )
    return pool, terms


@router.get("/pools", responses={422: {"model": ErrorPublic}})
def list_pools(
    session: SessionDep,
    rule: MarkRuleDep,
    node_id: IdQuery = None,
    operator: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[PoolPublic]:
    """Pools bound to nodes (EpochSettlement.setPool), by node id."""
    query = (
        select(PoolRow, PoolTermsRow)
        .join(PoolTermsRow, PoolTermsRow.address == PoolRow.address)
        .order_by(PoolRow.node_id)
        .limit(limit)
        .offset(offset)
    )
    if node_id is not None:
        query = query.where(PoolRow.node_id == node_id)
    if operator is not None:
        query = query.where(PoolTermsRow.operator == address_param(operator, "operator"))
    return _pool_views(session, [(p, t) for p, t in session.execute(query).all()], rule)


@router.get("/pools/{address}", responses=ERRORS)
def read_pool(address: AddressPath, session: SessionDep, rule: MarkRuleDep) -> PoolPublic:
    """One revenue pool: its terms, round state and totals, its node's collateral at book
    and marked to the market; 404 if not indexed."""
    pool, terms = _pool_or_404(session, address)
    return _pool_views(session, [(pool, terms)], rule)[0]


@router.get("/pools/{address}/positions/{holder}", responses=ERRORS)
def read_position(
    address: AddressPath, holder: AddressPath, session: SessionDep
) -> PoolPositionPublic:
    """A holder's shares, stake, cooldown, claimable revenue and loss (zeros if none)."""
    pool, _ = _pool_or_404(session, address)
    who = address_param(holder, "holder")
    position = session.get(PoolPositionRow, (pool.address, who)) or PoolPositionRow(
        pool=pool.address,
        holder=who,
        shares=0,
        units=0,
        pending_units=0,
        cooling_units=0,
        revenue_index=0,
        accrued_scaled=0,
        principal_shares=0,
        claimed=0,
        era=pool.era,
        lost_shares=0,
        activation_epoch=0,
        unlock_epoch=0,
        released_shares=0,
    )
    return position_public(session, pool, position)


@router.get("/pools/{address}/history", responses=ERRORS)
def pool_history(
    address: AddressPath,
    session: SessionDep,
    from_epoch: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Limit = 100,
) -> list[PoolEpochPublic]:
    """Per epoch (ascending, from ``from_epoch``): revenue distributed, debt service
    paid, stakers' share, losses. Epochs where nothing happened are left out."""
    pool, _ = _pool_or_404(session, address)
    rows = session.scalars(
        select(PoolEpochRow)
        .where(PoolEpochRow.pool == pool.address, PoolEpochRow.epoch >= from_epoch)
        .order_by(PoolEpochRow.epoch)
        .limit(limit)
    )
    return [
        PoolEpochPublic(
            epoch=r.epoch,
            revenue_distributed=r.revenue_distributed,
            debt_paid=r.debt_paid,
            stakers_share=r.stakers_share,
            loss_assets=r.loss_assets,
            loss_shares=str(r.loss_shares),
            skipped=_skipped(r),
        )
        for r in rows
    ]


@router.get("/pools/{address}/loan/history", responses=ERRORS)
def pool_loan_history(
    address: AddressPath, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> list[PoolLoanEventPublic]:
    """The pool's loan events, oldest first (PoolLoans): each state transition (performing,
    cash_sweep, defaulted) with its epoch, the bond pledged and released, the default's
    claim and its loss waterfall (bond seized, stakers' loss, reserve cover, holders' loss),
    in micro-USD. The loan now is the pool's ``loan``."""
    pool, _ = _pool_or_404(session, address)
    return loan_history(session, pool, limit=limit, offset=offset)


@router.get("/nodes/{node_id}/settlements", responses={404: {"model": ErrorPublic}})
def node_settlements(
    node_id: IdPath, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> list[NodeSettlementPublic]:
    """The node's settled epochs, newest first: gross, split, covenant figures."""
    if session.get(NodeRow, node_id) is None:
        raise ApiError(404, "NodeNotFound", f"no node {node_id} has been indexed")
    rows = session.scalars(
        select(NodeSettlementRow)
        .where(NodeSettlementRow.node_id == node_id, NodeSettlementRow.settled)
        .order_by(NodeSettlementRow.epoch.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_settlement_public(r) for r in rows]


def _skipped(r: NodeSettlementRow | PoolEpochRow) -> SkippedEpochsPublic | None:
    if r.skipped_from_epoch is None or r.skipped_to_epoch is None:
        return None
    return SkippedEpochsPublic(
        from_epoch=r.skipped_from_epoch,
        to_epoch=r.skipped_to_epoch,
        service=r.skipped_service or 0,
    )


def _settlement_public(r: NodeSettlementRow) -> NodeSettlementPublic:
    gross = r.usage + r.proceeds
    return NodeSettlementPublic(
        node_id=r.node_id,
        epoch=r.epoch,
        gross=gross,
        usage=r.usage,
        proceeds=r.proceeds,
        net=gross - r.fee - r.reserve - r.operator_share,
        split=SettlementSplitPublic(
            fee=r.fee,
            reserve=r.reserve,
            operator=r.operator_share,
            debt_paid=r.debt_paid,
            stakers=r.stakers,
        ),
        dscr_bps=_ratio(r.dscr_bps),
        ltv_bps=_ratio(r.ltv_bps),
        flagged=r.flagged,
        dscr_breach=r.dscr_breach,
        ltv_breach=r.ltv_breach,
        collateral_value=r.collateral_value,
        arrears=r.arrears,
        skipped=_skipped(r),
        block_number=r.block_number,
        block_timestamp=r.block_timestamp,
        tx_hash=r.tx_hash,
    )
