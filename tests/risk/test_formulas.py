"""The formulas: their boundaries by hand, and the numpy engine == the scalar reference."""

from __future__ import annotations

import random

import numpy as np
import pytest

from backend.risk import formulas as F
from backend.risk import vector as V
from tests.risk.cases import FORMULA_CASES, MONTH, Case

USD = 10**6


def _vector_answer(case: Case) -> object:
    got = getattr(V, case.fn)(
        *[
            np.array([a], dtype=object).astype(np.int64) if a < 2**63 else np.array([V.INF])
            for a in case.args
        ]
    )
    value = got[0]
    if isinstance(value, np.bool_):
        return bool(value)
    return F.INFINITE if value == V.INF else int(value)


@pytest.mark.parametrize("case", FORMULA_CASES, ids=str)
def test_vector_formula_equals_scalar(case: Case) -> None:
    expected = case.expected
    if case.fn in ("ltv_bps", "dscr_bps") and expected != F.INFINITE:
        expected = min(expected, int(V.INF) - 1)  # finite ratios beyond int64 saturate
    assert _vector_answer(case) == expected


def test_depreciation_boundaries() -> None:
    cost, t0 = 100 * USD, 1_000
    assert F.depreciated_value(cost, 1_000, 48, t0, t0 - 5) == cost  # not yet acquired
    assert F.depreciated_value(cost, 1_000, 48, t0, t0) == cost
    # one second in: the floored term is 0, so the value rounds up to the full cost
    assert F.depreciated_value(cost, 1_000, 48, t0, t0 + 1) == cost
    assert F.depreciated_value(cost, 1_000, 48, t0, t0 + 24 * MONTH) == 55 * USD
    assert F.depreciated_value(cost, 1_000, 48, t0, t0 + 48 * MONTH) == 10 * USD
    assert F.depreciated_value(cost, 1_000, 48, t0, t0 + 480 * MONTH) == 10 * USD
    # rounding up, never below the residual: cost 7, residual 2 (3_333 bps floors), 1 s of 1 month
    assert F.depreciated_value(7, 3_333, 1, 0, MONTH - 1) == 3


def test_ratio_boundaries() -> None:
    assert F.ltv_bps(0, 0) == 0
    assert F.ltv_bps(1, 0) == F.INFINITE == 2**256 - 1
    assert F.ltv_bps(8_000, 10_000) == 8_000
    assert F.dscr_bps(10, 0) == F.INFINITE
    assert F.dscr_bps(12_499, 10_000) == 12_499
    assert not F.covenant_breached(12_500, 8_000, 1, 12_500, 8_000)
    assert F.covenant_breached(12_499, 0, 1, 12_500, 8_000)
    assert not F.covenant_breached(0, 0, 0, 12_500, 8_000)  # no service in the window
    assert F.covenant_breached(F.INFINITE, 8_001, 0, 12_500, 8_000)
    assert F.raise_cap(100 * USD, 8_000) == 80 * USD


def test_debt_schedule_mirrors_revenue_pool() -> None:
    drawn, tenor, rate = 1_000 * USD + 7, 3, 1_200
    year = F.YEAR_SECONDS
    rows = [F.debt_service_due(drawn, tenor, rate, MONTH, 5, e) for e in range(4, 11)]
    per = drawn // tenor
    assert rows[0] == rows[1] == (0, 0)  # before and at the draw epoch
    assert rows[2] == (per, drawn * rate * MONTH // (10_000 * year))
    assert rows[3] == (per, (drawn - per) * rate * MONTH // (10_000 * year))
    last = drawn - 2 * per
    assert rows[4] == (last, last * rate * MONTH // (10_000 * year))  # the last takes the rest
    assert rows[5] == rows[6] == (0, 0)
    principal = sum(r[0] for r in rows)
    assert principal == drawn
    outstanding = [F.debt_outstanding(drawn, tenor, 5, e) for e in range(4, 10)]
    assert outstanding == [drawn, drawn, drawn - per, drawn - 2 * per, 0, 0]
    # fewer units than instalments: nothing until the last, which takes everything
    assert [F.debt_service_due(2, 5, 0, MONTH, 0, e)[0] for e in range(1, 7)] == [0, 0, 0, 0, 2, 0]
    assert F.debt_service_due(0, 5, 100, MONTH, 0, 1) == (0, 0)  # not drawn


def test_debt_schedule_vector_equals_scalar_on_random_terms() -> None:
    rng = random.Random(80)
    rows = []
    for _ in range(3_000):
        drawn = rng.choice([0, 1, rng.randrange(100), rng.randrange(10**15 + 1)])
        tenor = rng.choice([1, 2, 12, 120, rng.randrange(1, 1_201)])
        rate = rng.choice([0, 1, 10_000, rng.randrange(10_001)])
        length = rng.choice([MONTH, 3_600, 86_400, rng.randrange(1, 365 * 86_400 + 1)])
        d0 = rng.randrange(0, 50)
        e = d0 + rng.randrange(-2, tenor + 3)
        rows.append((drawn, tenor, rate, length, d0, max(e, 0)))
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)]
    principal, interest = V.debt_service_due(*cols)
    outstanding = V.debt_outstanding(cols[0], cols[1], cols[4], cols[5])
    for i, (drawn, tenor, rate, length, d0, e) in enumerate(rows):
        assert (int(principal[i]), int(interest[i])) == F.debt_service_due(
            drawn, tenor, rate, length, d0, e
        ), rows[i]
        assert int(outstanding[i]) == F.debt_outstanding(drawn, tenor, d0, e), rows[i]


def test_mul_div_is_exact_beyond_int64_products_and_refuses_overflow() -> None:
    a = np.array([10**15, 2**62, 3], dtype=np.int64)
    b = np.array([10**9, 3, 5], dtype=np.int64)
    c = np.array([10**9 + 7, 2**62 + 1, 2], dtype=np.int64)
    assert V.mul_div(a, b, c).tolist() == [10**24 // (10**9 + 7), 2**62 * 3 // (2**62 + 1), 7]
    with pytest.raises(V.EngineRangeError, match="probe exceeds"):
        V.mul_div(np.int64(2**62), 4, 1, "probe")
