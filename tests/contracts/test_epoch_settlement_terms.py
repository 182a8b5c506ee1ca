"""EpochSettlement's billing terms as a function of the epoch: every change (setUsageTerms, or
approveUsage by the node's newest payer) bills from the epoch after it (fromEpoch), and a
settlement never crosses one — a range holding a change after usage reverts
SettlementTermsChangeInRange, so each piece is billed under its own terms. Exempt: a stretch
before the change the oracles passed over, and a range with no usage before its own epoch."""

from __future__ import annotations

import brownie
import pytest
from brownie import ZERO_ADDRESS

from tests.contracts.capacity_helpers import NODE_BOND
from tests.contracts.node_helpers import USD
from tests.contracts.settlement_helpers import (
    PRICE_PER_GPU_HOUR,
    attest,
    error_data,
    item,
    leaf_for,
)
from tests.oracle.hub_helpers import end_epoch
from tests.support.errors import err

PRICE = PRICE_PER_GPU_HOUR


def _changes(settlement, node) -> list[tuple]:
    """termsChanges(node) as (payer, price, maxPrice, fromEpoch) tuples."""
    return [tuple(c)[:4] for c in settlement.termsChanges(node)]


def _range_usage(c_from, c_to, node, price) -> int:
    """What (c_from's epoch, c_to's epoch] bills at `price`."""
    milli = leaf_for(c_to, node).cum_milli_gpu_hours - leaf_for(c_from, node).cum_milli_gpu_hours
    return price * milli // 1000


@pytest.fixture
def bare(registry, register_node, operator, fund):
    """A bonded node with no terms yet."""
    node_id = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node_id, NODE_BOND, {"from": operator})
    return node_id


@pytest.fixture
def billed(bare, settlement, hub, fund, admin, payer):
    """`bare` billed to `payer` at PRICE (consent 10x), in force from the next epoch, and its
    first settlement done; returns (node, the first settlement's commitment)."""
    fund(payer, 1_000_000 * USD, settlement)
    settlement.approveUsage(bare, PRICE * 10, {"from": payer})
    settlement.setUsageTerms(bare, payer, PRICE, {"from": admin})
    end_epoch(hub)
    c0 = attest(hub, {bare: 100})
    settlement.settle(c0.report.epoch, [item(c0, bare)], {"from": admin})
    return bare, c0


class TestTermsLog:
    def test_a_change_takes_effect_from_the_next_epoch_and_snapshots_consent(
        self, settlement, hub, bare, admin, payer
    ):
        settlement.approveUsage(bare, 3 * USD, {"from": payer})  # not its payer yet: no entry
        assert _changes(settlement, bare) == [(ZERO_ADDRESS, 0, 0, 0)]
        tx = settlement.setUsageTerms(bare, payer, 2 * USD, {"from": admin})
        from_epoch = hub.currentEpoch() + 1
        assert dict(tx.events["UsageTermsSet"]) == {
            "nodeId": bare,
            "payer": payer,
            "pricePerGpuHour": 2 * USD,
            "maxPricePerGpuHour": 3 * USD,
            "fromEpoch": from_epoch,
        }
        assert _changes(settlement, bare) == [
            (ZERO_ADDRESS, 0, 0, 0),
            (payer, 2 * USD, 3 * USD, from_epoch),
        ]
        assert tuple(settlement.usageTerms(bare)) == (payer, 2 * USD)

    def test_a_change_in_the_same_epoch_overwrites_the_newest_entry(
        self, settlement, hub, bare, admin, payer, stranger
    ):
        settlement.setUsageTerms(bare, stranger, 1 * USD, {"from": admin})
        settlement.setUsageTerms(bare, payer, 2 * USD, {"from": admin})
        # The payer's consent in the same epoch: the same entry again, consent updated.
        tx = settlement.approveUsage(bare, 5 * USD, {"from": payer})
        from_epoch = hub.currentEpoch() + 1
        assert tx.events["UsageTermsSet"]["fromEpoch"] == from_epoch
        assert tx.events["UsageTermsSet"]["maxPricePerGpuHour"] == 5 * USD
        assert _changes(settlement, bare) == [
            (ZERO_ADDRESS, 0, 0, 0),
            (payer, 2 * USD, 5 * USD, from_epoch),
        ]
        end_epoch(hub)
        settlement.setUsageTerms(bare, payer, 4 * USD, {"from": admin})  # a later epoch: new
        assert [c[3] for c in _changes(settlement, bare)] == [0, from_epoch, from_epoch + 1]

    def test_consent_of_an_address_that_is_not_the_payer_writes_no_entry(
        self, settlement, bare, admin, payer, stranger
    ):
        settlement.setUsageTerms(bare, payer, 2 * USD, {"from": admin})
        before = _changes(settlement, bare)
        tx = settlement.approveUsage(bare, 9 * USD, {"from": stranger})
        assert "UsageTermsSet" not in tx.events
        assert tx.events["UsageApproved"]["payer"] == stranger
        assert _changes(settlement, bare) == before
        assert settlement.usageConsent(bare, stranger) == 9 * USD

    def test_spent_entries_leave_the_view(self, settlement, hub, billed, admin, payer):
        node, c0 = billed
        # The first settlement spent entry 0 (no terms): the head is the payer's entry.
        assert _changes(settlement, node) == [(payer, PRICE, PRICE * 10, c0.report.epoch)]


