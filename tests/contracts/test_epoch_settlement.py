"""EpochSettlement: parameters, the split to the unit, proofs, order, covenant flags, views,
and the attacks (settling twice, forged or foreign leaves, re-entrant stablecoin, a node
whose bond is exhausted). Gas per settled node is printed by test_gas_per_node."""

from __future__ import annotations

from dataclasses import replace

import brownie
import pytest
from brownie import ZERO_ADDRESS, EpochSettlement, ReentrantToken, chain, web3

from tests.contracts.capacity_helpers import DAY, NODE_BOND, PRICE, token_id
from tests.contracts.node_helpers import USD, b32
from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TARGET,
    POOL_TENOR,
    PRICE_PER_GPU_HOUR,
    attest,
    attest_leaves,
    deploy_hub_pool,
    error_data,
    expected_split,
    item,
    leaf_for,
    open_pool,
)
from tests.oracle.hub_helpers import end_epoch
from tests.support.errors import bytes_arg, err
from tests.support.leaves import test_leaf

MAX = 2**256 - 1
SETTLER_ROLE = bytes(web3.keccak(text="SETTLER_ROLE"))
TERMS_ROLE = bytes(web3.keccak(text="TERMS_ROLE"))
TREASURER_ROLE = bytes(web3.keccak(text="TREASURER_ROLE"))


def unauthorized(account, role):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg(role))


@pytest.fixture
def node(registry, register_node, operator, fund, settlement, hub, admin, payer):
    node_id = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node_id, NODE_BOND, {"from": operator})
    fund(payer, 100_000 * USD, settlement)
    settlement.setUsageTerms(node_id, payer, PRICE_PER_GPU_HOUR, {"from": admin})
    # The payer agrees to up to 100x the price (tests raise it to bill more).
    settlement.approveUsage(node_id, PRICE_PER_GPU_HOUR * 100, {"from": payer})
    end_epoch(hub)  # terms set in an epoch bill from the next one
    return node_id


@pytest.fixture
def pool(settlement, hub, stablecoin, fund, admin, operator, staker, node):
    return open_pool(settlement, hub, stablecoin, fund, admin, operator, staker, node)


def split_of(tx):
    ev = tx.events["NodeSettled"]
    return [
        ev[k]
        for k in ("usage", "proceeds", "fee", "reserve", "operatorShare", "debtPaid", "stakers")
    ]


class TestParameters:
    def test_deploy_defaults_and_roles(self, settlement, capacity, admin):
        assert (settlement.protocolFeeBps(), settlement.reserveBps(), settlement.operatorBps()) == (
            500,
            300,
            3_000,
        )
        assert (settlement.covenantDscrBps(), settlement.maxLtvBps(), settlement.curve()) == (
            12_500,
            8_000,
            0,
        )
        assert capacity.hasRole(capacity.PROCEEDS_ROLE(), settlement)
        for role in (SETTLER_ROLE, TERMS_ROLE, TREASURER_ROLE):
            assert settlement.hasRole(role, admin)

    def test_constructor_rejects_bad_window_and_zero_addresses(self, system, admin):
        s = system
        args = (admin, s.stablecoin, s.registry, s.oracle_hub, s.capacity)
        with brownie.reverts(err("SettlementInvalidWindow", 0)):
            EpochSettlement.deploy(*args, 0, {"from": admin})
        with brownie.reverts(err("SettlementInvalidWindow", 721)):
            EpochSettlement.deploy(*args, 721, {"from": admin})
        with brownie.reverts(err("SettlementZeroAddress")):
            EpochSettlement.deploy(ZERO_ADDRESS, *args[1:], 4, {"from": admin})

    def test_set_split_bounds(self, settlement, admin, stranger):
        with brownie.reverts(err("SettlementFeeTooHigh", 2_001, 2_000)):
            settlement.setSplit(2_001, 0, 0, {"from": admin})
        with brownie.reverts(err("SettlementReserveTooHigh", 2_001, 2_000)):
            settlement.setSplit(0, 2_001, 0, {"from": admin})
        with brownie.reverts(err("SettlementSplitOverWhole", 10_001)):
            settlement.setSplit(2_000, 2_000, 6_001, {"from": admin})
        with brownie.reverts(unauthorized(stranger, "0x" + "00" * 32)):
            settlement.setSplit(0, 0, 0, {"from": stranger})
        tx = settlement.setSplit(2_000, 2_000, 6_000, {"from": admin})
        assert list(tx.events["SplitSet"].values()) == [2_000, 2_000, 6_000]
        assert settlement.operatorBps() == 6_000

    def test_set_risk_params_bounds(self, settlement, admin):
        for dscr, ltv in ((9_999, 8_000), (50_001, 8_000), (12_500, 0), (12_500, 10_001)):
            with brownie.reverts(err("SettlementInvalidCovenant", dscr, ltv)):
                settlement.setRiskParams(dscr, ltv, 0, {"from": admin})
        tx = settlement.setRiskParams(10_000, 10_000, 1, {"from": admin})
        assert list(tx.events["RiskParamsSet"].values()) == [10_000, 10_000, 1]
        assert settlement.curve() == 1

    def test_usage_terms_need_a_node_and_the_role(
        self, settlement, hub, admin, stranger, node, payer
    ):
        with brownie.reverts(err("SettlementUnknownNode", 999)):
            settlement.setUsageTerms(999, payer, 1, {"from": admin})
        with brownie.reverts(unauthorized(stranger, TERMS_ROLE)):
            settlement.setUsageTerms(node, payer, 1, {"from": stranger})
        tx = settlement.setUsageTerms(node, payer, 7, {"from": admin})
        # From the next epoch, with the payer's consent (the fixture's) snapshotted.
        from_epoch = hub.currentEpoch() + 1
        assert list(tx.events["UsageTermsSet"].values()) == [
            node,
            payer.address,
            7,
            PRICE_PER_GPU_HOUR * 100,
            from_epoch,
        ]
        assert [*settlement.usageTerms(node)] == [payer.address, 7]

    def test_set_pool_checks_node_gate_schedule_and_once(
        self, settlement, hub, stablecoin, admin, operator, stranger, node, pool, register_node
    ):
        assert settlement.poolOf(node) == pool
        with brownie.reverts(err("SettlementPoolAlreadySet", node, pool)):
            settlement.setPool(node, pool, {"from": admin})
        node2 = register_node()
        wrong_node = deploy_hub_pool(hub, stablecoin, operator, admin, node, gate=settlement)
        with brownie.reverts(err("SettlementPoolNodeMismatch", node2, wrong_node, node)):
            settlement.setPool(node2, wrong_node, {"from": admin})
        # A pool capped by anything but this settlement could have raised past the LTV cap.
        other_gate = deploy_hub_pool(hub, stablecoin, operator, admin, node2, gate=stranger)
        with brownie.reverts(err("SettlementPoolGateMismatch", other_gate, stranger)):
            settlement.setPool(node2, other_gate, {"from": admin})
        from tests.contracts.pool_helpers import Gate, deploy_pool

        # 1-hour epochs from now: not the hub's schedule.
        wrong_schedule = deploy_pool(stablecoin, operator, admin, gate=Gate(settlement, node2))
        with brownie.reverts(err("SettlementPoolMismatch", node2, wrong_schedule)):
            settlement.setPool(node2, wrong_schedule, {"from": admin})
        with brownie.reverts(err("SettlementZeroAddress")):
            settlement.setPool(node2, ZERO_ADDRESS, {"from": admin})
        with brownie.reverts(unauthorized(stranger, "0x" + "00" * 32)):
            settlement.setPool(node2, other_gate, {"from": stranger})
        good = deploy_hub_pool(hub, stablecoin, operator, admin, node2, gate=settlement)
        tx = settlement.setPool(node2, good, {"from": admin})
        assert dict(tx.events["PoolSet"]) == {"nodeId": node2, "pool": good}

    def test_set_pool_refuses_a_pool_another_operator_would_owe(
        self, settlement, hub, stablecoin, admin, operator, stranger, register_node
    ):
        """A pool whose raise a stranger draws is no debt of the node's operator: its bond and
        exit would not answer for it, so the pool is never bound to the node."""
        node2 = register_node()
        foreign = deploy_hub_pool(hub, stablecoin, stranger, admin, node2, gate=settlement)
        with brownie.reverts(
            err("SettlementPoolOperatorMismatch", node2, foreign, stranger, operator)
        ):
            settlement.setPool(node2, foreign, {"from": admin})
        assert settlement.poolOf(node2) == ZERO_ADDRESS

    def test_set_pool_refuses_a_pool_drawn_before_settled_epochs(
        self, settlement, hub, stablecoin, fund, admin, operator, staker, register_node
    ):
        """Epochs settled without the pool paid no service: binding a pool drawn before them
        would let that service vanish, so it is refused."""
        node3 = register_node()
        late = deploy_hub_pool(hub, stablecoin, operator, admin, node3, gate=settlement)
        fund(staker, POOL_TARGET, late)
        late.deposit(POOL_TARGET, staker, {"from": staker})
        late.drawRaise({"from": operator})
        draw_epoch = late.draw()[1]
        for _ in range(2):
            c = attest(hub, {node3: 100})
            settlement.settle(c.report.epoch, [item(c, node3)], {"from": admin})
        last = settlement.lastSettledEpoch(node3)
        assert last > draw_epoch
        with brownie.reverts(err("SettlementPoolServiceMissed", node3, draw_epoch, last)):
            settlement.setPool(node3, late, {"from": admin})


