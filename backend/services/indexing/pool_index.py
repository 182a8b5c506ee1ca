"""Read models of revenue pools and node settlements, folded from their events.

Pool events (contract "RevenuePool", one address per pool) update the pool's mirrored
accounting (``pool_book``); EpochSettlement's NodeSettled / CovenantStatus fill
``node_settlements`` and the per-epoch pool history. Every handler depends only on
earlier events of the same pool or node and on ``pool_terms`` (read once when the pool
was discovered), so the models are the same whichever order pools were discovered in:
a full replay (reorg) and the live path agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import (
    ChainEvent,
    NodeSettlementRow,
    PoolCohortRow,
    PoolEpochRow,
    PoolPositionRow,
    PoolRow,
    PoolTermsRow,
)
from backend.services.indexing import pool_book

log = logging.getLogger(__name__)

POOL = "RevenuePool"
SETTLEMENT = "EpochSettlement"
ZERO = "0x" + "0" * 40


# ------------------------------------------------------------------ rows


def pool_row(session: Session, address: str) -> PoolRow | None:
    """The pool's state row, created (zeroed) at its first event."""
    row = session.get(PoolRow, address)
    if row is not None:
        return row
    terms = session.get(PoolTermsRow, address)
    if terms is None:  # the indexer only fetches logs of pools it has terms for
        log.error("indexer: event of pool %s without terms; ignored", address)
        return None
    row = PoolRow(
        address=address,
        node_id=terms.node_id,
        raised=0,
        refunded=0,
        drawn=False,
        draw_epoch=0,
        drawn_assets=0,
        total_shares=0,
        staked_shares=0,
        total_units=0,
        earning_units=0,
        revenue_index=0,
        era=0,
        era_end_index={},
        era_release={},
        released_shares=0,
        revenue_in=0,
        revenue_paid=0,
        loss_assets=0,
        loss_shares=0,
        last_distributed_epoch=0,
    )
    session.add(row)
    session.flush()
    return row


def _cohort(session: Session, pool: str, activation: int) -> PoolCohortRow:
    row = session.get(PoolCohortRow, (pool, activation))
    if row is None:
        row = PoolCohortRow(
            pool=pool,
            activation_epoch=activation,
            units=0,
            index_at_fold=0,
            era=0,
            queued=False,
            folded=False,
        )
        session.add(row)
        session.flush()
    return row


def cohort_lookup(session: Session, pool: str) -> pool_book.CohortLookup:
    return lambda activation: session.get(PoolCohortRow, (pool, activation))


def _position(session: Session, pool: str, holder: str) -> PoolPositionRow:
    row = session.get(PoolPositionRow, (pool, holder))
    if row is None:
        row = PoolPositionRow(pool=pool, holder=holder, **dict.fromkeys(_ZEROED, 0))
        session.add(row)
        session.flush()
    return row


_ZEROED = (
    "shares",
    "units",
    "pending_units",
    "cooling_units",
    "revenue_index",
    "accrued_scaled",
    "principal_shares",
    "claimed",
    "era",
    "lost_shares",
    "activation_epoch",
    "unlock_epoch",
    "released_shares",
)


def _settled_position(session: Session, pool: PoolRow, account: str) -> PoolPositionRow:
    p = _position(session, pool.address, account)
    pool_book.settle(pool, cohort_lookup(session, pool.address), p)
    return p


def _pool_epoch(session: Session, pool: str, epoch: int) -> PoolEpochRow:
    row = session.get(PoolEpochRow, (pool, epoch))
    if row is None:
        row = PoolEpochRow(
            pool=pool,
            epoch=epoch,
            revenue_distributed=0,
            debt_paid=0,
            stakers_share=0,
            loss_assets=0,
            loss_shares=0,
        )
        session.add(row)
        session.flush()
    return row


def _check(what: str, pool: str, indexed: int, emitted: int) -> None:
    if indexed != emitted:  # only possible with an event missed: say so loudly
        log.error("indexer: pool %s %s: index has %d, event says %d", pool, what, indexed, emitted)


# ------------------------------------------------------------------ pool events


def _apply_pool_event(session: Session, ev: ChainEvent) -> None:
    assert ev.address is not None
    pool = pool_row(session, ev.address)
    if pool is None:
        return
    handler = _POOL_HANDLERS.get(ev.event)
    if handler is not None:
        handler(session, pool, ev)


