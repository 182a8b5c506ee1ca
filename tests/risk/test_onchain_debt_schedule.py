"""The engine's debt schedule == RevenuePool.debtServiceDue/debtOutstanding on-chain.

Deployed pools with awkward terms (dust that does not divide by the tenor, a one-epoch
tenor, 100% rate, a 10-year monthly schedule, hourly and yearly epochs): every epoch from
before the draw to past the end, the scalar reference and the numpy engine answer what
the contract answers. (RiskModel's formulas join through tests/risk/cases.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.risk import formulas as F
from backend.risk import vector as V
from tests.contracts import conftest as contract_fixtures
from tests.contracts.pool_helpers import PoolParams, deploy_pool

# The contract tests' fixtures (a deployed system on a per-test snapshot), in this module only.
system = contract_fixtures.system
stablecoin = contract_fixtures.stablecoin
fund = contract_fixtures.fund
isolation = contract_fixtures.isolation
registry = contract_fixtures.registry
h100 = contract_fixtures.h100
pool_gate = contract_fixtures.pool_gate

TERMS = [
    # (target assets, tenor epochs, rate bps, epoch seconds)
    (100_000 * 10**6 + 7, 12, 1_200, F.MONTH_SECONDS),
    (5, 7, 10_000, F.MONTH_SECONDS),
    (170_000 * 10**6 + 13, 120, 1_100, F.MONTH_SECONDS),
    (1_000_003, 1, 1, 3_600),
    (999_999_937, 37, 9_999, 365 * 86_400),
]


@pytest.mark.parametrize(("target", "tenor", "rate", "epoch"), TERMS)
def test_schedule_matches_revenue_pool(
    stablecoin, fund, operator, admin, buyer, pool_gate, target, tenor, rate, epoch
) -> None:
    params = PoolParams(target=target, price=1, tenor=tenor, rate_bps=rate, epoch=epoch)
    pool = deploy_pool(stablecoin, operator, admin, params, gate=pool_gate)
    fund(buyer, target, pool)
    pool.deposit(target, buyer, {"from": buyer})
    pool.drawRaise({"from": operator})
    drawn_flag, draw_epoch, drawn = pool.draw()
    assert drawn_flag and drawn == target
    epochs = list(range(0, draw_epoch + tenor + 3))
    onchain = [tuple(pool.debtServiceDue(e)) for e in epochs]
    outstanding = [pool.debtOutstanding(e) for e in epochs]

    assert onchain == [F.debt_service_due(drawn, tenor, rate, epoch, draw_epoch, e) for e in epochs]
    assert outstanding == [F.debt_outstanding(drawn, tenor, draw_epoch, e) for e in epochs]
    e = np.array(epochs, dtype=np.int64)
    principal, interest = V.debt_service_due(drawn, tenor, rate, epoch, draw_epoch, e)
    assert list(zip(principal.tolist(), interest.tolist(), strict=True)) == onchain
    assert V.debt_outstanding(drawn, tenor, draw_epoch, e).tolist() == outstanding
    assert sum(p for p, _ in onchain) == drawn  # the schedule repays exactly the draw
    # The closed-form range sum the settlement charges for skipped epochs, on these terms too.
    due = [p + i for p, i in onchain]
    cuts = sorted({0, draw_epoch, draw_epoch + 1, draw_epoch + tenor // 2, draw_epoch + tenor})
    for a in cuts:
        for b in [*cuts, epochs[-1]]:
            assert pool.debtServiceBetween(a, b) == sum(due[a : b + 1]), (a, b)