class TestNoSettlementCrossesAChange:
    def test_a_payer_named_mid_range_is_billed_from_its_from_epoch_only(
        self, settlement, stablecoin, hub, bare, admin, payer, fund
    ):
        """The bug this design fixes: the terms in force at settlement billed the whole
        range, so a payer named mid-range paid for hours before it was named."""
        settlement.approveUsage(bare, PRICE, {"from": payer})
        fund(payer, 1_000 * USD, settlement)
        c0 = attest(hub, {bare: 100})
        settlement.settle(c0.report.epoch, [item(c0, bare)], {"from": admin})  # no terms
        attest(hub, {bare: 200})
        tx = settlement.setUsageTerms(bare, payer, PRICE, {"from": admin})  # during e0 + 2
        e0 = c0.report.epoch
        assert tx.events["UsageTermsSet"]["fromEpoch"] == e0 + 3
        c2 = attest(hub, {bare: 300})  # e0 + 2: still under no terms
        c3 = attest(hub, {bare: 400})  # e0 + 3: the payer's first
        with brownie.reverts(err("SettlementTermsChangeInRange", bare, e0 + 3)):
            settlement.settle(e0 + 3, [item(c3, bare)], {"from": admin})
        tx = settlement.settle(e0 + 2, [item(c2, bare)], {"from": admin})
        assert (tx.events["NodeSettled"]["fromEpoch"], tx.events["NodeSettled"]["usage"]) == (
            e0 + 1,
            0,
        )
        before = stablecoin.balanceOf(payer)
        tx = settlement.settle(e0 + 3, [item(c3, bare)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE * 400 // 1000
        assert before - stablecoin.balanceOf(payer) == PRICE * 400 // 1000

    def test_a_price_change_mid_range_is_not_retroactive(
        self, settlement, stablecoin, hub, billed, admin, payer
    ):
        node, c0 = billed
        e0 = c0.report.epoch
        attest(hub, {node: 100})
        settlement.setUsageTerms(node, payer, PRICE * 3, {"from": admin})  # during e0 + 2
        c2 = attest(hub, {node: 50})
        c4 = [attest(hub, {node: 70}), attest(hub, {node: 90})][-1]
        item4 = item(c4, node)
        with brownie.reverts(err("SettlementTermsChangeInRange", node, e0 + 3)):
            settlement.settle(e0 + 4, [item4], {"from": admin})
        before = stablecoin.balanceOf(payer)
        old = settlement.settle(e0 + 2, [item(c2, node)], {"from": admin})
        new = settlement.settle(e0 + 4, [item4], {"from": admin})
        assert old.events["NodeSettled"]["usage"] == _range_usage(c0, c2, node, PRICE)
        assert new.events["NodeSettled"]["usage"] == _range_usage(c2, c4, node, PRICE * 3)
        assert before - stablecoin.balanceOf(payer) == PRICE * 150 // 1000 + PRICE * 3 * 160 // 1000

    def test_consent_withdrawn_mid_range_still_bills_the_epochs_before(
        self, settlement, stablecoin, hub, billed, admin, payer
    ):
        node, c0 = billed
        e0 = c0.report.epoch
        attest(hub, {node: 100})
        tx = settlement.approveUsage(node, 0, {"from": payer})  # during e0 + 2: from e0 + 3
        assert tx.events["UsageTermsSet"]["fromEpoch"] == e0 + 3
        c2 = attest(hub, {node: 40})
        c3 = attest(hub, {node: 500})
        before = stablecoin.balanceOf(payer)
        with brownie.reverts(err("SettlementTermsChangeInRange", node, e0 + 3)):
            settlement.settle(e0 + 3, [item(c3, node)], {"from": admin})
        tx = settlement.settle(e0 + 2, [item(c2, node)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE * 140 // 1000
        tx = settlement.settle(e0 + 3, [item(c3, node)], {"from": admin})
        assert dict(tx.events["UsageNotBilled"]) == {
            "nodeId": node,
            "epoch": e0 + 3,
            "payer": payer,
            "pricePerGpuHour": PRICE,
            "maxPricePerGpuHour": 0,
        }
        assert tx.events["NodeSettled"]["usage"] == 0
        assert before - stablecoin.balanceOf(payer) == PRICE * 140 // 1000

    def test_two_changes_in_one_stretch_settle_in_three_pieces(
        self, settlement, stablecoin, hub, billed, admin, payer
    ):
        node, c0 = billed
        e0 = c0.report.epoch
        c = {e0: c0}
        c[e0 + 1] = attest(hub, {node: 10})
        settlement.setUsageTerms(node, payer, PRICE * 2, {"from": admin})  # from e0 + 3
        c[e0 + 2] = attest(hub, {node: 20})
        c[e0 + 3] = attest(hub, {node: 30})
        settlement.setUsageTerms(node, payer, PRICE * 4, {"from": admin})  # from e0 + 5
        c[e0 + 4] = attest(hub, {node: 40})
        c[e0 + 5] = attest(hub, {node: 50})
        c[e0 + 6] = attest(hub, {node: 60})
        assert [x[3] for x in _changes(settlement, node)] == [e0, e0 + 3, e0 + 5]
        for end, change in ((e0 + 6, e0 + 3), (e0 + 4, e0 + 3)):
            with brownie.reverts(err("SettlementTermsChangeInRange", node, change)):
                settlement.settle(end, [item(c[end], node)], {"from": admin})
        before = stablecoin.balanceOf(payer)
        usage = []
        for end in (e0 + 2, e0 + 4, e0 + 6):
            if end == e0 + 4:
                with brownie.reverts(err("SettlementTermsChangeInRange", node, e0 + 5)):
                    settlement.settle(e0 + 6, [item(c[e0 + 6], node)], {"from": admin})
            tx = settlement.settle(end, [item(c[end], node)], {"from": admin})
            usage.append(tx.events["NodeSettled"]["usage"])
        assert usage == [
            PRICE * 30 // 1000,  # e0+1..e0+2 at PRICE
            PRICE * 2 * 70 // 1000,  # e0+3..e0+4 at 2x
            PRICE * 4 * 110 // 1000,  # e0+5..e0+6 at 4x
        ]
        assert before - stablecoin.balanceOf(payer) == sum(usage)
        assert _changes(settlement, node) == [(payer, PRICE * 4, PRICE * 10, e0 + 5)]

    def test_a_crossing_item_is_skipped_in_a_batch_with_its_reason(
        self, settlement, hub, billed, register_node, admin, payer
    ):
        node, c0 = billed
        other = register_node()
        attest(hub, {node: 10, other: 10})
        settlement.setUsageTerms(node, payer, PRICE * 2, {"from": admin})
        attest(hub, {node: 10, other: 10})
        c = attest(hub, {node: 10, other: 10})
        e = c.report.epoch
        tx = settlement.settle(e, [item(c, node), item(c, other)], {"from": admin})
        assert tx.return_value == 1
        assert bytes(tx.events["SettlementItemSkipped"]["reason"]) == error_data(
            "SettlementTermsChangeInRange(uint256,uint64)", node, e
        )
        assert settlement.lastSettledEpoch(node) == c0.report.epoch


class TestExemptions:
    def test_a_change_after_epochs_the_oracles_passed_over_bills_under_the_new_terms(
        self, settlement, stablecoin, hub, billed, admin, payer
    ):
        node, c0 = billed
        e0 = c0.report.epoch
        settlement.setUsageTerms(node, payer, PRICE * 2, {"from": admin})  # during e0 + 1
        end_epoch(hub)  # e0 + 1: never attested (a hole below an attested epoch is final)
        attest(hub, {node: 30})  # e0 + 2, under 2x
        c3 = attest(hub, {node: 40})
        assert hub.newestAttestedIn(e0 + 1, e0 + 1) == 0
        assert hub.newestAttestedIn(e0, e0 + 3) == e0 + 3
        before = stablecoin.balanceOf(payer)
        tx = settlement.settle(e0 + 3, [item(c3, node)], {"from": admin})
        assert (tx.events["NodeSettled"]["fromEpoch"], tx.events["NodeSettled"]["usage"]) == (
            e0 + 1,
            PRICE * 2 * 70 // 1000,
        )
        assert before - stablecoin.balanceOf(payer) == PRICE * 2 * 70 // 1000

    def test_a_passed_over_stretch_longer_than_the_bound_reverts(
        self, settlement, hub, billed, admin, payer
    ):
        node, c0 = billed
        e0 = c0.report.epoch
        assert settlement.MAX_TERMS_GAP_EPOCHS() == 64
        for _ in range(64):  # e0 + 1 .. e0 + 64 passed over
            end_epoch(hub)
        settlement.setUsageTerms(node, payer, PRICE * 2, {"from": admin})  # from e0 + 66
        end_epoch(hub)  # e0 + 65 passed over too: 65 epochs before the change
        attest(hub, {node: 30})
        c = attest(hub, {node: 30})  # e0 + 67
        with brownie.reverts(err("SettlementTermsChangeInRange", node, e0 + 66)):
            settlement.settle(e0 + 67, [item(c, node)], {"from": admin})

    def test_a_range_without_usage_before_its_own_epoch_bills_under_that_epochs_terms(
        self, settlement, stablecoin, hub, billed, register_node, admin, payer
    ):
        """No leaf (so no usage) before the change: no epoch the range could be split at,
        and nothing to bill under the old terms; the leaf's epoch's terms bill it all."""
        node, c0 = billed
        e0 = c0.report.epoch
        other = register_node()
        attest(hub, {other: 10})  # e0 + 1: attested, the node has no leaf
        settlement.setUsageTerms(node, payer, PRICE * 2, {"from": admin})  # from e0 + 3
        attest(hub, {other: 10})  # e0 + 2
        c3 = attest(hub, {node: 40})  # e0 + 3: the node's first leaf since e0
        assert leaf_for(c3, node).cum_milli_gpu_hours - 40 == leaf_for(c0, node).cum_milli_gpu_hours
        tx = settlement.settle(e0 + 3, [item(c3, node)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE * 2 * 40 // 1000

    def test_a_first_settlement_bills_under_the_terms_of_its_epoch(
        self, settlement, hub, bare, admin, payer, fund
    ):
        fund(payer, 1_000 * USD, settlement)
        settlement.approveUsage(bare, PRICE * 10, {"from": payer})
        settlement.setUsageTerms(bare, payer, PRICE, {"from": admin})
        end_epoch(hub)
        settlement.setUsageTerms(bare, payer, PRICE * 2, {"from": admin})
        end_epoch(hub)
        c = attest(hub, {bare: 100})  # after both changes: the newest bills it
        tx = settlement.settle(c.report.epoch, [item(c, bare)], {"from": admin})
        assert tx.events["NodeSettled"]["usage"] == PRICE * 2 * 100 // 1000
        assert [x[1] for x in _changes(settlement, bare)] == [PRICE * 2]
