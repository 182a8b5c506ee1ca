"""Prices from trades (backend/services/pricing): VWAP, last and TWAP by hand, and the
index's series per class and window and per class over a lookback, on a real database
(primary sales, secondary fills, wash-flagged fills excluded and counted)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from math import floor

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import (
    ChainEvent,
    GpuClassRow,
    IndexedBlock,
    MarketFillRow,
    NodeRow,
    NodeSettlementRow,
    SaleRow,
)
from backend.risk import formulas as F
from backend.risk.collateral import node_collateral
from backend.risk.indexed import chain_terms, reserve_held
from backend.risk.marking import market_implied_value
from backend.services.pricing.stats import EMPTY, Trade, price_stats
from backend.services.pricing.trades import MarkRule, class_prices, price_points

USD = 10**6
H100, A100 = 1, 2
W1, W2 = 1_764_010_800, 1_764_014_400  # two delivery windows (hours)


def _t(block: int, log: int, ts: int, hours: int, paid: int, source: str = "primary") -> Trade:
    return Trade(block, log, ts, hours, paid, source)  # type: ignore[arg-type]


# -- the arithmetic ---------------------------------------------------------------


def test_no_trades_no_prices() -> None:
    assert price_stats([], 10) == EMPTY
    assert EMPTY.vwap is EMPTY.last is EMPTY.twap is None
    assert price_stats([_t(1, 0, 5, 0, 0)], 10) == EMPTY  # a zero-hour trade has no price


def test_vwap_last_and_twap_by_hand() -> None:
    """10 h for 20 USD at t=1000; then in one second (t=1600) 3 h for 7 USD and 2 h for
    5 USD; until t=2200. VWAP 32/15 USD; last 2.50; TWAP: 2.00 held 600 s, the 7-USD trade
    0 s (the next came in the same second), 2.50 for 600 s: 2.25 USD."""
    trades = [
        _t(7, 1, 1_600, 2, 5 * USD, "secondary"),  # given out of order: chain order counts
        _t(5, 0, 1_000, 10, 20 * USD),
        _t(7, 0, 1_600, 3, 7 * USD, "secondary"),
    ]
    s = price_stats(trades, 2_200)
    assert (s.trades, s.gpu_hours, s.volume) == (3, 15, 32 * USD)
    assert s.vwap == 32 * USD // 15 == 2_133_333
    assert (s.last, s.last_at, s.first_at) == (2_500_000, 1_600, 1_000)
    assert (s.twap, s.twap_until) == (2_250_000, 2_200)
    # Ending with the 7-USD trade: last is floor(7/3 USD).
    assert price_stats(trades[1:], 2_200).last == 2_333_333


def test_twap_floors_once_from_the_exact_ratio() -> None:
    """1 h for 1 unit at t=0, 3 h for 2 units at t=1, until t=3: (1 x 1 + 2/3 x 2) / 3 =
    7/9 of a unit: 0. Flooring each price first (1, 0) would give 1/3: also 0; with
    amounts scaled by 9 the exact TWAP is 7 while per-step floors give 6."""
    assert price_stats([_t(1, 0, 0, 1, 1), _t(2, 0, 1, 3, 2)], 3).twap == 0
    scaled = [_t(1, 0, 0, 1, 9), _t(2, 0, 1, 3, 20)]  # 9 held 1 s, 20/3 held 2 s
    assert price_stats(scaled, 3).twap == floor(Fraction(9 + Fraction(20, 3) * 2, 3)) == 7


def test_twap_with_no_time_elapsed_is_the_last_price() -> None:
    one = price_stats([_t(1, 0, 50, 4, 10)], 50)
    assert (one.twap, one.last, one.twap_until) == (2, 2, 50)
    # ``until`` before the newest trade cannot shorten the span below it.
    assert price_stats([_t(1, 0, 50, 4, 10)], 20).twap_until == 50


# -- from the index ---------------------------------------------------------------


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session


def _sale(block: int, ts: int, class_id: int, window: int, hours: int, cost: int) -> SaleRow:
    return SaleRow(
        block_number=block, log_index=0, offer_id=1, node_id=1, buyer="0x" + "b" * 40,
        token_id=str((class_id << 64) | window), class_id=class_id, window_start=window,
        amount=hours, cost=cost, block_timestamp=ts,
    )  # fmt: skip


def _fill(
    block: int, log: int, ts: int, token: int, hours: int, quote: int, flag: str | None = None
) -> MarketFillRow:
    class_id, window = (token >> 64, token & (2**64 - 1)) if token else (None, None)
    return MarketFillRow(
        block_number=block, log_index=log, tx_hash="0x" + "1" * 64, order_hash="0x" + "2" * 64,
        maker="0x" + "a" * 40, taker="0x" + "c" * 40, asset="0x" + "d" * 40,
        token_id=str(token), maker_sells=True, amount=hours, quote=quote, maker_fee=0,
        taker_fee=quote // 1000, filled_total=hours, block_timestamp=ts, wash_flag=flag,
        class_id=class_id, window_start=window,
    )  # fmt: skip


def _world(db: Session) -> None:
    """H100 window 1: two sales, two fills (one a wash trade), a pool-share fill; H100
    window 2: only fills, both wash-flagged; A100 window 1: one sale."""
    h1, h2 = (H100 << 64) | W1, (H100 << 64) | W2
    db.add_all(
        [
            _sale(10, 1_000, H100, W1, 10, 20 * USD),
            _sale(11, 1_300, H100, W1, 5, 11 * USD),
            _fill(12, 0, 1_600, h1, 3, 7 * USD),
            _fill(12, 1, 1_600, h1, 4, 4 * USD, "wash_trade"),
            _fill(13, 0, 1_700, 0, 10**18, 1_200_000),  # pool shares: no class
            _fill(14, 0, 1_800, h2, 1, 3 * USD, "wash_trade"),
            _fill(14, 1, 1_800, h2, 1, 3 * USD, "self_trade"),
            _sale(15, 1_900, A100, W1, 2, 2_200_000),
            IndexedBlock(number=16, hash="0x" + "9" * 64, timestamp=2_000),
        ]
    )
    db.commit()


def test_price_points_by_source_with_wash_trades_excluded(db: Session) -> None:
    _world(db)
    points = price_points(db, as_of=2_000)
    assert [(p.class_id, p.window_start) for p in points] == [(H100, W2), (H100, W1), (A100, W1)]
    wash_only, h1, a100 = points
    assert wash_only.primary == wash_only.secondary == wash_only.combined == EMPTY
    assert (wash_only.excluded.trades, wash_only.excluded.volume) == (2, 6 * USD)

    assert (h1.primary.trades, h1.primary.gpu_hours, h1.primary.volume) == (2, 15, 31 * USD)
    assert h1.primary.vwap == 31 * USD // 15 and h1.primary.last == 11 * USD // 5
    # 2.00 for 300 s, 2.20 for 700 s (to as_of: the window starts later).
    assert h1.primary.twap == (2 * USD * 300 + 2_200_000 * 700) // 1_000
    assert (h1.secondary.trades, h1.secondary.volume, h1.secondary.last) == (1, 7 * USD, 2_333_333)
    assert (h1.excluded.trades, h1.excluded.gpu_hours, h1.excluded.volume) == (1, 4, 4 * USD)
    c = h1.combined
    assert (c.trades, c.gpu_hours, c.volume, c.vwap) == (3, 18, 38 * USD, 38 * USD // 18)
    assert (c.last, c.first_at, c.twap_until) == (2_333_333, 1_000, 2_000)
    exact = Fraction(2 * USD * 300) + Fraction(11 * USD * 300, 5) + Fraction(7 * USD * 400, 3)
    assert c.twap == floor(exact / 1_000)
    assert a100.secondary == EMPTY and a100.combined.vwap == a100.primary.vwap == 1_100_000

    # Filters and the limit: by class, by window, newest window of the first class first.
    assert [p.class_id for p in price_points(db, as_of=2_000, class_id=A100)] == [A100]
    assert [p.class_id for p in price_points(db, as_of=2_000, window_start=W1)] == [H100, A100]
    assert [(p.class_id, p.window_start) for p in price_points(db, as_of=2_000, limit=1)] == [
        (H100, W2)
    ]
    # The TWAP stops at the window's start when the index is past it.
    late = price_points(db, as_of=W1 + 50, class_id=H100, window_start=W1)[0]
    assert late.combined.twap_until == W1


def test_class_prices_over_the_lookback_and_the_rule(db: Session) -> None:
    _world(db)
    rule = MarkRule(lookback_seconds=800, min_trades=2, min_volume=10 * USD)  # from t=1200
    h100 = class_prices(db, [H100, A100, 99], rule, as_of=2_000)
    p = h100[H100]
    # In [1200, 2000]: the 11-USD sale and the 7-USD fill (the wash and self trades out).
    assert (p.since, p.until, p.stats.trades, p.stats.volume) == (1_200, 2_000, 2, 18 * USD)
    assert p.stats.vwap == 18 * USD // 8 and p.enough
    assert (p.excluded.trades, p.excluded.volume) == (3, 10 * USD)
    assert not h100[A100].enough and h100[A100].stats.trades == 1  # one trade: too few
    assert h100[99].stats == EMPTY and not h100[99].enough
    only_fills = class_prices(db, [H100], MarkRule(800, 1, 7 * USD, "secondary"), 2_000)[H100]
    assert (only_fills.stats.vwap, only_fills.enough) == (7 * USD // 3, True)
    richer = class_prices(db, [H100], MarkRule(800, 2, 18 * USD + 1), 2_000)[H100]
    assert not richer.enough  # one base unit short of the volume
    wider = class_prices(db, [H100], MarkRule(1_000, 3, 0, "primary"), 2_000)[H100]
    assert (wider.stats.trades, wider.enough) == (2, False)


def test_node_collateral_on_the_chains_curve(db: Session) -> None:
    """Book value on the curve of the newest RiskParamsSet (declining balance here), the
    mark at the class's VWAP with the default utilization (nothing attested)."""
    _world(db)
    db.add_all(
        [
            GpuClassRow(
                class_id=H100, name="H100-SXM-80GB", reference_power_w=700,
                reference_throughput=989, economic_life_months=48, residual_value_bps=1_000,
            ),
            NodeRow(
                node_id=7, operator="0x" + "e" * 40, class_id=H100, gpu_count=8, region="eu",
                node_key="0x" + "f" * 40, acquisition_cost=240_000 * USD, acquired_at=0,
                status="active", bonded=0, locked=0, slashed=0, registered_block=1,
            ),
        ]
    )  # fmt: skip
    for block, curve in ((1, 0), (9, 1)):
        db.add(
            ChainEvent(
                block_number=block, log_index=0, block_hash="0x" + "0" * 64, block_timestamp=1,
                tx_hash="0x" + "0" * 64, contract="EpochSettlement", event="RiskParamsSet",
                args={"covenantDscrBps": 12_500, "maxLtvBps": 8_000, "curve": curve},
            )
        )  # fmt: skip
    db.commit()
    rule = MarkRule(lookback_seconds=800, min_trades=2, min_volume=10 * USD)
    c = node_collateral(db, [7, 8], rule, as_of=2_000)
    assert list(c) == [7]  # node 8 is not indexed
    node = c[7]
    assert node.curve == "declining_balance"
    assert node.mark.book == F.declining_balance_value(240_000 * USD, 1_000, 48, 0, 2_000)
    assert (node.utilization_bps, node.utilization_attested) == (7_000, False)
    implied = market_implied_value(
        acquisition_cost=240_000 * USD, residual_value_bps=1_000, economic_life_months=48,
        acquired_at=0, t=2_000, gpu_count=8, price_per_gpu_hour=18 * USD // 8,
        utilization_bps=7_000,
    )  # fmt: skip
    assert node.mark.implied == implied
    assert node.mark.marked == min(implied, node.mark.book)
    assert node.remaining_life_seconds == 48 * F.MONTH_SECONDS - 2_000
    # Not enough trades: no implied value, the book stands.
    strict = node_collateral(db, [7], MarkRule(800, 5, 0), as_of=2_000)[7]
    assert (strict.mark.implied, strict.mark.marked, strict.mark.basis) == (
        None,
        strict.mark.book,
        "book",
    )
    assert node.capital_share_bps == 6_200  # no SplitSet indexed: the deployment's
    # The split changed on the chain: the capital's share of gross follows the newest.
    for block, operator_bps in ((2, 3_000), (10, 4_000)):
        db.add(
            ChainEvent(
                block_number=block, log_index=0, block_hash="0x" + "0" * 64, block_timestamp=1,
                tx_hash="0x" + "0" * 64, contract="EpochSettlement", event="SplitSet",
                args={"protocolFeeBps": 500, "reserveBps": 300, "operatorBps": operator_bps},
            )
        )  # fmt: skip
    db.commit()
    split = node_collateral(db, [7], rule, as_of=2_000)[7]
    assert split.capital_share_bps == 5_200
    assert split.mark.implied == market_implied_value(
        acquisition_cost=240_000 * USD, residual_value_bps=1_000, economic_life_months=48,
        acquired_at=0, t=2_000, gpu_count=8, price_per_gpu_hour=18 * USD // 8,
        utilization_bps=7_000, capital_share_bps=5_200,
    ) < implied  # fmt: skip


