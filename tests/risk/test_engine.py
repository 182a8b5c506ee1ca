"""The projection: scenario definitions, cash/default rules, the waterfall, determinism,
and the vectorised engine == the scalar reference on random and boundary fleets."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from backend.risk import formulas as F
from backend.risk import vector as V
from backend.risk.aggregate import aggregate, by_class
from backend.risk.engine import WATERFALL_TIERS, Params, project
from backend.risk.fleet import (
    DEFAULT_CLASSES,
    MAX_AMOUNT,
    MAX_LIFE_MONTHS,
    Debt,
    EnergyCosts,
    Fleet,
    FleetError,
    NodeInput,
    synthetic_fleet,
)
from backend.risk.reference import project_fleet
from backend.risk.scenarios import NAMED, Scenario, ScenarioError, UtilizationPath

USD = 10**6
MONTH = F.MONTH_SECONDS
T0 = 1_764_000_000
H100 = DEFAULT_CLASSES["H100-SXM-80GB"]


def node(node_id: int = 1, **kw: object) -> NodeInput:
    base: dict[str, object] = {
        "node_id": node_id,
        "class_name": H100.name,
        "gpu_count": 8,
        "acquisition_cost": 240_000 * USD,
        "acquired_at": T0,
        "economic_life_months": 48,
        "residual_value_bps": 1_000,
    }
    base.update(kw)
    return NodeInput(**base)  # type: ignore[arg-type]


def _edge_nodes() -> list[NodeInput]:
    """Boundaries the engine must get right: no debt, dust debt, 100% rate, zero price
    and utilization, a bond bigger than the debt, a schedule already over, GPUs bought
    after the start, a one-month life, the largest amounts allowed, power dearer than the
    rent (never rented) and free power."""
    return [
        node(101),
        node(102, debt=Debt(3, 12, 0, 0, 10_000)),
        node(103, debt=Debt(200_000 * USD, 12, 10_000, 0, 0), bond=1, mark_price_per_gpu_hour=0),
        node(104, price_per_gpu_hour=0, debt=Debt(100_000 * USD, 36, 900, 5, 5_000)),
        node(105, utilization_bps=0, debt=Debt(10 * USD, 2, 500, 0, 3_000), insurance=7),
        node(106, debt=Debt(150_000 * USD, 24, 1_200, 0, 5_000), bond=10**9 * USD // 1000),
        node(107, debt=Debt(150_000 * USD, 24, 1_200, 30, 5_000)),
        node(
            108,
            acquired_at=T0 + 7 * MONTH + 11,
            debt=Debt(100_000 * USD, 36, 1_000, 0, 1),
            mark_price_per_gpu_hour=USD,
        ),
        node(
            109,
            economic_life_months=1,
            residual_value_bps=0,
            debt=Debt(USD, 1, 1, 0, 9_999),
            mark_price_per_gpu_hour=2 * USD,
        ),
        node(
            110,
            gpu_count=100_000,
            acquisition_cost=MAX_AMOUNT,
            economic_life_months=MAX_LIFE_MONTHS,
            price_per_gpu_hour=10**9,
            utilization_bps=10_000,
            debt=Debt(MAX_AMOUNT, 1_200, 10_000, 0, 10_000),
            bond=MAX_AMOUNT,
            insurance=MAX_AMOUNT,
            energy_wh_per_gpu_hour=10_000,
            electricity_price_per_kwh=10 * USD,
            pue_bps=30_000,
            mark_price_per_gpu_hour=10**9,  # never rented (power dearer): worth its residual
        ),
        node(
            111,
            trailing_revenue=5_000 * USD,
            utilization_bps=6_000,
            insurance=USD,
            debt=Debt(180_000 * USD, 36, 1_100, 3, 7_000),
            bond=12_000 * USD,
        ),
        node(112, electricity_price_per_kwh=5 * USD, debt=Debt(90_000 * USD, 24, 900, 0, 5_000)),
        node(
            113,
            energy_wh_per_gpu_hour=0,
            debt=Debt(90_000 * USD, 24, 900, 0, 5_000),
            pue_bps=10_000,
        ),
        node(  # rented: its hours' implied value is beyond int64, so it marks to book
            114,
            gpu_count=100_000,
            acquisition_cost=MAX_AMOUNT,
            economic_life_months=MAX_LIFE_MONTHS,
            price_per_gpu_hour=10**9,
            utilization_bps=10_000,
            debt=Debt(MAX_AMOUNT, 1_200, 10_000, 0, 10_000),
            mark_price_per_gpu_hour=10**9,
        ),
    ]


def _random_nodes(seed: int, count: int) -> list[NodeInput]:
    rng = random.Random(seed)
    marks = random.Random(seed + 1)  # its own stream: the other draws stay as they were
    out = []
    for i in range(count):
        cls = rng.choice(list(DEFAULT_CLASSES.values()))
        cost = rng.choice([0, rng.randrange(10**6, 10**12)])
        debt = None
        if rng.random() < 0.8:
            debt = Debt(
                rng.randrange(0, cost + 2),
                rng.choice([1, 12, 36, 60, 120, rng.randrange(1, 200)]),
                rng.randrange(0, 3_000),
                rng.randrange(0, 40),
                rng.randrange(0, 10_001),
            )
        out.append(
            NodeInput(
                node_id=1_000 + i,
                class_name=cls.name,
                gpu_count=rng.choice([1, 8, rng.randrange(1, 2_000)]),
                acquisition_cost=cost,
                acquired_at=T0 + rng.randrange(-40 * MONTH, 3 * MONTH),
                economic_life_months=rng.choice([cls.economic_life_months, rng.randrange(1, 130)]),
                residual_value_bps=rng.randrange(0, 10_001),
                debt=debt,
                bond=rng.choice([0, rng.randrange(0, 10**11)]),
                insurance=rng.choice([0, rng.randrange(0, 10**9)]),
                electricity_price_per_kwh=rng.choice([None, rng.randrange(0, 2 * USD)]),
                pue_bps=rng.choice([None, rng.randrange(10_000, 20_000)]),
                utilization_bps=rng.randrange(0, 10_001),
                price_per_gpu_hour=rng.choice([None, rng.randrange(0, 5 * USD)]),
                mark_price_per_gpu_hour=marks.choice([None, marks.randrange(0, 5 * USD)]),
            )
        )
    return out


CUSTOM = Scenario(
    "custom",
    "An index path for H100 (a crash then a partial recovery) and a demand spike.",
    annual_price_decline_bps=3_000,
    price_index_ppm={H100.name: tuple([1_000_000, 500_000, 250_000] + [700_000] * 60)},
    utilization=UtilizationPath(15_000, 2_000, 7),
    economic_life_months=30,
    tenor_months=18,
)
SCENARIOS = [*NAMED.values(), CUSTOM]


def _ints(xs: object) -> list[int]:
    return [F.INFINITE if v == V.INF else int(v) for v in np.asarray(xs)]


RUNS = [
    # One chain epoch per month (runs and window count periods), a 4-epoch window.
    Params(
        start_time=T0,
        horizon_months=40,
        epoch_seconds=MONTH,
        dscr_window_epochs=4,
        recovery_bps=5_500,
    ),
    # The chain's declining-balance curve, minute-long periods (the anvil test's), other
    # loan terms and a dearer default power.
    Params(
        start_time=T0,
        horizon_months=40,
        period_seconds=60,
        epoch_seconds=60,
        curve="declining_balance",
        cure_epochs=1,
        default_dscr_epochs=2,
        default_arrears_bps=200,
        pledge_bps=10_000,
        electricity_price_per_kwh=300_000,
    ),
    # Collateral marked to the market where a node has a market price (book elsewhere);
    # the deployment's hourly epochs (window and runs one month each).
    Params(start_time=T0, horizon_months=40, collateral="marked", operator_bps=2_000),
    # Two-week epochs: the 24-epoch window spans 12 months, runs 3 and 2 months.
    Params(start_time=T0, horizon_months=40, epoch_seconds=MONTH // 2, cure_epochs=5),
]


@pytest.mark.parametrize(
    "params", RUNS, ids=["monthly", "minutes-declining", "monthly-marked", "fortnight-epochs"]
)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_engine_equals_scalar_reference(scenario: Scenario, params: Params) -> None:
    fleet = Fleet.from_nodes(
        _edge_nodes() + _random_nodes(seed=len(scenario.name), count=40),
        {"": EnergyCosts(electricity_price_per_kwh=150_000)},  # the random nodes' operator
    )
    p = project(fleet, scenario, params)
    for i, ref in enumerate(project_fleet(fleet, scenario, params)):
        where = f"node {int(fleet.node_id[i])}"
        assert _ints(p.value[i]) == ref.value, where
        assert _ints(p.outstanding[i]) == ref.outstanding, where
        assert _ints(p.net[i]) == ref.net, where
        assert _ints(p.due[i]) == ref.due, where
        assert _ints(p.dscr[i]) == [min(d, F.INFINITE) for d in ref.dscr], where
        assert _ints(p.ltv[i]) == ref.ltv, where
        assert p.covenant[i].tolist() == ref.covenant, where
        assert (p.dscr_breach[i] | (p.ltv[i] > params.max_ltv_bps)).tolist() == ref.covenant
        assert (int(p.first_breach[i]), int(p.first_default[i])) == (
            ref.first_breach,
            ref.first_default,
        ), where
        assert (int(p.claim[i]), int(p.recovery[i])) == (ref.claim, ref.recovery), where
        assert _ints(p.utilization[i]) == ref.utilization, where
        assert _ints(p.operator_margin[i]) == ref.operator_margin, where
        assert (
            int(p.sweep_periods[i]),
            int(p.cures[i]),
            int(p.swept[i]),
            int(p.arrears[i]),
        ) == (ref.sweep_periods, ref.cures, ref.swept, ref.arrears), where
        assert {k: int(v[i]) for k, v in p.waterfall.items()} == ref.waterfall, where
    # the random fleet does exercise the interesting branches
    assert (p.first_default > 0).any()
    assert (p.first_breach > 0).any() and (p.waterfall["insurance_reserve"] > 0).any()
    if params.period_seconds == MONTH:  # minute-long periods earn too little to sweep
        assert (p.utilization == 0).any()
        # With a one-period window a shortfall is a DSCR under the floor, which defaults in
        # that period: nothing is left for a sweep to pay.
        assert (p.swept > 0).any() or params.window_periods == 1
    if params.collateral == "marked":  # some marks lower the value, some leave the book
        book = project(fleet, scenario, dataclasses.replace(params, collateral="book"))
        marked = fleet.mark_price0 >= 0
        assert (p.value <= book.value).all()
        assert (p.value[marked] < book.value[marked]).any()
        assert (p.value[~marked] == book.value[~marked]).all()


def test_named_scenarios_are_defined_as_documented() -> None:
    assert set(NAMED) == {
        "base",
        "deflation_20",
        "deflation_40",
        "life_18",
        "life_36",
        "life_60",
        "slow_productivity",
        "refuted_productivity",
    }
    assert NAMED["base"].price_index("H100", 60).tolist() == [1_000_000] * 60
    d40 = NAMED["deflation_40"].price_index("H100", 24)
    assert (int(d40[11]), int(d40[23])) == (600_000, 360_000)  # -40% a year, compounding
    assert int(NAMED["deflation_20"].price_index("A100", 12)[11]) == 800_000
    assert np.all(np.diff(d40) < 0)
    for life in (18, 36, 60):
        assert NAMED[f"life_{life}"].economic_life_months == life
    slow = NAMED["slow_productivity"]
    ramp = slow.utilization.multipliers(200)
    # From today's attested level (no cliff in month 1), up by half over 15 years.
    assert (int(ramp[0]), int(ramp[89]), int(ramp[179]), int(ramp[199])) == (
        10_027,
        12_500,
        15_000,
        15_000,
    )
    assert np.all(np.diff(ramp) >= 0)
    assert slow.tenor_months == 120 and slow.annual_price_decline_bps == 2_000
    refuted = NAMED["refuted_productivity"].utilization.multipliers(60)
    assert (int(refuted[0]), int(refuted[11]), int(refuted[23]), int(refuted[59])) == (
        9_791,
        7_500,
        5_000,
        5_000,
    )
    assert NAMED["refuted_productivity"].annual_price_decline_bps == 4_000
    assert NAMED["refuted_productivity"].tenor_months is None


def test_seed_003_framing_re_terming_buys_time_and_refuted_defaults() -> None:
    """Seed 003's two stress tests on one seeded fleet: when productivity comes slowly,
    re-terming the debt to 10 years buys time (fewer defaults, later, smaller losses than
    the same world on the original tenors); when it is refuted, most pools default and
    lose more than in the slow case."""
    fleet = synthetic_fleet(1_000, seed=3, start_time=T0)
    params = Params(start_time=T0)
    slow = NAMED["slow_productivity"]
    runs = {
        "slow": aggregate(project(fleet, slow, params)),
        "slow_no_reterm": aggregate(
            project(fleet, dataclasses.replace(slow, tenor_months=None), params)
        ),
        "refuted": aggregate(project(fleet, NAMED["refuted_productivity"], params)),
    }
    pools = int((fleet.drawn > 0).sum())
    s, n, r = runs["slow"], runs["slow_no_reterm"], runs["refuted"]
    assert s["nodes_defaulting"] < n["nodes_defaulting"]
    assert s["first_default_month"] > n["first_default_month"]
    assert s["total_loss"] < n["total_loss"]
    assert r["nodes_defaulting"] > pools // 2
    assert r["nodes_defaulting"] > s["nodes_defaulting"] and r["total_loss"] > s["total_loss"]


def test_stress_orders_outcomes_on_one_fleet() -> None:
    """Harsher worlds never produce fewer defaults or smaller losses on the same fleet."""
    fleet = synthetic_fleet(400, seed=3, start_time=T0)
    params = Params(start_time=T0)
    runs = {name: aggregate(project(fleet, NAMED[name], params)) for name in NAMED}
    chain = ("base", "deflation_20", "deflation_40")
    for milder, harsher in zip(chain, chain[1:], strict=False):
        assert runs[harsher]["nodes_defaulting"] >= runs[milder]["nodes_defaulting"]
        assert runs[harsher]["total_loss"] >= runs[milder]["total_loss"]
    assert runs["life_18"]["total_loss"] >= runs["life_36"]["total_loss"]
    assert runs["life_36"]["total_loss"] >= runs["life_60"]["total_loss"]
    assert runs["deflation_40"]["nodes_defaulting"] > runs["base"]["nodes_defaulting"]


def test_default_and_waterfall_in_order_and_to_the_unit() -> None:
    """One node, by hand, under the deployed terms read with one chain epoch per month (so
    the DSCR run takes six months): no revenue, so every month's service goes into
    arrears; the loan is swept from month 1 and defaults once arrears pass 10% of the
    drawn principal (month 2: 20k > 12k), claim = principal left + arrears."""
    drawn, tenor = 120_000 * USD, 12
    n = node(
        price_per_gpu_hour=0,
        debt=Debt(drawn, tenor, 0, 0, 2_500),
        bond=8_000 * USD,  # 4,000 pledged
        insurance=5_000 * USD,
    )
    params = Params(start_time=T0, horizon_months=12, recovery_bps=1_000, epoch_seconds=MONTH)
    p = project(Fleet.from_nodes([n]), NAMED["base"], params)
    assert (int(p.first_breach[0]), int(p.first_default[0])) == (1, 2)
    assert int(p.sweep_periods[0]) == 1  # month 2 was settled under the sweep
    claim = (drawn - 20_000 * USD) + 20_000 * USD
    assert int(p.claim[0]) == claim == int(p.total_loss[0])
    value = F.depreciated_value(240_000 * USD, 1_000, 48, T0, T0 + 2 * MONTH)
    assert int(p.recovery[0]) == value // 10  # an estimate only: not in the waterfall
    tiers = {k: int(v[0]) for k, v in p.waterfall.items()}
    assert list(tiers) == list(WATERFALL_TIERS)
    assert tiers == {
        "operator_bond": 4_000 * USD,  # the pledged half of the bond, first
        "stakers": 30_000 * USD,  # then the staked 25% of the raise
        "insurance_reserve": 5_000 * USD,  # then the reserve (no gross paid into it)
        "holders": claim - 39_000 * USD,  # the rest
    }
    assert p.active[0].tolist() == [True, True] + [False] * 10  # the path stops at default


def test_one_reserve_stands_behind_every_node_in_default_order() -> None:
    """EpochSettlement keeps one insurance reserve: a default draws on what any node put
    in, and the defaults of a period take it in node order until it is empty (not each
    node its own). Two pools without revenue default in month 1 (DSCR 0 for six hourly
    epochs), each leaving 86k after the pledged bond (4k) and the stakers (30k) of its
    120k claim; the reserve holds 150k (100k behind node 1, 50k behind a node without a
    loan): node 1 takes 86k, node 2 the 64k left, its holders lose 22k."""
    debt = Debt(120_000 * USD, 12, 0, 0, 2_500)
    fleet = Fleet.from_nodes(
        [
            node(1, price_per_gpu_hour=0, debt=debt, bond=8_000 * USD, insurance=100_000 * USD),
            node(2, price_per_gpu_hour=0, debt=debt, bond=8_000 * USD),
            node(3, price_per_gpu_hour=0, insurance=50_000 * USD),
        ]
    )
    p = project(fleet, NAMED["base"], Params(start_time=T0, horizon_months=3))
    assert p.first_default.tolist() == [1, 1, 0]
    assert p.claim.tolist() == [120_000 * USD, 120_000 * USD, 0]
    tiers = {k: v.tolist() for k, v in p.waterfall.items()}
    assert tiers == {
        "operator_bond": [4_000 * USD, 4_000 * USD, 0],
        "stakers": [30_000 * USD, 30_000 * USD, 0],
        "insurance_reserve": [86_000 * USD, 64_000 * USD, 0],
        "holders": [0, 22_000 * USD, 0],
    }
    refs = project_fleet(fleet, NAMED["base"], Params(start_time=T0, horizon_months=3))
    assert [r.waterfall["insurance_reserve"] for r in refs] == tiers["insurance_reserve"]
    # What the settlement holds already (reserveHeld) stands beside the nodes' insurance.
    held = Params(start_time=T0, horizon_months=3, reserve_held=20_000 * USD)
    p = project(fleet, NAMED["base"], held)
    assert p.waterfall["insurance_reserve"].tolist() == [86_000 * USD, 84_000 * USD, 0]
    assert p.waterfall["holders"].tolist() == [0, 2_000 * USD, 0]


def test_low_dscr_run_defaults_and_a_cure_ends_the_sweep() -> None:
    """DSCR under 1.00x for six settlements in a row defaults even with small arrears; a
    loan whose covenant clears for three settlements is back to performing (one chain
    epoch per month: the runs count months; the demo's counts, 6 and 3)."""
    weak = node(1, debt=Debt(100_000 * USD, 60, 0, 0, 5_000), utilization_bps=1_800)
    params = Params(
        start_time=T0,
        horizon_months=24,
        epoch_seconds=MONTH,
        dscr_window_epochs=1,
        default_dscr_epochs=6,
        cure_epochs=3,
    )
    p = project(Fleet.from_nodes([weak]), NAMED["base"], params)
    assert int(p.first_default[0]) == 6
    assert int(p.arrears[0]) <= 100_000 * USD // 10  # not the arrears trigger
    # Demand grows 10% of today's a month: under 1.25x in months 1-3 (swept), then clean
    # for three settlements: cured in month 6, no default.
    spike = Scenario("recovery", "", utilization=UtilizationPath(10_000, 50_000, 20))
    p = project(Fleet.from_nodes([weak]), spike, params)
    assert (int(p.first_breach[0]), int(p.cures[0]), int(p.first_default[0])) == (1, 1, 0)


def test_runs_and_window_count_the_chains_hourly_epochs() -> None:
    """On the deployed chain (hourly epochs) the DSCR window and the default run are 720
    epochs (30 days) and the cure 168 (7 days): a month whose DSCR is under 1.00x holds
    720 such epochs, so the loan is due for default in that month, not after 720 months;
    a sweep is cured by the first clean month; the window is the month's own settlements,
    not two years of them. The demo's 24 / 6 / 3 take one month each too."""
    params = Params(start_time=T0, horizon_months=24)
    assert (params.dscr_window_epochs, params.default_dscr_epochs, params.cure_epochs) == (
        720,
        720,
        168,
    )
    assert (params.window_periods, params.default_dscr_periods, params.cure_periods) == (1, 1, 1)
    demo = Params(start_time=T0, dscr_window_epochs=24, default_dscr_epochs=6, cure_epochs=3)
    assert (demo.window_periods, demo.default_dscr_periods, demo.cure_periods) == (1, 1, 1)
    # One more epoch than a month spans two.
    assert Params(start_time=T0, epoch_seconds=MONTH // 720 + 1).default_dscr_periods == 2
    weekly = Params(start_time=T0, epoch_seconds=MONTH // 4, default_dscr_epochs=6)
    assert weekly.default_dscr_periods == 2
    weak = node(1, debt=Debt(100_000 * USD, 60, 0, 0, 5_000), utilization_bps=1_800)
    p = project(Fleet.from_nodes([weak]), NAMED["base"], params)
    assert int(p.first_default[0]) == 1
    assert int(p.arrears[0]) <= 100_000 * USD // 10  # not the arrears trigger
    assert int(p.dscr[0, 0]) == int(p.net[0, 0]) * 10_000 // int(p.due[0, 0])  # the month alone
    # Under 1.25x but over 1.00x in month 1 (swept from month 2), clean from month 2 on:
    # the first clean month cures it.
    fair = node(1, debt=Debt(100_000 * USD, 60, 0, 0, 5_000), utilization_bps=2_200)
    spike = Scenario("recovery", "", utilization=UtilizationPath(10_000, 50_000, 20))
    p = project(Fleet.from_nodes([fair]), spike, params)
    dscr = [int(d) for d in p.dscr[0, :3]]
    assert 10_000 <= dscr[0] < 12_500 <= dscr[1], dscr
    assert (int(p.first_breach[0]), int(p.cures[0]), int(p.first_default[0])) == (1, 1, 0)
    assert int(p.sweep_periods[0]) == 1


def test_retenor_keeps_repaid_pools_repaid() -> None:
    repaid = node(1, debt=Debt(36_000 * USD, 36, 1_000, 40, 5_000))
    running = node(2, debt=Debt(36_000 * USD, 36, 1_000, 6, 5_000))
    fleet = Fleet.from_nodes([repaid, running])
    p = project(fleet, NAMED["slow_productivity"], Params(start_time=T0, horizon_months=12))
    assert p.due[0].tolist() == [0] * 12 and p.outstanding[0].tolist() == [0] * 12
    # The running pool owes 30,000 after 6 of 36 instalments: that, and only that, is spread
    # over the 120 new ones (250 a month); the 6,000 repaid never comes back.
    assert int(p.outstanding[1, 0]) == 30_000 * USD - 250 * USD
    assert int(p.outstanding[1, 0]) < 36_000 * USD - 7 * 1_000 * USD + 1_000 * USD


def test_pledge_larger_than_the_claim_takes_only_the_claim() -> None:
    n = node(price_per_gpu_hour=0, debt=Debt(1_200 * USD, 12, 0, 0, 5_000), bond=10_000 * USD)
    params = Params(start_time=T0, horizon_months=3, epoch_seconds=MONTH)  # runs in months
    p = project(Fleet.from_nodes([n]), NAMED["base"], params)
    assert int(p.first_default[0]) == 2  # 200 unpaid > 10% of 1,200
    tiers = {k: int(v[0]) for k, v in p.waterfall.items()}
    assert tiers == {
        "operator_bond": 1_200 * USD,
        "stakers": 0,
        "insurance_reserve": 0,
        "holders": 0,
    }


def test_energy_cost_from_defaults_operator_and_node_overrides() -> None:
    """Energy x price x PUE: the class's power and the run's defaults, the operator's
    declared price, the node's own; a node whose power costs more than the operator's share
    of the rent is not rented (utilization 0, no energy bought)."""
    nodes = [
        node(1, operator="a", utilization_bps=10_000),
        node(2, operator="b", utilization_bps=10_000),
        node(3, operator="b", utilization_bps=10_000, electricity_price_per_kwh=200_000),
        node(4, operator="a", utilization_bps=10_000, electricity_price_per_kwh=10 * USD),
    ]
    fleet = Fleet.from_nodes(nodes, {"b": EnergyCosts(electricity_price_per_kwh=50_000)})
    p = project(fleet, NAMED["base"], Params(start_time=T0, horizon_months=1))
    # No loan: the operator keeps its share and the net (gross less fee and reserve).
    share = [int(g) - int(g) * 500 // 10_000 - int(g) * 300 // 10_000 for g in p.gross[:, 0]]
    hours = 8 * 720
    # 700 Wh x 1.30 PUE = 0.91 kWh per GPU-hour
    assert int(p.operator_margin[0, 0]) == share[0] - hours * 91_000
    assert int(p.operator_margin[1, 0]) == share[1] - hours * 45_500
    assert int(p.operator_margin[2, 0]) == share[2] - hours * 182_000
    assert int(p.utilization[3, 0]) == 0 and int(p.operator_margin[3, 0]) == 0


def test_healthy_node_neither_breaches_nor_defaults() -> None:
    n = node(debt=Debt(60_000 * USD, 36, 800, 0, 5_000), utilization_bps=9_000, bond=USD)
    p = project(Fleet.from_nodes([n]), NAMED["base"], Params(start_time=T0, horizon_months=36))
    assert (int(p.first_breach[0]), int(p.first_default[0])) == (0, 0)
    assert int(p.total_loss[0]) == 0 and int(p.swept[0]) == 0
    assert int(p.dscr[0, 0]) > 12_500 and int(p.ltv[0, -1]) == 0


def test_projection_is_deterministic() -> None:
    a = synthetic_fleet(300, seed=11, start_time=T0)
    b = synthetic_fleet(300, seed=11, start_time=T0)
    c = synthetic_fleet(300, seed=12, start_time=T0)
    assert np.array_equal(a.acquisition_cost, b.acquisition_cost)
    assert not np.array_equal(a.acquisition_cost, c.acquisition_cost)
    params = Params(start_time=T0)
    for s in NAMED.values():
        x, y = project(a, s, params), project(b, s, params)
        for f in ("dscr", "ltv", "net", "value", "first_default", "first_breach", "claim"):
            assert np.array_equal(getattr(x, f), getattr(y, f)), (s.name, f)


def test_aggregate_is_ratio_of_sums_over_running_nodes() -> None:
    fleet = Fleet.from_nodes(_edge_nodes()[:8])
    p = project(fleet, NAMED["deflation_40"], Params(start_time=T0, horizon_months=24))
    agg = aggregate(p)
    j = 5
    act = p.active[:, j]
    assert int(agg["outstanding"][j]) == int(p.outstanding[act, j].sum())
    assert int(agg["ltv_bps"][j]) == F.ltv_bps(
        int(p.outstanding[act, j].sum()), int(p.value[act, j].sum())
    )
    assert agg["total_loss"] == sum(agg["waterfall"].values())
    assert agg["nodes_defaulting"] == int((p.first_default > 0).sum())


def test_groups_summed_at_once_equal_each_group_summed_alone() -> None:
    """by_class (one pass over sorted nodes) == the sums over each class's nodes, by hand."""
    fleet = Fleet.from_nodes(_edge_nodes()[:9] + _random_nodes(seed=5, count=60))
    p = project(fleet, NAMED["deflation_40"], Params(start_time=T0, horizon_months=30))
    platform, classes = by_class(p)
    assert sorted(classes) == sorted({str(c) for c in fleet.class_name})
    months = np.arange(1, 31)
    for name, agg in [("", platform), *classes.items()]:
        sel = fleet.class_name == name if name else np.ones(len(fleet), dtype=bool)
        act = p.active[sel]
        fd, fb = p.first_default[sel], p.first_breach[sel]
        net = [sum(int(v) for v in col) for col in np.where(act, p.net[sel], 0).T]
        assert [int(v) for v in agg["net_revenue"]] == net, name
        out = np.where(act, p.outstanding[sel], 0).sum(axis=0)
        assert np.array_equal(agg["outstanding"], out), name
        assert np.array_equal(agg["breaching"], (p.covenant[sel] & act).sum(axis=0)), name
        cumulative = ((fd > 0)[:, None] & (fd[:, None] <= months[None, :])).sum(axis=0)
        assert np.array_equal(agg["defaults_cumulative"], cumulative), name
        assert agg["first_default_month"] == (int(fd[fd > 0].min()) if (fd > 0).any() else None)
        assert agg["first_breach_month"] == (int(fb[fb > 0].min()) if (fb > 0).any() else None)
        assert agg["nodes"] == int(sel.sum())
        assert agg["nodes_cured"] == int((p.cures[sel] > 0).sum())
        assert agg["waterfall"] == {k: int(v[sel].sum()) for k, v in p.waterfall.items()}
        assert np.array_equal(agg["operator_margin"], p.operator_margin[sel].sum(axis=0))


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([], "empty"),
        ([node(1), node(1)], "node 1 appears twice"),
        ([node(2, gpu_count=0)], "node 2: gpu_count=0"),
        ([node(3, residual_value_bps=10_001)], "node 3: residual_value_bps"),
        ([node(4, debt=Debt(1, 0, 0))], "node 4: debt.tenor_months=0"),
        ([node(5, acquisition_cost=MAX_AMOUNT + 1)], "node 5: acquisition_cost"),
        ([node(6, class_name="X1", gpu_count=1)], "node 6: class 'X1' has no default price"),
        ([node(7, utilization_bps=10_001)], "node 7: utilization_bps"),
    ],
)
def test_bad_fleets_are_refused_with_the_node_and_field(nodes: list[NodeInput], match: str) -> None:
    with pytest.raises(FleetError, match=match):
        Fleet.from_nodes(nodes)


def test_bad_scenarios_are_refused() -> None:
    fleet = Fleet.from_nodes([node()])
    with pytest.raises(ScenarioError, match="horizon_months"):
        project(fleet, NAMED["base"], Params(start_time=T0, horizon_months=0))
    short = dataclasses.replace(CUSTOM, price_index_ppm={H100.name: (1,)})
    with pytest.raises(ScenarioError, match="has 1 months"):
        project(fleet, short, Params(start_time=T0))
    with pytest.raises(ScenarioError, match="exceeds 10000"):
        project(fleet, NAMED["base"], Params(start_time=T0, operator_bps=9_500))
    with pytest.raises(ScenarioError, match="known curves"):
        project(fleet, NAMED["base"], Params(start_time=T0, curve="sum_of_years"))


def test_request_limits_bound_the_work() -> None:
    """nodes x months x scenarios is capped so one request cannot occupy the API for long."""
    from pydantic import ValidationError

    from backend.risk.schemas import MAX_CELLS, ScenarioRunRequest

    ok = ScenarioRunRequest(node_ids=list(range(10_000)), horizon_months=120)
    assert len(ok.selected()) == len(NAMED) and MAX_CELLS == 10_000 * 120
    with pytest.raises(ValidationError, match="exceeds"):
        ScenarioRunRequest(node_ids=list(range(10_000)), horizon_months=121)
    with pytest.raises(ValidationError, match="scenarios exceeds"):
        ScenarioRunRequest(
            node_ids=list(range(10_000)),
            horizon_months=120,
            scenarios=list(NAMED),
            custom=[{"name": "x"}],
        )
    only_custom = ScenarioRunRequest(node_ids=[1], custom=[{"name": "x"}])
    assert [s.name for s in only_custom.selected()] == ["x"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_waterfall_sums_to_the_unit_for_every_node(scenario: Scenario) -> None:
    """On a 2,000-node seeded fleet: tiers are non-negative, each within its capacity, in
    order (a later tier pays only once the earlier ones are exhausted), and they sum to
    the claim at default (principal accelerated + arrears), to the unit."""
    fleet = synthetic_fleet(2_000, seed=21, start_time=T0)
    params = Params(start_time=T0)
    p = project(fleet, scenario, params)
    w = {k: v.astype(object) for k, v in p.waterfall.items()}
    defaulted = p.first_default > 0
    total = w["operator_bond"] + w["stakers"] + w["insurance_reserve"] + w["holders"]
    assert np.array_equal(total, np.where(defaulted, p.claim, 0))
    assert all((v >= 0).all() for v in w.values())
    pledged = fleet.bond.astype(object) * params.pledge_bps // 10_000
    stake_cap = fleet.drawn.astype(object) * fleet.staked_bps // 10_000
    assert (w["operator_bond"] <= pledged).all() and (w["stakers"] <= stake_cap).all()
    pays_stakers = w["stakers"] > 0
    assert (w["operator_bond"][pays_stakers] == pledged[pays_stakers]).all()
    pays_insurance = w["insurance_reserve"] > 0
    assert (w["stakers"][pays_insurance] == stake_cap[pays_insurance]).all()
    pays_holders = w["holders"] > 0
    assert (w["stakers"][pays_holders] == stake_cap[pays_holders]).all()
    assert (p.waterfall["operator_bond"][~defaulted] == 0).all()


def test_shared_parts_change_no_projection() -> None:
    """run_scenarios shares values and debt schedules across scenarios: each projection is
    the same as on its own, whichever scenarios came before (life and tenor overrides too)."""
    fleet = synthetic_fleet(300, seed=8, start_time=T0)
    params = Params(start_time=T0, horizon_months=48)
    shared: dict[object, object] = {}
    for s in [*SCENARIOS, NAMED["base"], CUSTOM]:
        a, b = project(fleet, s, params, shared), project(fleet, s, params)
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert np.array_equal(x, y), (s.name, f.name)
        assert {k: v.tolist() for k, v in a.waterfall.items()} == {
            k: v.tolist() for k, v in b.waterfall.items()
        }
    # Values per life (class, 18, 36, 60, 30), schedules per tenor (pool, 120, 18), LTVs
    # per (life, tenor) pair that occurs (6): each computed once.
    assert len(shared) == 5 + 3 + 6
