"""The on-chain RiskModel and the Python risk engine compute the same figures.

Every case of the shared table (tests/risk/cases.py: boundaries plus random inputs)
is evaluated by backend.risk.formulas and by contracts/libraries/RiskModel.sol
(through the test-only RiskModelHarness) on anvil, and must agree exactly, to the
unit and in every rounding; so are the declining-balance values the stress engine
offers (formulas.declining_balance_value, vector.declining_balance_value).
"""

from __future__ import annotations

import numpy as np
import pytest
from brownie import RiskModelHarness

from backend.risk import formulas as F
from backend.risk import vector as V
from tests.risk.cases import FORMULA_CASES, Case

STRAIGHT_LINE, DECLINING_BALANCE = 0, 1  # RiskModel.Curve
UINT64, UINT16 = 2**64 - 1, 2**16 - 1


@pytest.fixture(scope="module")
def harness(admin):
    return RiskModelHarness.deploy({"from": admin})


def _fits_solidity(case: Case) -> bool:
    """Cases whose arguments the harness's parameter types can carry."""
    if case.fn == "depreciated_value":
        _cost, residual_bps, life_months, acquired_at, _t = case.args
        return acquired_at <= UINT64 and life_months <= UINT16 and residual_bps <= UINT16
    return True


def onchain(harness, case: Case):
    args = case.args
    if case.fn == "depreciated_value":
        cost, residual_bps, life_months, acquired_at, t = args
        return harness.value(STRAIGHT_LINE, cost, acquired_at, life_months, residual_bps, t)
    if case.fn == "ltv_bps":
        return harness.ltvBps(*args)
    if case.fn == "dscr_bps":
        return harness.dscrBps(*args)
    if case.fn == "covenant_breached":
        dscr, ltv, service_epochs, covenant_dscr, max_ltv = args
        dscr_breach, ltv_breach = harness.covenant(
            dscr, service_epochs, covenant_dscr, ltv, max_ltv
        )
        return dscr_breach or ltv_breach
    if case.fn == "raise_cap":
        return harness.raiseCap(*args)
    raise AssertionError(f"no on-chain twin for {case.fn}")


CASES = [case for case in FORMULA_CASES if _fits_solidity(case)]


def test_the_table_is_mostly_representable() -> None:
    assert len(CASES) >= 0.9 * len(FORMULA_CASES)
    assert {case.fn for case in CASES} == {
        "depreciated_value",
        "ltv_bps",
        "dscr_bps",
        "covenant_breached",
        "raise_cap",
    }


@pytest.mark.parametrize("case", CASES, ids=str)
def test_risk_model_agrees(harness, case: Case) -> None:
    assert onchain(harness, case) == case.expected


MONTH = F.MONTH_SECONDS
T0 = 1_700_000_000
# (cost, residual bps, life months, acquired at): a long life, a short one, lives of 1 and 2
# (nothing kept per step), a residual reached before the end of life, zero residual.
DB_NODES = [
    (240_000 * 10**6, 1_000, 48, T0),
    (9_999_999_999, 500, 36, T0 + 17),
    (10**6, 1_000, 1, T0),
    (7 * 10**9 + 3, 0, 2, T0),
    (123_456_789_012, 9_000, 60, T0 - 5 * MONTH),
    (10**15, 0, 120, T0),
]
DB_TIMES = [
    T0 - 1,
    T0,
    T0 + MONTH - 1,
    T0 + MONTH,
    T0 + 7 * MONTH + 5,
    T0 + 35 * MONTH,
    T0 + 200 * MONTH,
]


def test_declining_balance_agrees(harness) -> None:
    t = np.array(DB_TIMES, dtype=np.int64)
    cols = [np.array(c, dtype=np.int64) for c in zip(*DB_NODES, strict=True)]
    engine = V.declining_balance_value(*cols, t)
    for i, (cost, residual_bps, life, acquired) in enumerate(DB_NODES):
        for j, tj in enumerate(DB_TIMES):
            chain = harness.value(DECLINING_BALANCE, cost, acquired, life, residual_bps, tj)
            assert chain == F.declining_balance_value(cost, residual_bps, life, acquired, tj)
            assert chain == int(engine[i, j]), (i, tj)
