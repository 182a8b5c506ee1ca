"""The loan of a node's pool on-chain: the pledge at draw, cash sweep while a covenant is
breached and its cure, default (arrears or a run of low DSCR), acceleration, the loss
waterfall (bond → stakers → reserve → holders) to the unit, recovery from later revenue,
and drawRaise's re-check of the raise cap and the node's flags."""

from __future__ import annotations

import brownie
import pytest
from brownie import web3
from brownie.exceptions import VirtualMachineError

from tests.contracts.capacity_helpers import NODE_BOND
from tests.contracts.node_helpers import USD
from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TARGET,
    PRICE_PER_GPU_HOUR,
    SLASHER_ROLE,
    attest,
    deploy_hub_pool,
    expected_split,
    item,
    open_pool,
)
from tests.oracle.hub_helpers import end_epoch
from tests.support.errors import err

PERFORMING, SWEEP, DEFAULTED = 0, 1, 2
# pledgeBps, defaultArrearsBps, defaultDscrBps, defaultDscrEpochs, cureEpochs
DEFAULTS = (5_000, 1_000, 10_000, 6, 3)


@pytest.fixture
def node(registry, register_node, operator, fund, settlement, hub, admin, payer):
    node_id = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node_id, NODE_BOND, {"from": operator})
    fund(payer, 1_000_000 * USD, settlement)
    settlement.setUsageTerms(node_id, payer, PRICE_PER_GPU_HOUR, {"from": admin})
    settlement.approveUsage(node_id, PRICE_PER_GPU_HOUR, {"from": payer})
    end_epoch(hub)  # terms bill from the epoch after they were set
    return node_id


@pytest.fixture
def pool(settlement, hub, stablecoin, fund, admin, operator, staker, node):
    return open_pool(settlement, hub, stablecoin, fund, admin, operator, staker, node)


def settle(settlement, hub, node, milli, admin):
    c = attest(hub, {node: milli})
    return settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})


def past_draw(settlement, hub, node, admin):
    """Settles the draw's own epoch (no service due yet; it takes the pledge) without
    revenue, so the DSCR window holds only what the test settles next."""
    settle(settlement, hub, node, 0, admin)


def settled(tx):
    return tx.events["NodeSettled"][0]


class TestLoanParams:
    def test_defaults_setter_and_bounds(self, settlement, loans, admin, stranger):
        assert tuple(loans.loanParams()) == DEFAULTS
        tx = loans.setLoanParams((1_000, 500, 11_000, 4, 2), {"from": admin})
        assert tuple(tx.events["LoanParamsSet"].values()) == (1_000, 500, 11_000, 4, 2)
        assert tuple(loans.loanParams()) == (1_000, 500, 11_000, 4, 2)
        for bad in (
            (10_001, 500, 11_000, 4, 2),
            (1_000, 0, 11_000, 4, 2),
            (1_000, 10_001, 11_000, 4, 2),
            (1_000, 500, 50_001, 4, 2),
            (1_000, 500, 11_000, 0, 2),
            (1_000, 500, 11_000, 721, 2),
            (1_000, 500, 11_000, 4, 0),
            (1_000, 500, 11_000, 4, 721),
        ):
            with brownie.reverts(err("LoanInvalidParams", bad)):
                loans.setLoanParams(bad, {"from": admin})
        with brownie.reverts():
            loans.setLoanParams(DEFAULTS, {"from": stranger})


