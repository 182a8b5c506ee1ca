"""Pool and settlement read models from hand-built events (no chain): the mirrored
RevenuePool accounting against figures worked out by hand, settlement rows from events
and snapshots, and a replay (what a reorg does) reproducing the live result."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.db.models import (
    ChainEvent,
    NodeSettlementRow,
    PoolEpochRow,
    PoolPositionRow,
    PoolRow,
    PoolTermsRow,
)
from backend.services.indexing import pool_book
from backend.services.indexing.pool_index import cohort_lookup
from backend.services.indexing.read_models import apply_event, rebuild_projections

USD = 10**6
SHARE = 10**18
POOL = "0x" + "aa" * 20
A = "0x" + "0a" * 20
B = "0x" + "0b" * 20
C = "0x" + "0d" * 20
X = "0x" + "0c" * 20  # loss recipient
ZERO = "0x" + "00" * 20
NODE = 7
GENESIS, EPOCH = 1_000, 100


class Events:
    """Applies events in chain order, one block each (block timestamps follow epochs)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.block = 10

    def emit(self, contract: str, event: str, at: int = 1, snapshot: Any = None, **args: Any):
        self.block += 1
        row = ChainEvent(
            block_number=self.block,
            log_index=0,
            block_hash="0x" + f"{self.block:064x}",
            block_timestamp=GENESIS + (at - 1) * EPOCH + 1,
            tx_hash="0x" + f"{self.block:064x}",
            contract=contract,
            event=event,
            args=args,
            address=POOL if contract == "RevenuePool" else "0x" + "55" * 20,
            snapshot=snapshot,
        )
        self.session.add(row)
        self.session.flush()
        apply_event(self.session, row)

    def pool(self, event: str, at: int = 1, **args: Any) -> None:
        """A RevenuePool event in a block of epoch ``at``."""
        self.emit("RevenuePool", event, at, **args)


@pytest.fixture
def session(sessions):
    with sessions.begin() as s:
        s.add(
            PoolTermsRow(
                address=POOL,
                node_id=NODE,
                name="gpucap node 7 share",
                symbol="gN7",
                stablecoin="0x" + "11" * 20,
                operator="0x" + "22" * 20,
                target_assets=200 * USD,
                share_price=USD,
                funding_deadline=GENESIS + 10 * EPOCH,
                tenor_epochs=12,
                rate_bps=1_200,
                genesis_timestamp=GENESIS,
                epoch_length_seconds=EPOCH,
                cooldown_epochs=1,
                pool_set_block=1,
            )
        )
        yield s


def _view(session, holder: str) -> pool_book.StakeView:
    pool = session.get(PoolRow, POOL)
    position = session.get(PoolPositionRow, (POOL, holder))
    return pool_book.stake_view(pool, cohort_lookup(session, POOL), position)


def _tables(session) -> dict[str, list[tuple]]:
    out = {}
    for model in (PoolRow, PoolPositionRow, PoolEpochRow, NodeSettlementRow):
        cols = [c.key for c in model.__table__.columns]
        out[model.__tablename__] = sorted(
            tuple(repr(getattr(r, c)) for c in cols) for r in session.scalars(select(model))
        )
    return out