def _transfer(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    sender, receiver, value = a["from"], a["to"], int(a["value"])
    if sender == ZERO:
        pool.total_shares += value
    if receiver == ZERO:
        pool.total_shares -= value
    # The pool's own balance is staked shares (pool.staked_shares), not a position.
    for holder, delta in ((sender, -value), (receiver, value)):
        if holder in (ZERO, pool.address):
            continue
        position = _position(session, pool.address, holder)
        if position.shares + delta < 0:
            log.error("indexer: negative share balance of %s in pool %s", holder, pool.address)
            continue
        position.shares += delta


def _deposited(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    pool.raised += int(ev.args["assets"])


def _refunded(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    pool.refunded += int(ev.args["assets"])


def _raise_drawn(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    pool.drawn = True
    pool.draw_epoch = int(ev.args["drawEpoch"])
    pool.drawn_assets = int(ev.args["assets"])


def _warmup_restarted(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    p = _settled_position(session, pool, ev.args["account"])
    units = int(ev.args["units"])
    _check("restarted warm-up units", pool.address, p.pending_units, units)
    old = _cohort(session, pool.address, p.activation_epoch)
    old.units -= units
    pool_book.add_to_cohort(pool, _cohort(session, pool.address, ev.args["activationEpoch"]), units)


def _staked(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    p = _settled_position(session, pool, a["account"])
    units, shares, activation = int(a["units"]), int(a["shares"]), int(a["activationEpoch"])
    pool_book.add_to_cohort(pool, _cohort(session, pool.address, activation), units)
    p.pending_units += units
    p.activation_epoch = activation
    p.principal_shares += shares
    pool.total_units += units
    pool.staked_shares += shares


def _unstake_requested(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    p = _settled_position(session, pool, a["account"])
    units = int(a["units"])
    from_pending = min(units, p.pending_units)
    if from_pending:
        _cohort(session, pool.address, p.activation_epoch).units -= from_pending
        p.pending_units -= from_pending
        if p.pending_units == 0:
            p.activation_epoch = 0
    from_earning = units - from_pending
    if from_earning:
        p.units -= from_earning
        pool.earning_units -= from_earning
    p.cooling_units += units
    p.unlock_epoch = int(a["unlockEpoch"])


def _unstaked(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    p = _settled_position(session, pool, a["account"])
    units, shares = int(a["units"]), int(a["shares"])
    _check("cooling units", pool.address, p.cooling_units, units)
    principal_part = pool_book.mul_div(p.principal_shares, units, p.units + p.pending_units + units)
    if principal_part > shares:
        p.lost_shares += principal_part - shares
    p.principal_shares -= principal_part
    p.cooling_units = 0
    p.unlock_epoch = 0
    pool.total_units -= units
    pool.staked_shares -= shares


def _revenue_claimed(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    p = _settled_position(session, pool, ev.args["account"])
    assets = int(ev.args["assets"])
    p.accrued_scaled -= assets * pool_book.SCALE
    p.claimed += assets
    pool.revenue_paid += assets


def _cohort_activated(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    cohort = _cohort(session, pool.address, ev.args["activationEpoch"])
    _check("cohort units", pool.address, cohort.units, int(ev.args["units"]))
    cohort.folded = True
    cohort.queued = False
    cohort.index_at_fold = pool.revenue_index
    pool.earning_units += cohort.units


def _revenue_distributed(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    _check("earning units", pool.address, pool.earning_units, int(a["earningUnits"]))
    pool.revenue_index = int(a["revenueIndex"])
    pool.revenue_in += int(a["assets"])
    pool.last_distributed_epoch = int(a["epoch"])
    _pool_epoch(session, pool.address, int(a["epoch"])).revenue_distributed += int(a["assets"])


def _stake_wiped_out(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    _check("new era", pool.address, pool.era + 1, int(ev.args["newEra"]))
    pool_book.end_era(pool, 0)


def _stake_released(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    """Emitted by bookLoss before its LossBooked: ``shares`` is what the loss left staked."""
    _check("new era", pool.address, pool.era + 1, int(ev.args["newEra"]))
    shares = int(ev.args["shares"])
    if not pool_book.ends_era(shares, pool.total_units):
        log.error(
            "indexer: pool %s released %d shares of %d units, within the unit bound",
            pool.address,
            shares,
            pool.total_units,
        )
    pool_book.end_era(pool, shares)


def _released_stake_withdrawn(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    p = _settled_position(session, pool, ev.args["account"])
    shares = int(ev.args["shares"])
    _check("released shares", pool.address, p.released_shares, shares)
    p.released_shares = 0
    pool.released_shares -= shares


def _loss_booked(session: Session, pool: PoolRow, ev: ChainEvent) -> None:
    a = ev.args
    assets, shares = int(a["assets"]), int(a["shares"])
    pool.staked_shares = int(a["stakedSharesAfter"])
    pool.loss_shares += shares
    pool.loss_assets += assets
    terms = session.get(PoolTermsRow, pool.address)
    assert terms is not None  # pool_row() found them
    epoch = pool_book.epoch_at(
        ev.block_timestamp, terms.genesis_timestamp, terms.epoch_length_seconds
    )
    row = _pool_epoch(session, pool.address, epoch)
    row.loss_assets += assets
    row.loss_shares += shares


_POOL_HANDLERS: dict[str, Callable[[Session, PoolRow, ChainEvent], None]] = {
    "Transfer": _transfer,
    "Deposited": _deposited,
    "Refunded": _refunded,
    "RaiseDrawn": _raise_drawn,
    "WarmupRestarted": _warmup_restarted,
    "Staked": _staked,
    "UnstakeRequested": _unstake_requested,
    "Unstaked": _unstaked,
    "RevenueClaimed": _revenue_claimed,
    "CohortActivated": _cohort_activated,
    "RevenueDistributed": _revenue_distributed,
    "StakeWipedOut": _stake_wiped_out,
    "StakeReleased": _stake_released,
    "ReleasedStakeWithdrawn": _released_stake_withdrawn,
    "LossBooked": _loss_booked,
}


# ------------------------------------------------------------------ settlement events


def _apply_pool_set(session: Session, ev: ChainEvent) -> None:
    pool_row(session, ev.args["pool"])  # listed from its binding on, even before any activity


def _settlement_row(
    session: Session, ev: ChainEvent, epoch: int | None = None
) -> NodeSettlementRow:
    key = (int(ev.args["nodeId"]), int(ev.args["epoch"]) if epoch is None else epoch)
    row = session.get(NodeSettlementRow, key)
    if row is None:
        row = NodeSettlementRow(
            node_id=key[0],
            epoch=key[1],
            usage=0,
            proceeds=0,
            fee=0,
            reserve=0,
            operator_share=0,
            debt_paid=0,
            stakers=0,
            covenant_event=False,
            flagged=False,
            dscr_breach=False,
            ltv_breach=False,
            settled=False,
            block_number=ev.block_number,
            block_timestamp=ev.block_timestamp,
            tx_hash=ev.tx_hash,
        )
        session.add(row)
        session.flush()
    return row


def _apply_covenant_status(session: Session, ev: ChainEvent) -> None:
    """Emitted in the settlement's transaction, just before its NodeSettled."""
    a = ev.args
    row = _settlement_row(session, ev)
    row.covenant_event = True
    row.flagged, row.dscr_breach, row.ltv_breach = a["flagged"], a["dscrBreach"], a["ltvBreach"]
    row.dscr_bps, row.ltv_bps = int(a["dscrBps"]), int(a["ltvBps"])


def _snapshot_int(snapshot: dict[str, Any] | None, name: str) -> int | None:
    if not snapshot or snapshot.get(name) is None:
        return None
    return int(snapshot[name])


def _apply_node_settled(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    row = _settlement_row(session, ev)
    row.usage, row.proceeds = int(a["usage"]), int(a["proceeds"])
    row.fee, row.reserve = int(a["fee"]), int(a["reserve"])
    row.operator_share, row.debt_paid = int(a["operatorShare"]), int(a["debtPaid"])
    row.stakers = int(a["stakers"])
    row.settled = True
    # A range: the settlement also covered fromEpoch..epoch-1 (never settled on their own),
    # and owed the service scheduled over the whole range.
    first, service = int(a["fromEpoch"]), int(a["serviceAssets"])
    covered = (first, row.epoch - 1, service) if first < row.epoch else (None, None, None)
    row.skipped_from_epoch, row.skipped_to_epoch, row.skipped_service = covered
    row.block_number, row.block_timestamp, row.tx_hash = (
        ev.block_number,
        ev.block_timestamp,
        ev.tx_hash,
    )
    snap = ev.snapshot
    row.collateral_value = _snapshot_int(snap, "collateralValue")
    row.debt_outstanding = _snapshot_int(snap, "debtOutstanding")
    row.arrears = _snapshot_int(snap, "arrears")
    row.window_net_revenue = _snapshot_int(snap, "windowNetRevenue")
    row.window_debt_service = _snapshot_int(snap, "windowDebtService")
    if not row.covenant_event:
        # No CovenantStatus: the contract found no breach now and none before (it emits
        # on any breach and on every change), so the flags are clear; the figures are
        # nodeRisk's, read at this block.
        row.flagged = row.dscr_breach = row.ltv_breach = False
        row.dscr_bps = _snapshot_int(snap, "dscrBps")
        row.ltv_bps = _snapshot_int(snap, "ltvBps")
    to_pool = row.debt_paid + row.stakers
    # The pool's history shows a range whose earlier epochs owed service (its raise drawn).
    owed_range = first < row.epoch and service > 0
    if to_pool or owed_range:
        pool = session.scalars(select(PoolRow).where(PoolRow.node_id == row.node_id)).first()
        if pool is None:
            log.error("indexer: node %d paid or owed its pool, but no pool is indexed", row.node_id)
            return
        epoch = _pool_epoch(session, pool.address, row.epoch)
        epoch.debt_paid += row.debt_paid
        epoch.stakers_share += row.stakers
        if owed_range:
            epoch.skipped_from_epoch, epoch.skipped_to_epoch, epoch.skipped_service = covered


HANDLERS: dict[tuple[str, str], Callable[[Session, ChainEvent], None]] = {
    **{(POOL, name): _apply_pool_event for name in _POOL_HANDLERS},
    (SETTLEMENT, "PoolSet"): _apply_pool_set,
    (SETTLEMENT, "CovenantStatus"): _apply_covenant_status,
    (SETTLEMENT, "NodeSettled"): _apply_node_settled,
}
