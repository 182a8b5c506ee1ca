"""RiskModel library against hand-computed figures (risk_formulas.md), boundaries included."""

from __future__ import annotations

import pytest

MONTH = 2_592_000
MAX = 2**256 - 1
STRAIGHT, DECLINING = 0, 1
COST = 1_000_000
T0 = 1_000_000  # acquiredAt
LIFE = 36 * MONTH  # 93_312_000 s


@pytest.fixture(scope="module")
def risk(admin):
    from brownie import RiskModelHarness

    return RiskModelHarness.deploy({"from": admin})


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (T0 - 5, COST),  # before acquisition: age 0
        (T0, COST),  # age 0
        (T0 + 1, COST),  # 900_000 x 1 / LIFE floors to 0: value rounds up
        (T0 + 104, 999_999),  # 900_000 x 104 / 93_312_000 = 1.003 -> 1
        (T0 + LIFE // 2, 550_000),  # halfway: 1_000_000 - 450_000
        (T0 + LIFE - 1, 100_001),  # 900_000 x (LIFE-1) / LIFE = 899_999.99 -> 899_999
        (T0 + LIFE, 100_000),  # age = life: the residual
        (T0 + 10 * LIFE, 100_000),  # past life: still the residual
    ],
)
def test_straight_line_value(risk, t, expected):
    assert risk.value(STRAIGHT, COST, T0, 36, 1_000, t) == expected


def test_straight_line_zero_cost_zero_residual_and_zero_life(risk):
    assert risk.value(STRAIGHT, 0, T0, 36, 1_000, T0 + LIFE // 2) == 0
    # Residual 0: the value reaches 0 at life.
    assert risk.value(STRAIGHT, COST, T0, 36, 0, T0 + LIFE) == 0
    assert risk.value(STRAIGHT, COST, T0, 36, 0, T0 + LIFE // 4) == 750_000
    # Zero life: fully depreciated at once (no division by zero).
    assert risk.value(STRAIGHT, COST, T0, 0, 1_000, T0) == 100_000
    # Residual 100%: never depreciates.
    assert risk.value(STRAIGHT, COST, T0, 36, 10_000, T0 + LIFE) == COST


@pytest.mark.parametrize(
    ("months", "residual_bps", "expected"),
    [
        (0, 0, 1_000_000),
        (1, 0, 800_000),  # life 10: x 8/10 per whole month
        (2, 0, 640_000),
        (2.5, 0, 640_000),  # whole months only
        (3, 0, 512_000),
        (3, 6_000, 600_000),  # floored at the residual
        (10, 0, 0),  # age = life: the residual
        (25, 2_000, 200_000),  # past life
    ],
)
def test_declining_balance_value(risk, months, residual_bps, expected):
    t = T0 + int(months * MONTH)
    assert risk.value(DECLINING, COST, T0, 10, residual_bps, t) == expected


def test_declining_balance_short_lives(risk):
    # Life 2 months or less: the first month takes everything down to the residual.
    assert risk.value(DECLINING, COST, T0, 2, 1_000, T0 + MONTH) == 100_000
    assert risk.value(DECLINING, COST, T0, 2, 1_000, T0 + MONTH - 1) == COST
    assert risk.value(DECLINING, COST, T0, 0, 1_000, T0) == 100_000


@pytest.mark.parametrize(
    ("debt", "value", "expected"),
    [(800_000, 1_000_000, 8_000), (1, 3, 3_333), (0, 0, 0), (0, 5, 0), (5, 0, MAX), (3, 1, 30_000)],
)
def test_ltv(risk, debt, value, expected):
    assert risk.ltvBps(debt, value) == expected


@pytest.mark.parametrize(
    ("net", "service", "expected"),
    [(125, 100, 12_500), (0, 100, 0), (100, 0, MAX), (0, 0, MAX), (2, 3, 6_666)],
)
def test_dscr(risk, net, service, expected):
    assert risk.dscrBps(net, service) == expected


@pytest.mark.parametrize(
    ("dscr", "service_epochs", "ltv", "expected"),
    [
        (12_499, 1, 0, (True, False)),
        (12_500, 1, 0, (False, False)),  # at the covenant: not under it
        (0, 0, 0, (False, False)),  # no scheduled service in the window: no DSCR test
        (MAX, 0, 8_000, (False, False)),  # at the cap: not over it
        (MAX, 0, 8_001, (False, True)),
        (1, 3, MAX, (True, True)),
    ],
)
def test_covenant(risk, dscr, service_epochs, ltv, expected):
    assert risk.covenant(dscr, service_epochs, 12_500, ltv, 8_000) == expected


def test_raise_cap(risk):
    assert risk.raiseCap(1_000_000, 8_000) == 800_000
    assert risk.raiseCap(999, 8_000) == 799
    assert risk.raiseCap(0, 8_000) == 0