def test_stake_warmup_revenue_loss_unstake_and_wipe_out(session) -> None:
    ev = Events(session)
    for who in (A, B):
        ev.pool("Transfer", **{"from": ZERO, "to": who, "value": 100 * SHARE})
        ev.pool("Deposited", caller=who, receiver=who, assets=100 * USD, shares=100 * SHARE)
    ev.pool("RaiseDrawn", operator="0x" + "22" * 20, assets=200 * USD, drawEpoch=1)
    ev.pool("Staked", account=A, shares=100 * SHARE, units=100 * SHARE, activationEpoch=2)
    ev.pool("Transfer", **{"from": A, "to": POOL, "value": 100 * SHARE})
    ev.pool("Staked", at=2, account=B, shares=50 * SHARE, units=50 * SHARE, activationEpoch=3)
    ev.pool("Transfer", at=2, **{"from": B, "to": POOL, "value": 50 * SHARE})
    # Epoch 2: only A's cohort earns. 300 USD over 100e18 units: index 3e24.
    ev.pool("CohortActivated", at=3, activationEpoch=2, units=100 * SHARE)
    ev.pool(
        "RevenueDistributed",
        at=3,
        assets=300 * USD,
        earningUnits=100 * SHARE,
        revenueIndex=3 * 10**24,
        epoch=2,
    )
    assert _view(session, A).claimable_assets == 300 * USD
    b = _view(session, B)
    assert (b.claimable_assets, b.pending_shares, b.earning_shares) == (0, 50 * SHARE, 0)
    # Epoch 3: both earn. 150 USD over 150e18 units: +1e24.
    ev.pool("CohortActivated", at=4, activationEpoch=3, units=50 * SHARE)
    ev.pool(
        "RevenueDistributed",
        at=4,
        assets=150 * USD,
        earningUnits=150 * SHARE,
        revenueIndex=4 * 10**24,
        epoch=3,
    )
    assert _view(session, A).claimable_assets == 400 * USD
    assert _view(session, B).claimable_assets == 50 * USD
    # A 10% loss: every staker keeps 90% of its stake.
    ev.pool("LossBooked", at=4, assets=15 * USD, shares=15 * SHARE, recipient=X,
            stakedSharesAfter=135 * SHARE)  # fmt: skip
    ev.pool("Transfer", at=4, **{"from": POOL, "to": X, "value": 15 * SHARE})
    a, b = _view(session, A), _view(session, B)
    assert (a.earning_shares, a.loss_shares) == (90 * SHARE, 10 * SHARE)
    assert (b.earning_shares, b.loss_shares) == (45 * SHARE, 5 * SHARE)
    # A claims, then leaves: 100e18 units (rounded up) for its 90 shares.
    ev.pool("RevenueClaimed", at=4, account=A, receiver=A, assets=400 * USD)
    ev.pool("UnstakeRequested", at=4, account=A, shares=90 * SHARE, units=100 * SHARE,
            unlockEpoch=6)  # fmt: skip
    a = _view(session, A)
    assert (a.claimable_assets, a.claimed_assets) == (0, 400 * USD)
    assert (a.earning_shares, a.cooling_shares, a.unlock_epoch) == (0, 90 * SHARE, 6)
    ev.pool("Unstaked", at=6, account=A, shares=90 * SHARE, units=100 * SHARE)
    ev.pool("Transfer", at=6, **{"from": POOL, "to": A, "value": 90 * SHARE})
    a = _view(session, A)
    assert (a.cooling_shares, a.principal_shares, a.loss_shares) == (0, 0, 10 * SHARE)
    assert session.get(PoolPositionRow, (POOL, A)).shares == 90 * SHARE
    # A loss takes every staked share: B's stake is gone, its earnings stay claimable.
    ev.pool("StakeWipedOut", at=7, newEra=1)
    ev.pool("LossBooked", at=7, assets=45 * USD, shares=45 * SHARE, recipient=X,
            stakedSharesAfter=0)  # fmt: skip
    b = _view(session, B)
    assert (b.earning_shares, b.claimable_assets, b.loss_shares) == (0, 50 * USD, 50 * SHARE)
    pool = session.get(PoolRow, POOL)
    assert (pool.total_shares, pool.staked_shares, pool.era) == (200 * SHARE, 0, 1)
    assert (pool.revenue_in, pool.revenue_paid, pool.loss_assets) == (
        450 * USD,
        400 * USD,
        60 * USD,
    )
    epochs = {r.epoch: r for r in session.scalars(select(PoolEpochRow))}
    assert (epochs[2].revenue_distributed, epochs[3].revenue_distributed) == (300 * USD, 150 * USD)
    assert (epochs[4].loss_assets, epochs[7].loss_assets) == (15 * USD, 45 * USD)

    # What a reorg does: drop the read models and replay the stored events.
    live = _tables(session)
    rebuild_projections(session)
    assert _tables(session) == live