class TestObligations:
    """hasOpenObligations: what NodeRegistry asks before a node exits or withdraws its bond."""

    def test_nothing_owed_without_a_pool(self, settlement, loans, node):
        assert not loans.hasOpenObligations(node)
        assert not loans.hasOpenObligations(999)  # unknown ids answer, never revert

    def test_loan_open_until_every_instalment_is_settled_and_arrears_paid(
        self, settlement, loans, hub, node, pool, admin, payer
    ):
        draw_epoch = pool.draw()[1]
        assert loans.hasOpenObligations(node)  # drawn, nothing repaid
        last = draw_epoch + POOL_TENOR  # the last instalment's epoch
        while hub.currentEpoch() < last:
            end_epoch(hub)
        c = attest(hub, {node: 100})
        assert c.report.epoch == last
        # The schedule ran out in time, not in settlements: still owed.
        assert pool.debtOutstanding(hub.currentEpoch()) == 0
        assert loans.hasOpenObligations(node)
        # One settlement books every instalment; 62 USD of net leaves most in arrears.
        settlement.settle(last, [item(c, node)], {"from": admin})
        assert pool.debtOutstanding(settlement.lastSettledEpoch(node)) == 0
        assert settlement.nodeRisk(node)["arrears"] > 0
        assert loans.hasOpenObligations(node)
        # A rich epoch pays the arrears off: nothing is owed any more.
        settlement.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR * 100, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {node: 100})
        settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        assert settlement.nodeRisk(node)["arrears"] == 0
        assert not loans.hasOpenObligations(node)

    def test_a_round_it_can_still_draw_keeps_the_node_from_exiting(
        self, settlement, loans, registry, hub, stablecoin, fund, node, admin, operator, staker
    ):
        """Wired as deployed: the registry asks the loans before an exit. A succeeded
        round not yet drawn counts (the operator could exit, then draw); so does the loan."""
        assert list(registry.obligationSources()) == [loans]
        pool = deploy_hub_pool(hub, stablecoin, operator, admin, node, gate=settlement)
        pool.grantRole(DISTRIBUTOR_ROLE, settlement, {"from": admin})
        settlement.setPool(node, pool, {"from": admin})
        assert not loans.hasOpenObligations(node)  # still funding: nothing committed
        fund(staker, POOL_TARGET, pool)
        pool.deposit(POOL_TARGET, staker, {"from": staker})
        assert pool.roundStatus() == 2  # Succeeded
        assert loans.hasOpenObligations(node)
        with brownie.reverts(err("RegistryObligationOpen", node, loans)):
            registry.requestExit(node, {"from": operator})
        pool.drawRaise({"from": operator})
        assert loans.hasOpenObligations(node)
        with brownie.reverts(err("RegistryObligationOpen", node, loans)):
            registry.requestExit(node, {"from": operator})