def test_chain_terms_for_a_stress_run(db: Session) -> None:
    """A stress run's terms from the index: the newest SplitSet and LoanParamsSet, the
    hub's epoch from the pools, and reserveHeld = the settlements' reserve parts, less
    what was withdrawn and what defaults took."""
    assert chain_terms(db) == {}  # nothing indexed: the caller keeps the deployment's

    def event(block: int, contract: str, name: str, args: dict[str, int]) -> ChainEvent:
        return ChainEvent(
            block_number=block, log_index=0, block_hash="0x" + "0" * 64, block_timestamp=1,
            tx_hash="0x" + "0" * 64, contract=contract, event=name, args=args,
        )  # fmt: skip

    split = {"protocolFeeBps": 500, "reserveBps": 300}
    loan = {"pledgeBps": 4_000, "defaultArrearsBps": 800, "defaultDscrBps": 9_000}
    loan.update(defaultDscrEpochs=4, cureEpochs=2)
    loss = {"nodeId": 1, "bond": 9, "stakers": 9, "reserve": 50, "holders": 0}
    db.add_all(
        [
            event(1, "EpochSettlement", "SplitSet", {**split, "operatorBps": 3_000}),
            event(5, "EpochSettlement", "SplitSet", {**split, "operatorBps": 2_000}),
            event(2, "PoolLoans", "LoanParamsSet", loan),
            event(6, "EpochSettlement", "ReserveWithdrawn", {"to": 0, "amount": 100}),
            event(7, "PoolLoans", "LossWaterfall", loss),
            NodeSettlementRow(node_id=1, epoch=3, reserve=300, settled=True),
            NodeSettlementRow(node_id=2, epoch=4, reserve=500, settled=True),
        ]
    )  # fmt: skip
    db.commit()
    assert chain_terms(db) == {
        "protocol_fee_bps": 500,
        "reserve_bps": 300,
        "operator_bps": 2_000,  # the newest
        "pledge_bps": 4_000,
        "default_arrears_bps": 800,
        "default_dscr_bps": 9_000,
        "default_dscr_epochs": 4,
        "cure_epochs": 2,
        "reserve_held_micro_usd": 300 + 500 - 100 - 50,
    }
    assert reserve_held(db) == 650