def test_near_total_losses_release_the_stake_at_the_final_rate(session) -> None:
    """RevenuePool's release, worked by hand: a 99.9% loss stays within the unit bound
    (1e3 units a share); a second loss leaving 123 share-wei behind 2.01e20 units (more than
    1e9 a share) ends the era and releases those 123 wei to the era's positions at the final
    rate, each floored: earning, cooling and warming stake alike."""
    ev = Events(session)
    c_shares = SHARE // 1_000 + 123  # odd on purpose: the release must not be a share multiple
    for who, shares in ((A, 100 * SHARE), (B, 100 * SHARE), (C, c_shares)):
        ev.pool("Transfer", **{"from": ZERO, "to": who, "value": shares})
    for who in (A, B):
        ev.pool("Staked", account=who, shares=100 * SHARE, units=100 * SHARE, activationEpoch=2)
        ev.pool("Transfer", **{"from": who, "to": POOL, "value": 100 * SHARE})
    ev.pool("CohortActivated", at=3, activationEpoch=2, units=200 * SHARE)
    # 200 USD over 2e20 units: index 1e24, 100 USD each.
    ev.pool("RevenueDistributed", at=3, assets=200 * USD, earningUnits=200 * SHARE,
            revenueIndex=10**24, epoch=2)  # fmt: skip
    # A 99.9% loss: 0.2 share left behind 2e20 units (1e3 a share, within the bound).
    ev.pool("LossBooked", at=3, assets=199_800_000, shares=199_800 * SHARE // 1_000,
            recipient=X, stakedSharesAfter=SHARE // 5)  # fmt: skip
    assert (_view(session, A).earning_shares, _view(session, A).loss_shares) == (
        SHARE // 10,
        100 * SHARE - SHARE // 10,
    )
    # B puts half its units in cooldown: 0.05 share = 5e19 units (1e3 a share).
    ev.pool("UnstakeRequested", at=3, account=B, shares=SHARE // 20, units=50 * SHARE,
            unlockEpoch=5)  # fmt: skip
    # C stakes at the current rate: (1e15 + 123) x 1e3 units, warming until epoch 4.
    c_units = c_shares * 1_000
    ev.pool("Staked", at=3, account=C, shares=c_shares, units=c_units, activationEpoch=4)
    ev.pool("Transfer", at=3, **{"from": C, "to": POOL, "value": c_shares})
    # 150 USD over the 1.5e20 earning units (A's 1e20, B's 5e19): +1e24.
    ev.pool("RevenueDistributed", at=4, assets=150 * USD, earningUnits=150 * SHARE,
            revenueIndex=2 * 10**24, epoch=3)  # fmt: skip
    # The second loss leaves 123 wei behind 2e20 + c_units units: the stake is released.
    total_units = 200 * SHARE + c_units
    assert pool_book.ends_era(123, total_units) and not pool_book.ends_era(SHARE // 5, total_units)
    ev.pool("StakeReleased", at=4, newEra=1, shares=123)
    ev.pool("LossBooked", at=4, assets=201_000, shares=201_000 * 10**12, recipient=X,
            stakedSharesAfter=0)  # fmt: skip
    # Each position: floor(its units x 123 / total_units). A: 1e20 units -> 61 wei; B: 5e19
    # earning + 5e19 cooling -> 61 wei; C: 1e18 + 123000 warming units -> 0 (0.61 wei).
    assert 10**20 * 123 // total_units == 61 and c_units * 123 // total_units == 0
    a, b, c = _view(session, A), _view(session, B), _view(session, C)
    assert (a.released_shares, a.loss_shares, a.principal_shares) == (61, 100 * SHARE - 61, 0)
    assert (b.released_shares, b.loss_shares, b.cooling_shares) == (61, 100 * SHARE - 61, 0)
    assert (c.released_shares, c.loss_shares, c.pending_shares) == (0, c_shares, 0)
    # Earnings up to the era's end stay claimable: A 100 + 100, B 100 + 50, C nothing.
    assert (a.claimable_assets, b.claimable_assets, c.claimable_assets) == (
        200 * USD,
        150 * USD,
        0,
    )
    pool = session.get(PoolRow, POOL)
    assert (pool.era, pool.staked_shares, pool.total_units, pool.earning_units) == (1, 0, 0, 0)
    assert pool.released_shares == 123  # 61 + 61 owed, 1 wei of dust owned by nobody
    assert pool.era_release == {"0": ["123", str(total_units)]}
    # A stakes again: a fresh era at one unit a share; its release is credited on the way.
    ev.pool("Staked", at=4, account=A, shares=10 * SHARE, units=10 * SHARE, activationEpoch=5)
    ev.pool("Transfer", at=4, **{"from": A, "to": POOL, "value": 10 * SHARE})
    assert session.get(PoolPositionRow, (POOL, A)).released_shares == 61
    a = _view(session, A)
    assert (a.pending_shares, a.principal_shares, a.released_shares, a.loss_shares) == (
        10 * SHARE,
        10 * SHARE,
        61,
        100 * SHARE - 61,
    )
    # B withdraws its release at once (its cooldown does not matter any more).
    ev.pool("ReleasedStakeWithdrawn", at=4, account=B, shares=61)
    ev.pool("Transfer", at=4, **{"from": POOL, "to": B, "value": 61})
    b = _view(session, B)
    assert (b.released_shares, b.loss_shares) == (0, 100 * SHARE - 61)
    assert session.get(PoolPositionRow, (POOL, B)).shares == 61
    pool = session.get(PoolRow, POOL)
    assert (pool.released_shares, pool.staked_shares) == (62, 10 * SHARE)
    live = _tables(session)
    rebuild_projections(session)
    assert _tables(session) == live


def _settled(ev: Events, epoch: int, snapshot: dict[str, int] | None, **split: int) -> None:
    names = ("usage", "proceeds", "fee", "reserve", "operatorShare", "debtPaid", "stakers")
    args = {"fromEpoch": epoch, "serviceAssets": 0, **dict.fromkeys(names, 0), **split}
    ev.emit("EpochSettlement", "NodeSettled", epoch + 1, snapshot, nodeId=NODE, epoch=epoch, **args)


def test_settlements_take_covenant_figures_from_events_and_the_rest_from_snapshots(
    session,
) -> None:
    ev = Events(session)
    ev.emit("EpochSettlement", "PoolSet", nodeId=NODE, pool=POOL)
    snapshot = {"collateralValue": 900 * USD, "dscrBps": 11_000, "ltvBps": 2_000, "arrears": 5}
    _settled(ev, 2, snapshot, usage=1_000, fee=50, reserve=30, operatorShare=300, debtPaid=620)
    ev.emit("EpochSettlement", "CovenantStatus", 4, nodeId=NODE, epoch=3, flagged=True,
            dscrBreach=True, ltvBreach=False, dscrBps=9_000, ltvBps=2_100)  # fmt: skip
    _settled(ev, 3, snapshot, usage=2_000, fee=100, reserve=60, operatorShare=600,
             debtPaid=700, stakers=540)  # fmt: skip
    _settled(ev, 4, None, usage=10)  # the snapshot could not be read: figures unknown
    # Epochs 5..7 settled as one range at 7, owing 75 of service over the range.
    _settled(ev, 7, snapshot, usage=500, fee=25, reserve=15, operatorShare=150, debtPaid=310,
             fromEpoch=5, serviceAssets=75)  # fmt: skip
    rows = {r.epoch: r for r in session.scalars(select(NodeSettlementRow))}
    two, three, four = rows[2], rows[3], rows[4]
    assert (two.flagged, two.dscr_bps, two.ltv_bps, two.collateral_value) == (
        False,
        11_000,
        2_000,
        900 * USD,
    )
    assert (three.flagged, three.dscr_breach, three.dscr_bps, three.ltv_bps) == (
        True,
        True,
        9_000,
        2_100,
    )
    assert (three.arrears, three.collateral_value) == (5, 900 * USD)
    assert (four.dscr_bps, four.collateral_value, four.settled) == (None, None, True)
    assert (four.skipped_from_epoch, four.skipped_service) == (None, None)
    seven = rows[7]
    assert (seven.skipped_from_epoch, seven.skipped_to_epoch, seven.skipped_service) == (5, 6, 75)
    assert (seven.settled, seven.debt_paid) == (True, 310)
    epochs = {r.epoch: r for r in session.scalars(select(PoolEpochRow))}
    assert (epochs[2].debt_paid, epochs[2].stakers_share) == (620, 0)
    assert (epochs[3].debt_paid, epochs[3].stakers_share) == (700, 540)
    assert 4 not in epochs  # nothing reached the pool
    assert (epochs[7].debt_paid, epochs[7].skipped_from_epoch, epochs[7].skipped_to_epoch) == (
        310,
        5,
        6,
    )
    assert epochs[7].skipped_service == 75 and epochs[3].skipped_from_epoch is None
    live = _tables(session)
    rebuild_projections(session)
    assert _tables(session) == live


def test_mul_div_and_epochs_follow_the_contract() -> None:
    assert pool_book.mul_div(7, 3, 2) == 10 and pool_book.mul_div(7, 3, 2, round_up=True) == 11
    assert pool_book.epoch_at(GENESIS - 1, GENESIS, EPOCH) == 0
    assert pool_book.epoch_at(GENESIS, GENESIS, EPOCH) == 1
    assert pool_book.epoch_at(GENESIS + EPOCH, GENESIS, EPOCH) == 2