class TestConsent:
    """A node's payer agrees on-chain (approveUsage) before its usage is billed."""

    def test_approve_usage_needs_a_node_and_emits(self, settlement, node, stranger):
        with brownie.reverts(err("SettlementUnknownNode", 999)):
            settlement.approveUsage(999, 1, {"from": stranger})
        tx = settlement.approveUsage(node, 5 * USD, {"from": stranger})
        assert dict(tx.events["UsageApproved"]) == {
            "nodeId": node,
            "payer": stranger,
            "maxPricePerGpuHour": 5 * USD,
        }
        assert settlement.usageConsent(node, stranger) == 5 * USD
        tx = settlement.approveUsage(node, 0, {"from": stranger})  # withdrawn
        assert tx.events["UsageApproved"]["maxPricePerGpuHour"] == 0
        assert settlement.usageConsent(node, stranger) == 0

    def test_a_payer_who_never_agreed_is_not_billed(
        self, settlement, stablecoin, hub, register_node, admin, stranger, fund
    ):
        """TERMS_ROLE names a renter with a standing allowance (for its own nodes) as payer of
        a node it never rented: the allowance is not consent, nothing is pulled."""
        other = register_node()
        fund(stranger, 1_000 * USD, settlement)
        settlement.setUsageTerms(other, stranger, PRICE_PER_GPU_HOUR, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {other: 100})
        e = c.report.epoch
        tx = settlement.settle(e, [item(c, other)], {"from": admin})
        assert dict(tx.events["UsageNotBilled"]) == {
            "nodeId": other,
            "epoch": e,
            "payer": stranger,
            "pricePerGpuHour": PRICE_PER_GPU_HOUR,
            "maxPricePerGpuHour": 0,
        }
        assert tx.events["NodeSettled"]["usage"] == 0
        assert settlement.lastSettledEpoch(other) == e  # settled, usage unbilled
        assert stablecoin.balanceOf(stranger) == 1_000 * USD
        assert settlement.totalIn() == 0
        # Once it agrees, the next epoch is billed.
        settlement.approveUsage(other, PRICE_PER_GPU_HOUR, {"from": stranger})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {other: 100})
        tx = settlement.settle(c.report.epoch, [item(c, other)], {"from": admin})
        assert "UsageNotBilled" not in tx.events
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        assert tx.events["NodeSettled"]["usage"] == usage
        assert stablecoin.balanceOf(stranger) == 1_000 * USD - usage

    def test_a_price_above_the_agreed_maximum_is_not_billed(
        self, settlement, stablecoin, hub, node, admin, payer
    ):
        limit = PRICE_PER_GPU_HOUR * 100  # what the fixture's payer agreed to
        settlement.setUsageTerms(node, payer, limit + 1, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        before = stablecoin.balanceOf(payer)
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        ev = tx.events["UsageNotBilled"]
        assert (ev["payer"], ev["pricePerGpuHour"], ev["maxPricePerGpuHour"]) == (
            payer,
            limit + 1,
            limit,
        )
        assert tx.events["NodeSettled"]["usage"] == 0
        assert stablecoin.balanceOf(payer) == before
        # At exactly the maximum it is billed; a lower price needs no new consent.
        for price in (limit, PRICE_PER_GPU_HOUR):
            settlement.setUsageTerms(node, payer, price, {"from": admin})
            end_epoch(hub)
            c = attest(hub, {node: 100})
            tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
            assert "UsageNotBilled" not in tx.events
            assert tx.events["NodeSettled"]["usage"] == price * 100 // 1000

    def test_consent_is_the_payers_own_and_can_be_withdrawn(
        self, settlement, stablecoin, hub, node, admin, payer, stranger, fund
    ):
        # Consent of the old payer does not carry to a new one.
        fund(stranger, 1_000 * USD, settlement)
        settlement.setUsageTerms(node, stranger, PRICE_PER_GPU_HOUR, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        assert tx.events["UsageNotBilled"]["payer"] == stranger
        assert stablecoin.balanceOf(stranger) == 1_000 * USD
        # The payer withdraws its consent: billing stops with the next settlement.
        settlement.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        settlement.approveUsage(node, 0, {"from": payer})
        end_epoch(hub)  # terms bill from the epoch after the change
        before = stablecoin.balanceOf(payer)
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        assert tx.events["UsageNotBilled"]["maxPricePerGpuHour"] == 0
        assert stablecoin.balanceOf(payer) == before


class TestSettle:
    def test_without_pool_the_operator_takes_the_net(
        self, settlement, stablecoin, hub, node, payer, operator, admin
    ):
        c = attest(hub, {node: 100})
        epoch = c.report.epoch
        payer_before = stablecoin.balanceOf(payer)
        tx = settlement.settle(epoch, [item(c, node)], {"from": admin})
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        s = expected_split(usage, 0, 0, 0, pool_live=False)
        assert split_of(tx) == [s.usage, 0, s.fee, s.reserve, s.operator, 0, 0]
        assert s.total() == usage
        assert tx.events["NodeSettled"]["nodeId"] == node
        assert tx.events["NodeSettled"]["epoch"] == epoch
        assert "CovenantStatus" not in tx.events
        assert stablecoin.balanceOf(payer) == payer_before - usage
        assert stablecoin.balanceOf(settlement) == usage
        assert settlement.operatorCredit(operator) == s.operator
        assert (settlement.feesHeld(), settlement.reserveHeld()) == (s.fee, s.reserve)
        assert settlement.operatorCreditsHeld() == s.operator
        assert (settlement.totalIn(), settlement.totalToPools()) == (usage, 0)
        assert settlement.lastSettledEpoch(node) == epoch
        assert not settlement.isFlagged(node)

    def test_pool_gets_debt_service_then_stakers_with_arrears(
        self, settlement, stablecoin, hub, node, pool, admin, payer
    ):
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        c0 = attest(hub, {node: 100})
        e0 = c0.report.epoch
        assert [*pool.debtServiceDue(e0)] == [0, 0]  # drawn in e0: service starts at e0 + 1
        tx = settlement.settle(e0, [item(c0, node)], {"from": admin})
        s0 = expected_split(usage, 0, 0, 0, pool_live=True)
        assert split_of(tx) == [usage, 0, s0.fee, s0.reserve, s0.operator, 0, s0.stakers]
        assert pool.totals()["revenueInAssets"] == s0.stakers

        # e0 + 1: 100 USD principal + interest due, 62 USD net: all of it to debt, rest in arrears.
        c1 = attest(hub, {node: 100})
        service1 = sum(pool.debtServiceDue(e0 + 1))
        tx = settlement.settle(e0 + 1, [item(c1, node)], {"from": admin})
        s1 = expected_split(usage, 0, service1, 0, pool_live=True)
        assert s1.stakers == 0 and s1.arrears > 0
        assert split_of(tx) == [usage, 0, s1.fee, s1.reserve, s1.operator, s1.debt, 0]
        assert settlement.nodeRisk(node)["arrears"] == s1.arrears

        # e0 + 3 at 10x the price (e0 + 2, passed over by the oracles, holds the change):
        # service + arrears paid in full, the rest to the stakers.
        settlement.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR * 10, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c2 = attest(hub, {node: 100})
        assert c2.report.epoch == e0 + 3
        service2 = pool.debtServiceBetween(e0 + 2, e0 + 3)
        tx = settlement.settle(e0 + 3, [item(c2, node)], {"from": admin})
        s2 = expected_split(usage * 10, 0, service2, s1.arrears, pool_live=True)
        assert s2.arrears == 0 and s2.debt == service2 + s1.arrears
        assert split_of(tx) == [usage * 10, 0, s2.fee, s2.reserve, s2.operator, s2.debt, s2.stakers]
        into_pool = s0.stakers + s1.debt + s2.debt + s2.stakers
        assert pool.totals()["revenueInAssets"] == into_pool == settlement.totalToPools()
        assert pool.lastDistributedEpoch() == e0 + 3
        # Every unit: held here (fees + reserve + operator) + sent to the pool == in.
        held = settlement.feesHeld() + settlement.reserveHeld() + settlement.operatorCreditsHeld()
        assert stablecoin.balanceOf(settlement) == held
        assert settlement.totalIn() == held + into_pool == usage * 12

    def test_collects_capacity_proceeds(
        self, settlement, capacity, stablecoin, hub, node, operator, buyer, fund, h100, admin
    ):
        window = (chain.time() // DAY + 3) * DAY
        offer = capacity.publishOffer(node, token_id(h100, window), 100, PRICE, {"from": operator})
        fund(buyer, 10 * PRICE, capacity)
        capacity.buy(offer.return_value, 10, {"from": buyer})
        proceeds = capacity.heldProceeds(node)
        assert proceeds == 10 * PRICE
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        s = expected_split(usage, proceeds, 0, 0, pool_live=False)
        assert split_of(tx) == [usage, proceeds, s.fee, s.reserve, s.operator, 0, 0]
        assert capacity.heldProceeds(node) == 0
        assert tx.events["ProceedsCollected"]["amount"] == proceeds
        assert stablecoin.balanceOf(settlement) == usage + proceeds

    def test_unbilled_node_with_nothing_held_settles_zero(self, settlement, hub, node, admin):
        settlement.setUsageTerms(node, ZERO_ADDRESS, 0, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        assert split_of(tx) == [0] * 7
        assert settlement.lastSettledEpoch(node) == c.report.epoch

    def test_a_payer_who_cannot_pay_skips_its_node_not_the_batch(
        self, settlement, stablecoin, hub, node, register_node, admin, payer, stranger, fund
    ):
        other = register_node()
        settlement.setUsageTerms(other, stranger, PRICE_PER_GPU_HOUR, {"from": admin})
        settlement.approveUsage(other, PRICE_PER_GPU_HOUR, {"from": stranger})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {node: 100, other: 100})
        e = c.report.epoch
        tx = settlement.settle(e, [item(c, other), item(c, node)], {"from": admin})
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        assert tx.return_value == 1
        skipped = tx.events["SettlementItemSkipped"]
        assert len(skipped) == 1
        assert (skipped["nodeId"], skipped["epoch"]) == (other, e)
        assert bytes(skipped["reason"]) == error_data(
            "ERC20InsufficientAllowance(address,uint256,uint256)", settlement, 0, usage
        )
        assert [ev["nodeId"] for ev in tx.events["NodeSettled"]] == [node]
        # The skipped item left nothing behind: only `node`'s settlement is booked.
        assert (settlement.lastSettledEpoch(node), settlement.lastSettledEpoch(other)) == (e, 0)
        assert settlement.totalIn() == usage == stablecoin.balanceOf(settlement)
        s = expected_split(usage, 0, 0, 0, pool_live=False)
        assert (settlement.feesHeld(), settlement.reserveHeld()) == (s.fee, s.reserve)
        assert settlement.operatorCreditsHeld() == s.operator
        assert settlement.nodeRisk(other)["windowEpochs"] == 0
        # Once the payer can pay, the skipped epoch settles.
        fund(stranger, usage, settlement)
        tx = settlement.settle(e, [item(c, other)], {"from": admin})
        assert tx.return_value == 1 and "SettlementItemSkipped" not in tx.events
        assert settlement.lastSettledEpoch(other) == e

    def test_a_batch_whose_every_item_reverts_reverts_as_the_first(
        self, settlement, hub, node, register_node, admin, stranger
    ):
        other = register_node()
        settlement.setUsageTerms(other, stranger, PRICE_PER_GPU_HOUR, {"from": admin})
        settlement.approveUsage(other, PRICE_PER_GPU_HOUR, {"from": stranger})
        end_epoch(hub)  # terms bill from the epoch after the change
        c = attest(hub, {node: 100, other: 100})
        e = c.report.epoch
        leaf, proof = item(c, node)
        forged = ((*leaf[:-1], 133), proof)
        with brownie.reverts(err("OracleInvalidProof", node, e)):
            settlement.settle(e, [forged, item(c, other)], {"from": admin})
        assert settlement.lastSettledEpoch(other) == 0

    def test_settle_item_is_the_contracts_own(self, settlement, hub, node, admin):
        c = attest(hub, {node: 100})
        with brownie.reverts(err("SettlementOnlySelf", admin)):
            settlement.settleItem(c.report.epoch, item(c, node), {"from": admin})
        assert settlement.lastSettledEpoch(node) == 0

    def test_operator_and_treasurer_withdraw(
        self, settlement, stablecoin, hub, node, admin, operator, stranger
    ):
        c = attest(hub, {node: 100})
        settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        credit, fees, reserve = (
            settlement.operatorCredit(operator),
            settlement.feesHeld(),
            settlement.reserveHeld(),
        )
        with brownie.reverts(err("SettlementZeroAmount")):
            settlement.withdrawOperatorShare(stranger, {"from": stranger})
        tx = settlement.withdrawOperatorShare(operator, {"from": operator})
        assert list(tx.events["OperatorWithdrawn"].values()) == [
            operator.address,
            operator.address,
            credit,
        ]
        with brownie.reverts(unauthorized(stranger, TREASURER_ROLE)):
            settlement.withdrawFees(stranger, 1, {"from": stranger})
        with brownie.reverts(err("SettlementInsufficient", fees, fees + 1)):
            settlement.withdrawFees(admin, fees + 1, {"from": admin})
        settlement.withdrawFees(stranger, fees, {"from": admin})
        tx = settlement.withdrawReserve(stranger, reserve, {"from": admin})
        assert list(tx.events["ReserveWithdrawn"].values()) == [stranger.address, reserve]
        assert stablecoin.balanceOf(settlement) == 0
        assert stablecoin.balanceOf(stranger) == fees + reserve


class TestAttacks:
    def test_settling_twice_reverts(self, settlement, hub, node, admin):
        c = attest(hub, {node: 100})
        e = c.report.epoch
        # Twice in one batch: the first settles, the second is skipped (not billed twice).
        tx = settlement.settle(e, [item(c, node), item(c, node)], {"from": admin})
        assert tx.return_value == 1
        assert len(tx.events["NodeSettled"]) == 1
        assert dict(tx.events["SettlementItemSkipped"]) == {
            "nodeId": node,
            "epoch": e,
            "reason": "0x"
            + error_data("SettlementAlreadySettled(uint256,uint64,uint64)", node, e, e).hex(),
        }
        assert settlement.totalIn() == PRICE_PER_GPU_HOUR * 100 // 1000
        with brownie.reverts(err("SettlementAlreadySettled", node, e, e)):
            settlement.settle(e, [item(c, node)], {"from": admin})

    def test_an_earlier_epoch_after_a_later_one_reverts(self, settlement, hub, node, admin):
        c1 = attest(hub, {node: 100})
        c2 = attest(hub, {node: 100})
        e1, e2 = c1.report.epoch, c2.report.epoch
        settlement.settle(e2, [item(c2, node)], {"from": admin})
        with brownie.reverts(err("SettlementAlreadySettled", node, e1, e2)):
            settlement.settle(e1, [item(c1, node)], {"from": admin})

    def test_forged_leaf_reverts(self, settlement, hub, node, admin):
        c = attest(hub, {node: 100})
        leaf, proof = item(c, node)
        forged = (*leaf[:-1], 133)  # more GPU-hours than attested
        with brownie.reverts(err("OracleInvalidProof", node, c.report.epoch)):
            settlement.settle(c.report.epoch, [(forged, proof)], {"from": admin})

    def test_leaf_of_another_node_reverts(self, settlement, hub, node, register_node, admin):
        other = register_node()
        c = attest(hub, {node: 100, other: 50})
        e = c.report.epoch
        leaf, proof = item(c, node)
        # node's figures claimed for `other`, with node's proof
        with brownie.reverts(err("OracleInvalidProof", other, e)):
            settlement.settle(e, [((other, *leaf[1:]), proof)], {"from": admin})
        # other's true leaf with node's proof
        with brownie.reverts(err("OracleInvalidProof", other, e)):
            settlement.settle(e, [(leaf_for(c, other).values(), proof)], {"from": admin})

    def test_leaf_of_another_epoch_reverts(self, settlement, hub, node, admin):
        c1 = attest(hub, {node: 100})
        c2 = attest(hub, {node: 90})
        e1, e2 = c1.report.epoch, c2.report.epoch
        leaf, proof = item(c1, node)
        with brownie.reverts(err("SettlementEpochMismatch", node, e1, e2)):
            settlement.settle(e2, [(leaf, proof)], {"from": admin})
        relabelled = (leaf[0], e2, *leaf[2:])
        with brownie.reverts(err("OracleInvalidProof", node, e2)):
            settlement.settle(e2, [(relabelled, proof)], {"from": admin})
        future = (leaf[0], e2 + 5, *leaf[2:])
        with brownie.reverts(err("OracleInvalidProof", node, e2 + 5)):
            settlement.settle(e2 + 5, [(future, proof)], {"from": admin})

    def test_only_the_settler_settles_and_batches_are_not_empty(
        self, settlement, hub, node, admin, stranger
    ):
        c = attest(hub, {node: 100})
        with brownie.reverts(unauthorized(stranger, SETTLER_ROLE)):
            settlement.settle(c.report.epoch, [item(c, node)], {"from": stranger})
        with brownie.reverts(err("SettlementEmptyBatch")):
            settlement.settle(c.report.epoch, [], {"from": admin})

    def test_reentrant_stablecoin_cannot_reenter(self, system, hub, node, admin, payer):
        token = ReentrantToken.deploy({"from": admin})
        s = EpochSettlement.deploy(
            admin, token, system.registry, hub, system.capacity, 4, {"from": admin}
        )
        s.grantRole(SETTLER_ROLE, admin, {"from": admin})
        s.grantRole(SETTLER_ROLE, token, {"from": admin})  # so re-entry reaches the guard
        s.grantRole(TERMS_ROLE, admin, {"from": admin})
        s.grantRole(TREASURER_ROLE, token, {"from": admin})
        s.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        s.approveUsage(node, PRICE_PER_GPU_HOUR, {"from": payer})
        end_epoch(hub)  # terms bill from the epoch after the change
        token.mint(payer, 10**12, {"from": payer})
        token.approve(s, MAX, {"from": payer})
        c = attest(hub, {node: 100})
        e = c.report.epoch
        token.arm(s, s.settle.encode_input(e, [item(c, node)]), {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            s.settle(e, [item(c, node)], {"from": admin})
        token.arm(s, s.withdrawFees.encode_input(admin, 1), {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            s.settle(e, [item(c, node)], {"from": admin})
        # The per-item entry point answers this contract only, never a re-entering token.
        token.arm(s, s.settleItem.encode_input(e, item(c, node)), {"from": admin})
        with brownie.reverts(err("SettlementOnlySelf", token)):
            s.settle(e, [item(c, node)], {"from": admin})
        token.arm(ZERO_ADDRESS, b"", {"from": admin})
        s.settle(e, [item(c, node)], {"from": admin})
        assert s.lastSettledEpoch(node) == e

    def test_node_whose_bond_is_exhausted_still_settles_exactly(
        self, settlement, registry, stablecoin, hub, node, admin, operator
    ):
        registry.grantRole(registry.SLASHER_ROLE(), admin, {"from": admin})
        registry.slash(node, registry.bondOf(node)[0], admin, b32("evidence"), {"from": admin})
        assert registry.bondOf(node)[0] == 0
        c = attest(hub, {node: 100})
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        usage = PRICE_PER_GPU_HOUR * 100 // 1000
        assert sum(split_of(tx)[2:]) == usage
        risk = settlement.nodeRisk(node)
        assert risk["bonded"] == 0
        assert settlement.operatorCredit(operator) == expected_split(usage, 0, 0, 0, False).operator
        assert stablecoin.balanceOf(settlement) == usage


class TestCovenant:
    def test_dscr_breach_flags_then_cures(self, settlement, hub, node, pool, admin, payer):
        c0 = attest(hub, {node: 100})
        e0 = c0.report.epoch
        settlement.settle(e0, [item(c0, node)], {"from": admin})
        c1 = attest(hub, {node: 100})
        tx = settlement.settle(e0 + 1, [item(c1, node)], {"from": admin})
        risk = settlement.nodeRisk(node)
        net = 2 * (100 * USD - 5 * USD - 3 * USD - 30 * USD)  # two epochs of 62 USD
        service = sum(pool.debtServiceDue(e0 + 1))
        dscr = net * 10_000 // service
        assert dscr < 12_500
        ev = tx.events["CovenantStatus"]
        assert list(ev.values()) == [node, e0 + 1, True, True, False, dscr, ev["ltvBps"]]
        assert settlement.isFlagged(node)
        assert (risk["windowNetRevenue"], risk["windowDebtService"]) == (net, service)
        assert (risk["windowEpochs"], risk["serviceEpochsInWindow"]) == (2, 1)
        assert risk["dscrBps"] == dscr and risk["flagged"] and risk["dscrBreach"]

        settlement.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR * 10, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        c2 = attest(hub, {node: 100})
        tx = settlement.settle(c2.report.epoch, [item(c2, node)], {"from": admin})
        ev = tx.events["CovenantStatus"]
        assert (ev["flagged"], ev["dscrBreach"], ev["ltvBreach"]) == (False, False, False)
        assert not settlement.isFlagged(node)

    def test_dscr_window_drops_old_epochs(
        self, system, hub, node, admin, payer, stablecoin, fund, operator, staker
    ):
        s = EpochSettlement.deploy(
            admin, stablecoin, system.registry, hub, system.capacity, 2, {"from": admin}
        )
        for role in (SETTLER_ROLE, TERMS_ROLE):
            s.grantRole(role, admin, {"from": admin})
        system.capacity.grantRole(system.capacity.PROCEEDS_ROLE(), s, {"from": admin})
        system.registry.grantRole(system.registry.BOND_LOCKER_ROLE(), s.loans(), {"from": admin})
        stablecoin.approve(s, MAX, {"from": payer})
        s.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        end_epoch(hub)  # terms bill from the epoch after the change
        nets = []
        for milli in (100, 50, 20):
            c = attest(hub, {node: milli})
            tx = s.settle(c.report.epoch, [item(c, node)], {"from": admin})
            nets.append(tx.events["NodeSettled"]["usage"])
        risk = s.nodeRisk(node)
        # Split 0/0/0 on a fresh contract: net == usage; window 2 keeps the last two epochs.
        assert risk["windowNetRevenue"] == nets[1] + nets[2]
        assert risk["windowEpochs"] == 2

    def test_ltv_over_cap_flags(
        self, settlement, registry, h100, hub, stablecoin, fund, admin, operator, staker
    ):
        """A pool can only raise up to the cap; the covenant breaks when the value falls or
        the cap is tightened under a debt raised at the old one."""
        tx = registry.registerNode(
            h100, 8, b32("eu"), 10_000 * USD, 1, "0x" + "ab" * 20, {"from": operator}
        )
        cheap = tx.return_value  # bought in 1970: worth its residual, a constant
        cap = settlement.raiseCap(cheap)
        pool = open_pool(
            settlement, hub, stablecoin, fund, admin, operator, staker, cheap, target=cap
        )
        settlement.setRiskParams(12_500, 5_000, 0, {"from": admin})  # the cap tightens to 50%
        c = attest(hub, {cheap: 100})
        tx = settlement.settle(c.report.epoch, [item(c, cheap)], {"from": admin})
        ev = tx.events["CovenantStatus"]
        assert (ev["flagged"], ev["dscrBreach"], ev["ltvBreach"]) == (True, False, True)
        assert 5_000 < ev["ltvBps"] <= 8_000  # raised at 80% of the value, now over 50%
        risk = settlement.nodeRisk(cheap)
        assert risk["ltvBreach"]
        assert risk["debtOutstanding"] == pool.debtOutstanding(hub.currentEpoch()) > 0
        assert risk["collateralValue"] < 10_000 * USD
        assert risk["raiseCap"] == risk["collateralValue"] * 5_000 // 10_000


def _window_settlement(system, hub, admin, payer, stablecoin, window):
    """A fresh EpochSettlement with a DSCR window of `window` epochs and a 0/0/0 split (net ==
    usage), its roles granted as the deployment does."""
    s = EpochSettlement.deploy(
        admin, stablecoin, system.registry, hub, system.capacity, window, {"from": admin}
    )
    for role in (SETTLER_ROLE, TERMS_ROLE):
        s.grantRole(role, admin, {"from": admin})
    system.capacity.grantRole(system.capacity.PROCEEDS_ROLE(), s, {"from": admin})
    system.registry.grantRole(system.registry.BOND_LOCKER_ROLE(), s.loans(), {"from": admin})
    stablecoin.approve(s, MAX, {"from": payer})
    return s


class TestRanges:
    """One settlement covers every epoch since the node's last one: usage from the leaf's
    cumulative counter, the range's debt service in one pool call, one DSCR record."""

    def test_a_range_bills_the_cumulative_difference_and_owes_its_service(
        self, settlement, hub, node, pool, admin, payer, register_node
    ):
        bare = register_node()  # no pool: its range owes nothing
        price = PRICE_PER_GPU_HOUR + 7  # not a multiple of 1000: the floor shows
        settlement.setUsageTerms(node, payer, price, {"from": admin})
        settlement.setUsageTerms(bare, payer, price, {"from": admin})
        settlement.approveUsage(bare, price, {"from": payer})
        c0 = attest(hub, {node: 100, bare: 100})
        e0 = c0.report.epoch  # the draw's epoch: no service
        settlement.settle(e0, [item(c0, node), item(c0, bare)], {"from": admin})
        # Five epochs, one without the pool-less node's leaf (its counter does not move).
        for milli in (333, 1, 0, 77):
            attest(hub, {node: milli, bare: milli})
        attest(hub, {node: 5})
        c5 = attest(hub, {node: 123, bare: 9})
        e5 = c5.report.epoch
        assert e5 == e0 + 6
        tx = settlement.settle(e5, [item(c5, node), item(c5, bare)], {"from": admin})

        ev = {e["nodeId"]: e for e in tx.events["NodeSettled"]}
        milli = leaf_for(c5, node).cum_milli_gpu_hours - leaf_for(c0, node).cum_milli_gpu_hours
        assert milli == 333 + 1 + 0 + 77 + 5 + 123
        usage = price * milli // 1000
        assert (ev[node]["fromEpoch"], ev[node]["epoch"], ev[node]["usage"]) == (e0 + 1, e5, usage)
        bare_milli = 333 + 1 + 0 + 77 + 9
        assert ev[bare]["usage"] == price * bare_milli // 1000
        assert "EpochsSkipped" not in tx.events

        service = sum(sum(pool.debtServiceDue(e)) for e in range(e0 + 1, e5 + 1))
        assert pool.debtServiceBetween(e0 + 1, e5) == service > 0
        assert (ev[node]["serviceAssets"], ev[bare]["serviceAssets"]) == (service, 0)
        s = expected_split(usage, 0, service, 0, pool_live=True)
        assert [
            ev[node][k] for k in ("fee", "reserve", "operatorShare", "debtPaid", "stakers")
        ] == [
            s.fee,
            s.reserve,
            s.operator,
            s.debt,
            s.stakers,
        ]
        risk = settlement.nodeRisk(node)
        assert risk["arrears"] == s.arrears == service - s.debt > 0
        net = usage - s.fee - s.reserve - s.operator
        # e0 is billed at the fixture's price: the new one (set in e0) bills from e0 + 1.
        first = expected_split(PRICE_PER_GPU_HOUR * 100 // 1000, 0, 0, 0, pool_live=True)
        first_net = first.usage - first.fee - first.reserve - first.operator
        # Two records: the first settlement (1 epoch, no service), the range (6, service).
        assert (risk["windowEpochs"], risk["serviceEpochsInWindow"]) == (7, 6)
        assert (risk["windowNetRevenue"], risk["windowDebtService"]) == (first_net + net, service)
        assert risk["dscrBps"] == (first_net + net) * 10_000 // service
        assert risk["lastSettledEpoch"] == e5
        bare_risk = settlement.nodeRisk(bare)
        assert (bare_risk["windowEpochs"], bare_risk["serviceEpochsInWindow"]) == (7, 0)
        assert bare_risk["arrears"] == 0

    def test_the_first_settlement_bills_its_own_epoch_only(self, settlement, hub, node, admin):
        for milli in (500, 400):
            attest(hub, {node: milli})  # attested, never settled: the payer agreed to none
        c = attest(hub, {node: 30})
        assert leaf_for(c, node).cum_milli_gpu_hours >= 930
        tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        ev = tx.events["NodeSettled"]
        assert (ev["fromEpoch"], ev["epoch"]) == (c.report.epoch, c.report.epoch)
        assert ev["usage"] == PRICE_PER_GPU_HOUR * 30 // 1000
        assert settlement.nodeRisk(node)["windowEpochs"] == 1
        # The next range starts from the first leaf's counter.
        c2 = attest(hub, {node: 11})
        tx = settlement.settle(c2.report.epoch, [item(c2, node)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE_PER_GPU_HOUR * 11 // 1000

    def test_a_counter_below_the_settled_one_reverts(self, settlement, hub, node, admin):
        c0 = attest(hub, {node: 100})
        settlement.settle(c0.report.epoch, [item(c0, node)], {"from": admin})
        settled = leaf_for(c0, node).cum_milli_gpu_hours
        assert settled >= 100
        # The counter went back (reset): cum below what was settled.
        e1 = end_epoch(hub)
        reset = test_leaf(node, e1, 10_000, 5_000, 10_000, 180_000, 50)  # cum == 50
        c1 = attest_leaves(hub, e1, [reset])
        expected = err("SettlementCumulativeBelowSettled", node, e1, 50, 50, settled)
        with brownie.reverts(expected):
            settlement.settle(e1, [item(c1, node)], {"from": admin})
        # cum above the settled one, but less than it plus the leaf's own epoch: reverts too.
        e2 = end_epoch(hub)
        short = test_leaf(node, e2, 10_000, 5_000, 10_000, 180_000, 60)
        short = replace(short, cum_milli_gpu_hours=settled + 59)
        c2 = attest_leaves(hub, e2, [short])
        with brownie.reverts(
            err("SettlementCumulativeBelowSettled", node, e2, settled + 59, 60, settled)
        ):
            settlement.settle(e2, [item(c2, node)], {"from": admin})
        assert settlement.lastSettledEpoch(node) == c0.report.epoch
        # Exactly the settled counter plus the epoch's own usage settles, billing that epoch.
        e3 = end_epoch(hub)
        ok = test_leaf(node, e3, 10_000, 5_000, 10_000, 180_000, 60, base=leaf_for(c0, node))
        c3 = attest_leaves(hub, e3, [ok])
        tx = settlement.settle(e3, [item(c3, node)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE_PER_GPU_HOUR * 60 // 1000

    def test_the_window_is_the_fewest_records_covering_it(
        self, system, hub, node, admin, payer, stablecoin, fund, operator, staker
    ):
        """Window of 2 epochs: records of 1, 1, then a range of 3 (counted as 2) evicts both
        older ones; a later 1-epoch record keeps the range (1 alone does not cover 2)."""
        s = _window_settlement(system, hub, admin, payer, stablecoin, 2)
        s.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        s.approveUsage(node, PRICE_PER_GPU_HOUR, {"from": payer})
        pool = open_pool(s, hub, stablecoin, fund, admin, operator, staker, node)
        end_epoch(hub)  # terms bill from the epoch after the change
        nets, epochs = [], []
        for milli in (100, 50):
            c = attest(hub, {node: milli})
            tx = s.settle(c.report.epoch, [item(c, node)], {"from": admin})
            nets.append(tx.events["NodeSettled"]["usage"])
            epochs.append(c.report.epoch)
        risk = s.nodeRisk(node)
        assert (risk["windowEpochs"], risk["windowNetRevenue"]) == (2, nets[0] + nets[1])
        for _ in range(2):
            attest(hub, {node: 10})
        c = attest(hub, {node: 10})
        tx = s.settle(c.report.epoch, [item(c, node)], {"from": admin})
        assert tx.events["NodeSettled"]["fromEpoch"] == epochs[1] + 1
        range_net = tx.events["NodeSettled"]["usage"]  # split 0/0/0: net == usage
        service = pool.debtServiceBetween(epochs[1] + 1, c.report.epoch)
        risk = s.nodeRisk(node)
        assert (risk["windowEpochs"], risk["serviceEpochsInWindow"]) == (2, 2)
        assert (risk["windowNetRevenue"], risk["windowDebtService"]) == (range_net, service)
        c = attest(hub, {node: 20})
        tx = s.settle(c.report.epoch, [item(c, node)], {"from": admin})
        last_net = tx.events["NodeSettled"]["usage"]
        due = sum(pool.debtServiceDue(c.report.epoch))
        risk = s.nodeRisk(node)
        assert (risk["windowEpochs"], risk["serviceEpochsInWindow"]) == (3, 3)
        assert (risk["windowNetRevenue"], risk["windowDebtService"]) == (
            range_net + last_net,
            service + due,
        )
        assert risk["dscrBps"] == (range_net + last_net) * 10_000 // (service + due)

    def test_gas_of_a_settlement_does_not_grow_with_its_range(
        self, settlement, registry, h100, hub, stablecoin, fund, admin, operator, payer
    ):
        """Three nodes with the same history (pool drawn, two settlements), then one settles
        a range of 1 epoch, one of 24 and one of 168, each alone: exact gas from receipts."""
        nodes = _gas_nodes(
            settlement, registry, h100, hub, stablecoin, fund, admin, operator, payer, 3
        )
        for _ in range(2):
            c = attest(hub, dict.fromkeys(nodes, 100))
            settlement.settle(c.report.epoch, [item(c, n) for n in nodes], {"from": admin})
        gas = {}
        done = 0  # epochs attested since the warm-up
        for node, k in zip(nodes, (1, 24, 168), strict=True):
            for _ in range(k - done):
                c = attest(hub, dict.fromkeys(nodes, 100))
            done = k
            tx = settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
            ev = tx.events["NodeSettled"]
            assert ev["epoch"] - ev["fromEpoch"] + 1 == k
            assert ev["usage"] == PRICE_PER_GPU_HOUR * 100 * k // 1000
            gas[k] = tx.gas_used
        print(
            f"\nGAS settle 1 node, range of 1 / 24 / 168 epochs: {gas[1]} / {gas[24]} / {gas[168]}"
        )
        # Flat once the range covers the window: 168 epochs cost what 24 do, give or take the
        # pool's exact range sum (RevenuePool.debtServiceBetween, a floor sum: O(log k)).
        assert abs(gas[168] - gas[24]) < 4_000
        # From 1 to 24 epochs: the pool's range sum (~5.5k more), the two older records the
        # range evicts from the window (~2.2k each, each record evicted once: amortised) and the
        # pools' own distribution bookkeeping; a per-epoch cost would be >= 24 x 2.1k.
        assert gas[24] - gas[1] < 15_000


def _gas_nodes(
    settlement, registry, h100, hub, stablecoin, fund, admin, operator, payer, count, tenor=720
):
    """`count` nodes, each with a drawn, staked pool (repaid over `tenor` epochs: 100 milli-
    GPU-hours an epoch cover its service, so no range changes a covenant) and a billed payer."""
    nodes = []
    for i in range(count):
        tx = registry.registerNode(
            h100,
            8,
            b32("eu"),
            250_000 * USD,
            1_700_000_000,
            f"0x{0xCAFE00 + i:040x}",
            {"from": operator},
        )
        nodes.append(tx.return_value)
    fund(payer, 100_000_000 * USD, settlement)
    for i, n in enumerate(nodes):
        settlement.setUsageTerms(n, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        settlement.approveUsage(n, PRICE_PER_GPU_HOUR, {"from": payer})
        open_pool(
            settlement,
            hub,
            stablecoin,
            fund,
            admin,
            operator,
            web3.eth.accounts[10 + i % 8],
            n,
            tenor=tenor,
        )
    end_epoch(hub)  # terms bill from the epoch after they were set
    return nodes


def test_gas_per_node(settlement, registry, h100, hub, stablecoin, fund, admin, operator, payer):
    """Exact gas of settle for 1 node and for 10 nodes in one batch (each with a drawn,
    staked pool, a billed payer and a DSCR record), each node covering one epoch, then 10
    nodes covering 24 epochs; printed for the report."""
    nodes = _gas_nodes(
        settlement, registry, h100, hub, stablecoin, fund, admin, operator, payer, 11
    )
    for _ in range(2):  # warm: every node settled once, so slots are non-zero like steady state
        c = attest(hub, dict.fromkeys(nodes, 100))
        settlement.settle(c.report.epoch, [item(c, n) for n in nodes], {"from": admin})
    c = attest(hub, dict.fromkeys(nodes, 100))
    one = settlement.settle(c.report.epoch, [item(c, nodes[0])], {"from": admin}).gas_used
    ten = settlement.settle(c.report.epoch, [item(c, n) for n in nodes[1:]], {"from": admin})
    print(f"\nGAS settle 1 node: {one}; 10 nodes: {ten.gas_used} ({ten.gas_used // 10}/node)")
    assert ten.gas_used < 10 * one  # the batch shares the transaction's base cost
    for _ in range(24):
        c = attest(hub, dict.fromkeys(nodes, 100))
    ranged = settlement.settle(c.report.epoch, [item(c, n) for n in nodes[1:]], {"from": admin})
    assert len(ranged.events["NodeSettled"]) == 10
    print(f"GAS settle 10 nodes, 24 epochs each: {ranged.gas_used} ({ranged.gas_used // 10}/node)")
    assert ranged.gas_used - ten.gas_used < 10 * 15_000  # as the single node's (above)


class TestRiskGates:
    """The settlement is the CapacityToken's risk gate (deploy) and every pool's (immutable)."""

    @pytest.fixture
    def cheap(self, registry, h100, operator):
        """1_000 USD of GPUs bought in 1970: past their life, worth exactly the residual, so
        the cap does not move between blocks; a 1_200 USD raise breaks the LTV cap."""
        tx = registry.registerNode(
            h100, 8, b32("eu"), 1_000 * USD, 1, "0x" + "cd" * 20, {"from": operator}
        )
        return tx.return_value

    def test_flagged_node_cannot_publish_offers(
        self, settlement, capacity, hub, stablecoin, fund, admin, operator, staker, cheap, h100
    ):
        assert capacity.riskGate() == settlement
        cap = settlement.raiseCap(cheap)
        open_pool(settlement, hub, stablecoin, fund, admin, operator, staker, cheap, target=cap)
        settlement.setRiskParams(12_500, 5_000, 0, {"from": admin})  # tightened: LTV breach
        c = attest(hub, {cheap: 100})
        settlement.settle(c.report.epoch, [item(c, cheap)], {"from": admin})
        assert settlement.isFlagged(cheap)
        window = (chain.time() // DAY + 3) * DAY
        with brownie.reverts(err("CapacityNodeFlagged", cheap)):
            capacity.publishOffer(cheap, token_id(h100, window), 1, PRICE, {"from": operator})
        assert settlement.raiseCap(cheap) == 0  # flagged: no further financing either

    def test_pool_cannot_raise_beyond_the_ltv_cap(
        self,
        settlement,
        registry,
        h100,
        hub,
        stablecoin,
        fund,
        admin,
        operator,
        staker,
        stranger,
        cheap,
    ):
        pool = deploy_hub_pool(hub, stablecoin, operator, admin, cheap, gate=settlement)
        assert pool.riskGate() == settlement  # immutable, set at construction
        residual_bps = registry.gpuClass(h100)["residualValueBps"]
        cap = settlement.raiseCap(cheap)
        assert cap == (1_000 * USD * residual_bps // 10_000) * 8_000 // 10_000 > 0
        fund(staker, 1_200 * USD, pool)
        with brownie.reverts(err("PoolRaiseCapExceeded", cap + 1, 0, cap)):
            pool.deposit(cap + 1, staker, {"from": staker})
        pool.deposit(cap, staker, {"from": staker})
        with brownie.reverts(err("PoolRaiseCapExceeded", 1, cap, cap)):
            pool.deposit(1, staker, {"from": staker})
        assert pool.totals()["raisedAssets"] == cap

    def test_capacity_gate_is_admin_only_and_can_be_cleared(
        self, settlement, capacity, admin, stranger
    ):
        with brownie.reverts(unauthorized(stranger, "0x" + "00" * 32)):
            capacity.setRiskGate(ZERO_ADDRESS, {"from": stranger})
        tx = capacity.setRiskGate(ZERO_ADDRESS, {"from": admin})
        assert tx.events["RiskGateSet"]["gate"] == ZERO_ADDRESS
        assert capacity.riskGate() == ZERO_ADDRESS