class TestPledge:
    def test_first_settlement_after_draw_pledges_half_the_bond(
        self, settlement, loans, registry, hub, node, pool, admin, stranger
    ):
        assert loans.loanOf(node)["pledgeTaken"] is False
        tx = settle(settlement, hub, node, 10_000, admin)
        assert dict(tx.events["BondPledged"]) == {
            "nodeId": node,
            "pool": pool,
            "amount": NODE_BOND // 2,
        }
        assert registry.bondOf(node)["locked"] == NODE_BOND // 2
        assert loans.loanOf(node)["pledged"] == NODE_BOND // 2
        with brownie.reverts(err("LoanNoPledge", node)):
            loans.pledgeBond(node, {"from": stranger})
        # Owed: the pledge stays, and the node cannot leave.
        with brownie.reverts(err("LoanPledgeHeld", node)):
            loans.releasePledge(node, {"from": stranger})
        assert loans.hasOpenObligations(node)

    def test_anyone_pledges_right_after_the_draw(
        self, settlement, loans, registry, node, pool, stranger
    ):
        tx = loans.pledgeBond(node, {"from": stranger})
        assert tx.events["BondPledged"]["amount"] == NODE_BOND // 2
        assert registry.bondOf(node)["locked"] == NODE_BOND // 2

    def test_no_pledge_without_a_drawn_pool(self, settlement, loans, node, stranger):
        with brownie.reverts(err("LoanNoPledge", node)):
            loans.pledgeBond(node, {"from": stranger})

    def test_pledge_released_once_repaid(self, settlement, loans, registry, hub, node, pool, admin):
        for _ in range(13):  # tenor 12: every instalment paid from ample revenue
            settle(settlement, hub, node, 10_000, admin)
        assert not loans.hasOpenObligations(node)
        tx = loans.releasePledge(node, {"from": admin})
        assert dict(tx.events["PledgeReleased"]) == {"nodeId": node, "amount": NODE_BOND // 2}
        assert registry.bondOf(node)["locked"] == 0
        with brownie.reverts(err("LoanPledgeHeld", node)):
            loans.releasePledge(node, {"from": admin})


class TestCashSweep:
    def test_breach_sweeps_the_operator_share_until_cured(
        self, settlement, loans, hub, node, pool, admin
    ):
        past_draw(settlement, hub, node, admin)
        # 100 milli-GPU-hours: gross 100 USD, net 62 USD under ~101 USD of service: flagged.
        tx = settle(settlement, hub, node, 100, admin)
        ev = tx.events["LoanStateChanged"]
        assert (ev["nodeId"], ev["from"], ev["to"]) == (node, PERFORMING, SWEEP)
        arrears = settlement.nodeRisk(node)["arrears"]
        # Swept: the operator's share services the debt where net falls short.
        c = attest(hub, {node: 100})
        epoch = c.report.epoch
        service = sum(pool.debtServiceDue(epoch))
        tx = settlement.settle(epoch, [item(c, node)], {"from": admin})
        plain = expected_split(100 * USD, 0, service, arrears, pool_live=True)
        s = settled(tx)
        assert s["debtPaid"] == plain.debt + plain.operator
        assert s["operatorShare"] == 0 and s["stakers"] == 0
        assert settlement.nodeRisk(node)["arrears"] == plain.arrears - plain.operator
        # Cure: three clean settlements in a row (ample revenue clears the DSCR window).
        states = []
        for _ in range(3):
            tx = settle(settlement, hub, node, 50_000, admin)
            states.append(loans.loanOf(node)["state"])
            assert settled(tx)["operatorShare"] > 0 or settled(tx)["debtPaid"] > 0
        assert states == [SWEEP, SWEEP, PERFORMING]
        ev = tx.events["LoanStateChanged"]
        assert (ev["from"], ev["to"]) == (SWEEP, PERFORMING)
        assert loans.loanOf(node)["cleanRun"] == 3

    def test_a_clean_range_of_cure_length_cures_at_once(
        self, settlement, loans, hub, node, pool, admin
    ):
        past_draw(settlement, hub, node, admin)
        settle(settlement, hub, node, 100, admin)
        assert loans.loanOf(node)["state"] == SWEEP
        # Ample revenue over a range of 3 epochs: one settlement, a clean run of 3 epochs.
        for _ in range(2):
            attest(hub, {node: 50_000})
        tx = settle(settlement, hub, node, 50_000, admin)
        assert settled(tx)["epoch"] - settled(tx)["fromEpoch"] + 1 == 3
        assert not settlement.isFlagged(node)
        ev = tx.events["LoanStateChanged"]
        assert (ev["from"], ev["to"]) == (SWEEP, PERFORMING)
        assert loans.loanOf(node)["cleanRun"] == 3


class TestDefault:
    def test_not_before_its_condition(self, settlement, loans, hub, node, pool, admin, stranger):
        past_draw(settlement, hub, node, admin)
        settle(settlement, hub, node, 0, admin)  # one epoch unpaid: ~101 USD < 120 USD
        arrears = settlement.nodeRisk(node)["arrears"]
        assert 0 < arrears <= POOL_TARGET // 10 and not loans.defaultDue(node)
        with brownie.reverts(err("LoanNoDefault", node, SWEEP)):
            loans.declareDefault(node, {"from": stranger})

    def test_low_dscr_run_defaults(self, settlement, loans, hub, node, pool, admin, stranger):
        loans.setLoanParams((5_000, 10_000, 10_000, 2, 3), {"from": admin})
        past_draw(settlement, hub, node, admin)
        settle(settlement, hub, node, 100, admin)
        assert loans.loanOf(node)["lowDscrRun"] == 1 and not loans.defaultDue(node)
        settle(settlement, hub, node, 100, admin)
        assert loans.loanOf(node)["lowDscrRun"] == 2 and loans.defaultDue(node)
        tx = loans.declareDefault(node, {"from": stranger})
        assert tx.events["LoanStateChanged"]["to"] == DEFAULTED

    def test_a_range_adds_its_epochs_to_the_low_dscr_run(
        self, settlement, loans, hub, node, pool, admin, stranger
    ):
        """Runs count epochs, not settlements: one settlement of 3 low-DSCR epochs meets a
        run of 3 (the keeper's cadence does not delay a default)."""
        loans.setLoanParams((5_000, 10_000, 10_000, 3, 3), {"from": admin})
        past_draw(settlement, hub, node, admin)
        for _ in range(2):
            attest(hub, {node: 100})
        tx = settle(settlement, hub, node, 100, admin)
        ev = settled(tx)
        assert ev["epoch"] - ev["fromEpoch"] + 1 == 3
        assert loans.loanOf(node)["lowDscrRun"] == 3 and loans.defaultDue(node)
        tx = loans.declareDefault(node, {"from": stranger})
        assert tx.events["LoanStateChanged"]["to"] == DEFAULTED

    def test_waterfall_to_the_unit_then_recovery(
        self,
        settlement,
        loans,
        registry,
        hub,
        stablecoin,
        fund,
        node,
        admin,
        operator,
        staker,
        stranger,
    ):
        """Pledge 5% (500 USD), 300 USD staked of 1_200: every class takes a part."""
        loans.setLoanParams((500, 1_000, 10_000, 6, 3), {"from": admin})
        pool = deploy_hub_pool(hub, stablecoin, operator, admin, node, gate=settlement)
        fund(staker, POOL_TARGET, pool)
        pool.deposit(POOL_TARGET, staker, {"from": staker})
        pool.drawRaise({"from": operator})
        pool.stake(300 * 10**18, {"from": staker})
        pool.grantRole(DISTRIBUTOR_ROLE, settlement, {"from": admin})
        pool.grantRole(SLASHER_ROLE, loans, {"from": admin})
        settlement.setPool(node, pool, {"from": admin})
        settle(settlement, hub, node, 100, admin)
        settle(settlement, hub, node, 0, admin)
        tx = settle(settlement, hub, node, 0, admin)
        epoch = tx.events["NodeSettled"][0]["epoch"]
        assert loans.defaultDue(node)
        arrears = settlement.nodeRisk(node)["arrears"]
        principal = pool.debtOutstanding(epoch)
        claim = principal + arrears
        reserve = settlement.reserveHeld()
        bond = NODE_BOND // 20
        stakers = 300 * USD
        to_reserve = min(reserve, claim - bond - stakers)
        holders = claim - bond - stakers - to_reserve
        assert holders > 0 and to_reserve == reserve > 0
        bonded = registry.bondOf(node)["bonded"]
        pool_cash = stablecoin.balanceOf(pool)
        held = stablecoin.balanceOf(settlement)

        tx = loans.declareDefault(node, {"from": stranger})

        ev = tx.events["LoanDefaulted"]
        assert (ev["nodeId"], ev["epoch"], ev["principal"], ev["arrears"]) == (
            node,
            epoch,
            principal,
            arrears,
        )
        assert dict(tx.events["LossWaterfall"]) == {
            "nodeId": node,
            "bond": bond,
            "stakers": stakers,
            "reserve": to_reserve,
            "holders": holders,
        }
        assert ev["recoveryClaim"] == claim - bond - to_reserve
        assert tx.events["LoanStateChanged"]["to"] == DEFAULTED
        assert tx.events["BondLockSettled"]["slashed"] == bond
        # Cash to the unit: the seized bond left the registry, bond + reserve reached the pool,
        # the settlement holds exactly the reserve less.
        assert registry.bondOf(node)["bonded"] == bonded - bond
        assert registry.bondOf(node)["locked"] == 0
        assert stablecoin.balanceOf(pool) == pool_cash + bond + to_reserve
        assert stablecoin.balanceOf(settlement) == held - to_reserve
        assert settlement.reserveHeld() == reserve - to_reserve
        assert pool.totals()["lossAssets"] == stakers and pool.totals()["stakedShares"] == 0
        assert settlement.nodeRisk(node)["arrears"] == 0
        assert not loans.defaultDue(node)
        with brownie.reverts(err("LoanNoDefault", node, DEFAULTED)):
            loans.declareDefault(node, {"from": stranger})

        # Recovery: later revenue (net, then the operator's share) repays the claim, no schedule.
        owed = claim - bond - to_reserve
        recovered = 0
        while owed:
            s = settled(settle(settlement, hub, node, 1_000, admin))  # gross 1_000 USD
            net = 1_000 * USD * (10_000 - 500 - 300 - 3_000) // 10_000
            paid = min(owed, net + 300 * USD)
            assert s["debtPaid"] == paid
            assert s["stakers"] == max(net - paid, 0)
            assert s["operatorShare"] == 300 * USD - max(paid - net, 0)
            owed -= paid
            recovered += paid
            assert loans.loanOf(node)["recoveryClaim"] == owed
            assert loans.hasOpenObligations(node) == (owed > 0)
        assert loans.loanOf(node)["recovered"] == recovered
        assert settlement.nodeRisk(node)["arrears"] == 0


class TestDrawRechecks:
    def test_draw_refused_while_the_node_is_flagged(
        self, settlement, hub, stablecoin, fund, node, pool, admin, operator, staker
    ):
        second = deploy_hub_pool(hub, stablecoin, operator, admin, node, gate=settlement)
        fund(staker, POOL_TARGET, second)
        second.deposit(POOL_TARGET, staker, {"from": staker})
        past_draw(settlement, hub, node, admin)
        settle(settlement, hub, node, 100, admin)  # the first pool's node: flagged
        assert settlement.isFlagged(node)
        with brownie.reverts(err("PoolNodeFlagged", node)):
            second.drawRaise({"from": operator})

    def test_draw_refused_over_the_cap_now(
        self, settlement, hub, stablecoin, fund, node, admin, operator, staker
    ):
        target = settlement.raiseCap(node) // 2  # the cap depreciates block by block
        pool = deploy_hub_pool(
            hub, stablecoin, operator, admin, node, gate=settlement, target=target
        )
        fund(staker, target, pool)
        pool.deposit(target, staker, {"from": staker})
        settlement.setRiskParams(12_500, 1, 0, {"from": admin})  # LTV cap 0.01%
        lowered = settlement.raiseCap(node)
        assert lowered < target
        # The cap is read again at the draw's own block, a second or more later on a busy
        # machine (it depreciates with block time): the draw's figure is at most this one.
        with pytest.raises(VirtualMachineError) as refused:
            pool.drawRaise({"from": operator})
        name, _, figures = refused.value.revert_msg.partition(": ")
        asked, cap_at_draw = (int(x) for x in figures.split(", "))
        assert (name, asked) == ("PoolDrawOverCap", target)
        assert cap_at_draw <= lowered


def test_gas_declare_default(settlement, loans, hub, node, pool, admin, stranger):
    past_draw(settlement, hub, node, admin)
    settle(settlement, hub, node, 0, admin)
    settle(settlement, hub, node, 0, admin)
    tx = loans.declareDefault(node, {"from": stranger})
    print(f"\nGAS declareDefault: {tx.gas_used}")
    assert web3.eth.get_transaction_receipt(tx.txid)["status"] == 1


class TestBoundary:
    """The settlement and its loan book answer each other alone; the loan's events come from
    the PoolLoans address."""

    def test_wiring(self, settlement, loans, registry):
        assert settlement.loans() == loans
        assert loans.settlement() == settlement
        assert loans.registry() == registry
        assert registry.hasRole(registry.BOND_LOCKER_ROLE(), loans)
        assert not registry.hasRole(registry.BOND_LOCKER_ROLE(), settlement)

    def test_book_epoch_answers_the_settlement_only(self, loans, node, pool, stranger):
        with brownie.reverts(err("LoanOnlySettlement", stranger)):
            loans.bookEpoch(node, 1, pool, True, 0, 0, 1, {"from": stranger})

    def test_book_default_answers_the_loans_only(self, settlement, node, admin, stranger):
        for caller in (stranger, admin):  # not even the admin
            with brownie.reverts(err("SettlementOnlyLoans", caller)):
                settlement.bookDefault(node, 1, 0, 0, {"from": caller})

    def test_loan_events_come_from_the_loans(self, settlement, loans, hub, node, pool, admin):
        past_draw(settlement, hub, node, admin)
        tx = settle(settlement, hub, node, 100, admin)
        assert tx.events["LoanStateChanged"]["to"] == SWEEP
        emitters = {
            name: {log["address"] for log in tx.logs if log["topics"][0] == web3.keccak(text=sig)}
            for name, sig in (
                ("LoanStateChanged", "LoanStateChanged(uint256,uint64,uint8,uint8)"),
                (
                    "NodeSettled",
                    "NodeSettled(uint256,uint64,uint64,uint256,uint256,uint256,uint256,"
                    "uint256,uint256,uint256,uint256)",
                ),
            )
        }
        assert emitters == {
            "LoanStateChanged": {loans.address},
            "NodeSettled": {settlement.address},
        }
