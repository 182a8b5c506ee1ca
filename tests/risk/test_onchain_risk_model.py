"""The on-chain RiskModel and the Python risk engine compute the same figures.

Every case of the shared table (tests/risk/cases.py: boundaries plus random inputs)
is evaluated by backend.risk.formulas and by contracts/libraries/RiskModel.sol
(through the test-only RiskModelHarness) on anvil, and must agree exactly, to the
unit and in every rounding. Straight-line value is the shared curve; the on-chain
declining-balance curve has no Python twin (it is not in the formula sheet).
"""

from __future__ import annotations

import pytest
from brownie import RiskModelHarness

from tests.risk.cases import FORMULA_CASES, Case

STRAIGHT_LINE = 0  # RiskModel.Curve.StraightLine
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
