"""Shared formula cases: the scalar reference's answers on boundary and random inputs.

Why a table: the same cases must hold for the numpy engine (tests/risk/test_formulas.py)
and for the on-chain RiskModel once it lands. Adding the on-chain check is then one
parametrised test over ``FORMULA_CASES`` (names mapped by ``ONCHAIN``; adjust the
Solidity names there if RiskModel spells them differently):

    @pytest.mark.parametrize("case", FORMULA_CASES, ids=str)
    def test_risk_model_agrees(risk_model, case):
        assert case.onchain(risk_model) == case.expected

``formulas.INFINITE`` is type(uint256).max, exactly what RiskModel returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from backend.risk import formulas as F
from backend.risk.fleet import MAX_AMOUNT

MONTH = F.MONTH_SECONDS
ONCHAIN = {
    "depreciated_value": "depreciatedValue",
    "ltv_bps": "ltvBps",
    "dscr_bps": "dscrBps",
    "covenant_breached": "covenantBreached",
    "raise_cap": "raiseCap",
}


@dataclass(frozen=True)
class Case:
    fn: str
    args: tuple[int, ...]

    @property
    def expected(self) -> Any:
        return getattr(F, self.fn)(*self.args)

    def onchain(self, risk_model: Any) -> Any:
        return getattr(risk_model, ONCHAIN[self.fn])(*self.args)

    def __str__(self) -> str:
        return f"{self.fn}{self.args}"


def _boundaries() -> list[Case]:
    cost, t0 = 240_000 * 10**6, 1_700_000_000
    life = 48
    return [
        # value: not yet acquired, brand new, one second old (rounds up), mid-life,
        # one second before end of life, at and past end of life, zero residual, zero cost
        Case("depreciated_value", (cost, 1_000, life, t0, t0 - 1)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0 + 1)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0 + 24 * MONTH)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0 + life * MONTH - 1)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0 + life * MONTH)),
        Case("depreciated_value", (cost, 1_000, life, t0, t0 + 10 * life * MONTH)),
        Case("depreciated_value", (cost, 0, 18, t0, t0 + 18 * MONTH)),
        Case("depreciated_value", (cost, 10_000, 18, t0, t0 + 9 * MONTH)),
        Case("depreciated_value", (0, 1_000, 1, t0, t0 + 5)),
        Case("depreciated_value", (7, 3_333, 1, 0, 1)),
        Case("depreciated_value", (MAX_AMOUNT, 9_999, 1_200, 0, 600 * MONTH + 17)),
        # LTV: no debt (even with no value), no value, exactly at and around the cap
        Case("ltv_bps", (0, 0)),
        Case("ltv_bps", (0, 5)),
        Case("ltv_bps", (1, 0)),
        Case("ltv_bps", (8_000, 10_000)),
        Case("ltv_bps", (7_999, 9_999)),
        Case("ltv_bps", (MAX_AMOUNT, 1)),
        Case("ltv_bps", (1, MAX_AMOUNT)),
        # DSCR: no service, no revenue, exact 1.25x and one unit under
        Case("dscr_bps", (0, 0)),
        Case("dscr_bps", (5, 0)),
        Case("dscr_bps", (0, 5)),
        Case("dscr_bps", (12_500, 10_000)),
        Case("dscr_bps", (12_499, 10_000)),
        Case("dscr_bps", (MAX_AMOUNT * 24, 1)),
        # covenant: DSCR at/under the line, no service epoch, LTV at/over the max
        Case("covenant_breached", (12_500, 0, 1, 12_500, 8_000)),
        Case("covenant_breached", (12_499, 0, 1, 12_500, 8_000)),
        Case("covenant_breached", (0, 0, 0, 12_500, 8_000)),
        Case("covenant_breached", (F.INFINITE, 8_000, 3, 12_500, 8_000)),
        Case("covenant_breached", (F.INFINITE, 8_001, 3, 12_500, 8_000)),
        Case("covenant_breached", (F.INFINITE, F.INFINITE, 0, 12_500, 8_000)),
        Case("raise_cap", (0, 8_000)),
        Case("raise_cap", (240_000 * 10**6, 8_000)),
        Case("raise_cap", (9_999, 1)),
    ]


def _random(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)

    def amount() -> int:
        return rng.choice([0, 1, rng.randrange(10**4), rng.randrange(MAX_AMOUNT + 1)])

    out = []
    for _ in range(count):
        t0 = rng.randrange(MONTH, 2**33)
        life = rng.choice([1, 18, 36, 48, 60, rng.randrange(1, 1_201)])
        out.append(
            Case(
                "depreciated_value",
                (amount(), rng.randrange(10_001), life, t0, t0 + rng.randrange(-MONTH, 80 * MONTH)),
            )
        )
        out.append(Case("ltv_bps", (amount(), amount())))
        out.append(Case("dscr_bps", (amount(), amount())))
        out.append(Case("raise_cap", (amount(), rng.randrange(10_001))))
    return out


FORMULA_CASES: list[Case] = _boundaries() + _random(seed=8, count=50)
