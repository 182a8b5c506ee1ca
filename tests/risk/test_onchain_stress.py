"""The chain and the stress engine tell the same story, to the unit.

One pool, one node, on the deployed system (anvil, the tests' deployment: one-minute
epochs): a drawn loan, then epoch by epoch the scenario's price (the node's usage terms)
and the engine's attested milli-GPU-hours, attested by the oracles and settled by the
keeper; the covenant flags, the cash sweep and its cure, the default (declared by anyone
once due) and the loss waterfall are the contracts'. The engine projects the same pool
with the same period (one epoch) and the deployed terms it reads from the contracts; the
breach, cure and default epochs, every epoch's bill and flag, and each class's loss
(bond, stakers, reserve, holders) must be equal.

The path (chosen so every rule acts): prices at 1.5x for two epochs (DSCR under the
covenant: cash sweep from epoch 1), 3.5x for five (cured after three clean settlements),
then a collapse (arrears pass 10% of the drawn principal: default in epoch 9) with a
pledge, a stake and a reserve each too small to cover the claim alone. A second node
without a pool is billed beside it every epoch: its reserve part goes into the same
insurance reserve the default draws on, as the engine's one reserve for the fleet.
"""

from __future__ import annotations

import pytest
from brownie import chain

from backend.risk import formulas as F
from backend.risk import terms as T
from backend.risk.engine import WATERFALL_TIERS, Params, project
from backend.risk.fleet import DEFAULT_CLASSES, Debt, Fleet, NodeInput
from backend.risk.scenarios import PPM, Scenario
from scripts.deploy import DeployConfig
from tests.contracts import conftest as contract_fixtures
from tests.contracts.node_helpers import USD, b32
from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TENOR,
    SLASHER_ROLE,
    attest,
    deploy_hub_pool,
    item,
)
from tests.oracle.hub_helpers import end_epoch

# The contract tests' fixtures (a deployed system on a per-test snapshot), in this module only.
system = contract_fixtures.system
settlement = contract_fixtures.settlement
hub = contract_fixtures.hub
registry = contract_fixtures.registry
stablecoin = contract_fixtures.stablecoin
fund = contract_fixtures.fund
h100 = contract_fixtures.h100
isolation = contract_fixtures.isolation

H100 = DEFAULT_CLASSES["H100-SXM-80GB"]
GPUS = 32
PRICE0 = 300 * USD  # per GPU-hour: one-minute epochs bill little, so the price is large
UTILIZATION_BPS = 10_000
TARGET = 2_400 * USD  # drawn; 200 USD principal per epoch over the pools' 12-epoch tenor
RATE_BPS = 1_200
STAKED_BPS = 1_000  # 240 USD staked: the stakers' first loss is capped there
BOND = 400 * USD  # half pledged at the draw: 200 USD
COST = 100_000 * USD
# The node beside it (no pool): 2 H100s a quarter busy, paying into the one reserve.
OTHER_GPUS, OTHER_UTILIZATION_BPS = 2, 2_500
INDEX = (1.5, 1.5, 3.5, 3.5, 3.5, 3.5, 3.5, 0.3, 0.3, 0.2, 0.2, 0.1)
PERFORMING, SWEEP, DEFAULTED = 0, 1, 2


def _loan_book(system):
    """The contract that runs the loans (declareDefault, loanParams): PoolLoans today;
    looked up by its functions so the test follows the loan logic if it moves."""
    books = [c for c in system.contracts().values() if hasattr(c, "declareDefault")]
    assert len(books) == 1, books
    return books[0]


