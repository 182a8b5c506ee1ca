"""Collateral marked to the market (backend/risk/marking.py): the formula by hand, the lower
of book and market, and what a stress run does with it."""

from __future__ import annotations

import dataclasses

import pytest

from backend.risk import formulas as F
from backend.risk.engine import Params, project
from backend.risk.fleet import Debt, Fleet, FleetError
from backend.risk.marking import CAPITAL_SHARE_BPS, mark, market_implied_value
from backend.risk.scenarios import NAMED, ScenarioError
from tests.risk.test_engine import MONTH, T0, USD, node

# An 8 x H100 node bought for 240,000 USD at T0: 48-month life, 10% residual.
H100_NODE = dict(
    acquisition_cost=240_000 * USD,
    residual_value_bps=1_000,
    economic_life_months=48,
    acquired_at=T0,
    gpu_count=8,
)


def test_capital_share_is_the_deployed_split_net() -> None:
    assert CAPITAL_SHARE_BPS == 10_000 - 500 - 300 - 3_000 == 6_200


def test_implied_value_by_hand() -> None:
    """A year in: 36 months left = 93,312,000 s; 8 GPUs x 25,920 h x 70% = 145,152 GPU-hours
    sellable; at 1.50 USD the capital's 62% of them is 134,991.36 USD; plus the 24,000 USD
    residual. The book says 186,000 USD (240k - 216k x 12/48): the market is lower."""
    t = T0 + 12 * MONTH
    implied = market_implied_value(
        **H100_NODE, t=t, price_per_gpu_hour=1_500_000, utilization_bps=7_000
    )
    assert F.milli_gpu_hours(8, 36 * MONTH, 7_000) == 145_152_000
    assert implied == 24_000 * USD + 134_991_360_000 == 158_991_360_000
    book = F.depreciated_value(240_000 * USD, 1_000, 48, T0, t)
    assert book == 186_000 * USD
    m = mark(book, implied)
    assert (m.marked, m.basis, m.book, m.implied) == (implied, "market", book, implied)
    # At 2.00 USD the hours are worth more than the book: the book value stands.
    dearer = market_implied_value(
        **H100_NODE, t=t, price_per_gpu_hour=2 * USD, utilization_bps=7_000
    )
    assert dearer == 24_000 * USD + 179_988_480_000
    assert (mark(book, dearer).marked, mark(book, dearer).basis) == (book, "book")


def test_implied_value_floors_once_per_division() -> None:
    """One GPU, 1 second left, 1 bps busy: 1 x 1 x 1000 x 1 // 36,000,000 = 0 milli-hours;
    3,600 s at 100% = 1,000 milli-hours, at 1 base unit: 1 x 6,200 // 10,000 = 0."""
    one = dict(acquisition_cost=7, residual_value_bps=1_429, economic_life_months=1, gpu_count=1)
    end = T0 + MONTH
    assert (
        market_implied_value(
            **one, acquired_at=T0, t=end - 1, price_per_gpu_hour=10**9, utilization_bps=1
        )
        == 7 * 1_429 // 10_000
    )  # only the residual (floored: 1)
    assert (
        market_implied_value(
            **one, acquired_at=T0, t=end - 3_600, price_per_gpu_hour=1, utilization_bps=10_000
        )
        == 1 + 0
    )
    assert (
        market_implied_value(
            **one, acquired_at=T0, t=end - 3_600, price_per_gpu_hour=2, utilization_bps=10_000
        )
        == 1 + 2 * 6_200 // 10_000
    )


def test_implied_value_declines_to_the_residual_and_stays() -> None:
    values = [
        market_implied_value(
            **H100_NODE, t=T0 + m * MONTH, price_per_gpu_hour=USD, utilization_bps=7_000
        )
        for m in range(0, 60, 6)
    ]
    assert values == sorted(values, reverse=True)
    residual = 24_000 * USD
    assert values[-3] > residual and values[-2:] == [residual] * 2  # 48, 54: life is over
    # Linear, like the straight-line book: equal steps while hours remain.
    steps = {a - b for a, b in zip(values[:8], values[1:9], strict=False)}
    assert len(steps) == 1


def test_no_market_price_or_a_tie_keeps_the_book() -> None:
    assert (mark(100, None).marked, mark(100, None).basis) == (100, "book")
    assert (mark(100, 100).marked, mark(100, 100).basis) == (100, "book")
    assert (mark(100, 99).marked, mark(100, 99).basis) == (99, "market")


def test_stress_with_marked_collateral_breaches_ltv_sooner_as_prices_fall() -> None:
    """A pool at 70% of cost against a node marked to a 1.50 USD market: prices falling
    40% a year take the implied value (and the LTV) with them; the book does not move
    with prices. Nodes without a market price are not marked."""
    debt = Debt(168_000 * USD, 48, 1_000, 0, 5_000)
    marked = node(1, debt=debt, mark_price_per_gpu_hour=1_500_000, utilization_bps=7_000)
    unmarked = node(2, debt=debt, utilization_bps=7_000)
    fleet = Fleet.from_nodes([marked, unmarked])
    book = Params(start_time=T0, horizon_months=36)
    at_market = dataclasses.replace(book, collateral="marked")
    for name in ("base", "deflation_40"):
        b = project(fleet, NAMED[name], book)
        m = project(fleet, NAMED[name], at_market)
        assert (m.value[0] <= b.value[0]).all() and (m.value[0] < b.value[0]).any()
        assert m.value[1].tolist() == b.value[1].tolist()
        assert (m.ltv[0] >= b.ltv[0]).all()
    # The implied value of month 1, by hand: prices there are the index's month-1 level.
    base = project(fleet, NAMED["base"], at_market)
    t1 = T0 + MONTH
    expected = market_implied_value(
        **H100_NODE,
        t=t1,
        price_per_gpu_hour=1_500_000,
        utilization_bps=int(base.utilization[0, 0]),
        capital_share_bps=CAPITAL_SHARE_BPS,
    )
    book_t1 = F.depreciated_value(240_000 * USD, 1_000, 48, T0, t1)
    assert int(base.value[0, 0]) == min(expected, book_t1)
    falling = project(fleet, NAMED["deflation_40"], at_market)
    assert (falling.value[0] <= base.value[0]).all()
    assert (falling.value[0] < base.value[0]).any()
    # Marked, the falling world breaches the LTV covenant where the book does not.
    flat_book = project(fleet, NAMED["deflation_40"], book)
    assert (falling.ltv[0] > book.max_ltv_bps).any()
    assert int(falling.ltv[0].max()) > int(flat_book.ltv[0].max())


def test_bad_marks_are_refused() -> None:
    with pytest.raises(FleetError, match="node 1: mark_price_per_gpu_hour"):
        Fleet.from_nodes([node(1, mark_price_per_gpu_hour=-1)])
    with pytest.raises(ScenarioError, match="collateral 'market'"):
        project(Fleet.from_nodes([node(1)]), NAMED["base"], Params(T0, collateral="market"))