def _params(settlement, book, hub, start: int, horizon: int) -> Params:
    """The engine's terms, read from the deployed contracts (brownie's Wei made plain ints)."""
    pledge, arrears, dscr_floor, dscr_run, cure = (int(v) for v in book.loanParams())
    return Params(
        start_time=start,
        horizon_months=horizon,
        period_seconds=int(hub.epochLengthSeconds()),
        epoch_seconds=int(hub.epochLengthSeconds()),
        protocol_fee_bps=int(settlement.protocolFeeBps()),
        reserve_bps=int(settlement.reserveBps()),
        operator_bps=int(settlement.operatorBps()),
        covenant_dscr_bps=int(settlement.covenantDscrBps()),
        max_ltv_bps=int(settlement.maxLtvBps()),
        dscr_window_epochs=int(settlement.dscrWindowEpochs()),
        pledge_bps=pledge,
        default_arrears_bps=arrears,
        default_dscr_bps=dscr_floor,
        default_dscr_epochs=dscr_run,
        cure_epochs=cure,
        curve=("straight_line", "declining_balance")[settlement.curve()],
    )


@pytest.fixture
def loan(system, settlement, hub, registry, stablecoin, fund, h100, admin, operator, staker):
    """A node (32 H100s bought now) with a 400 USD bond and a drawn, 10%-staked pool."""
    book = _loan_book(system)
    acquired = chain[-1].timestamp
    node = registry.registerNode(
        h100, GPUS, b32("eu-west"), COST, acquired, f"0x{0xE5E5:040x}", {"from": operator}
    ).return_value
    fund(operator, BOND, registry)
    registry.depositBond(node, BOND, {"from": operator})
    pool = deploy_hub_pool(hub, stablecoin, operator, admin, node, gate=settlement, target=TARGET)
    fund(staker, TARGET, pool)
    pool.deposit(TARGET, staker, {"from": staker})
    pool.drawRaise({"from": operator})
    pool.stake(pool.balanceOf(staker) * STAKED_BPS // 10_000, {"from": staker})
    pool.grantRole(DISTRIBUTOR_ROLE, settlement, {"from": admin})
    pool.grantRole(SLASHER_ROLE, book, {"from": admin})
    settlement.setPool(node, pool, {"from": admin})
    return book, node, pool, acquired


def test_chain_and_engine_agree_on_breach_cure_default_and_losses(
    loan, settlement, hub, registry, fund, h100, admin, accounts, stranger
) -> None:
    book, node, pool, acquired = loan
    payer = accounts[9]
    other = registry.registerNode(
        h100, OTHER_GPUS, b32("eu-west"), COST, acquired, f"0x{0xE6E6:040x}", {"from": admin}
    ).return_value
    _, draw_epoch, drawn = pool.draw()
    assert drawn == TARGET
    # The engine's period m is epoch draw_epoch + m, ending at epochEnd(draw_epoch) + m x 60.
    start = int(hub.epochEnd(draw_epoch))
    params = _params(settlement, book, hub, start, len(INDEX))
    # The deployed loan terms and window are the tests' deployment's (DeployConfig.for_tests:
    # the demo's short counts, which the path above is drawn for), read from the chain.
    deployed = DeployConfig.for_tests()
    assert (
        params.pledge_bps,
        params.default_arrears_bps,
        params.default_dscr_bps,
        params.default_dscr_epochs,
        params.cure_epochs,
        params.dscr_window_epochs,
    ) == (*deployed.loan_params(), deployed.settlement_dscr_window_epochs)
    assert deployed.loan_params() == (T.PLEDGE_BPS, T.DEFAULT_ARREARS_BPS, T.DEFAULT_DSCR_BPS, 6, 3)
    scenario = Scenario(
        "chain", "", price_index_ppm={H100.name: tuple(round(x * PPM) for x in INDEX)}
    )
    fleet = Fleet.from_nodes(
        [
            NodeInput(
                node_id=node,
                class_name=H100.name,
                gpu_count=GPUS,
                acquisition_cost=COST,
                acquired_at=acquired,
                economic_life_months=H100.economic_life_months,
                residual_value_bps=H100.residual_value_bps,
                debt=Debt(TARGET, POOL_TENOR, RATE_BPS, 0, STAKED_BPS),
                bond=int(registry.bondOf(node)["bonded"]),
                insurance=int(settlement.reserveHeld()),
                utilization_bps=UTILIZATION_BPS,
                price_per_gpu_hour=PRICE0,
            ),
            NodeInput(
                node_id=other,
                class_name=H100.name,
                gpu_count=OTHER_GPUS,
                acquisition_cost=COST,
                acquired_at=acquired,
                economic_life_months=H100.economic_life_months,
                residual_value_bps=H100.residual_value_bps,
                utilization_bps=OTHER_UTILIZATION_BPS,
                price_per_gpu_hour=PRICE0,
            ),
        ]
    )
    p = project(fleet, scenario, params)
    engine = {
        "first_breach": int(p.first_breach[0]),
        "cures": int(p.cures[0]),
        "first_default": int(p.first_default[0]),
        "claim": int(p.claim[0]),
        "waterfall": {k: int(v[0]) for k, v in p.waterfall.items()},
    }
    # The path does exercise every rule: a sweep, a cure, a default every class pays for.
    assert engine["first_breach"] == 1 and engine["cures"] == 1 and engine["first_default"] > 7
    assert all(engine["waterfall"][tier] > 0 for tier in WATERFALL_TIERS)

    fund(payer, 10**6 * USD, settlement)
    # Terms set in an epoch bill from the next one: each epoch's price is set the epoch before.
    for row, n in enumerate((node, other)):
        settlement.approveUsage(n, max(int(v) for v in p.price[0]), {"from": payer})
        settlement.setUsageTerms(n, payer, int(p.price[row, 0]), {"from": admin})
    end_epoch(hub)  # the draw's own epoch owes nothing: it is left unsettled
    transitions: list[tuple[int, int, int]] = []
    chain_default = 0
    losses: dict[str, int] = {}
    claim = other_reserve = 0
    for m in range(1, len(INDEX) + 1):
        milli = {}
        for row, n in enumerate((node, other)):
            util = int(p.utilization[row, m - 1])
            if m < len(INDEX):  # the next epoch's price, from the next epoch
                settlement.setUsageTerms(n, payer, int(p.price[row, m]), {"from": admin})
            milli[n] = F.milli_gpu_hours(int(fleet.gpu_count[row]), params.period_seconds, util)
        c = attest(hub, milli)
        assert c.report.epoch == draw_epoch + m
        tx = settlement.settle(c.report.epoch, [item(c, node), item(c, other)], {"from": admin})
        settled = tx.events["NodeSettled"]
        assert [e["usage"] for e in settled] == [int(p.gross[r, m - 1]) for r in (0, 1)], m
        other_reserve += settled[1]["reserve"]
        assert settlement.isFlagged(node) == bool(p.covenant[0, m - 1]), m
        if "LoanStateChanged" in tx.events:
            transitions += [(m, e["from"], e["to"]) for e in tx.events["LoanStateChanged"]]
        if book.defaultDue(node):
            d = book.declareDefault(node, {"from": stranger})
            chain_default = m
            ev = d.events["LoanDefaulted"]
            claim = ev["principal"] + ev["arrears"]
            w = d.events["LossWaterfall"]
            losses = {
                "operator_bond": w["bond"],
                "stakers": w["stakers"],
                "insurance_reserve": w["reserve"],
                "holders": w["holders"],
            }
            break

    chain_sweep = next(m for m, _, to in transitions if to == SWEEP)
    chain_cures = sum(1 for _, fr, to in transitions if (fr, to) == (SWEEP, PERFORMING))
    assert (chain_sweep, chain_cures, chain_default) == (
        engine["first_breach"],
        engine["cures"],
        engine["first_default"],
    )
    assert claim == engine["claim"]
    assert losses == engine["waterfall"]
    # The other node's reserve parts were there for the default (the reserve ran dry).
    assert other_reserve > 0 and losses["holders"] > 0
    assert book.loanOf(node)["state"] == DEFAULTED
