"""CapacityToken payouts under attack: delivery proofs that must not count (forged, another
node's, another epoch's or window's, unattested, attested on another hub, out of range),
settlement that must not pay twice, expiry combined with settlement, and a re-entrant
stablecoin on every payout (settlement refund, collectProceeds); plus the gas of the
redemption path (run with -s to see the figures)."""

from types import SimpleNamespace

import brownie
import pytest
from brownie import ZERO_ADDRESS, NodeRegistry, OracleHub, ReentrantToken, chain

from gpucap.attestation import build_commitment
from tests.contracts.capacity_helpers import (
    BOND_PER_HOUR,
    GRACE,
    HOUR,
    PRICE,
    attest_window,
    deploy_capacity_token,
    leaf_of,
    prove_args,
    token_id,
)
from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, USD, b32
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of
from tests.support.errors import err
from tests.support.leaves import test_leaf

CEILINGS = {"redeem": 170_000, "proveDelivery (2 epochs)": 110_000, "settle (shortfall)": 110_000}


def _market(admin, forwarder, token):
    registry = NodeRegistry.deploy(admin, token, forwarder, 3600, {"from": admin})
    class_id = registry.registerGpuClass(
        b32("H100-SXM-80GB"), 700, 1_000, 48, 2_000, {"from": admin}
    ).return_value
    oracles = [address_of(key) for key in ORACLE_KEYS]
    hub = OracleHub.deploy(admin, registry, chain[-1].timestamp, 1_800, oracles, 2, {"from": admin})
    cap = deploy_capacity_token(admin, registry, hub, token, forwarder, HOUR)
    registry.grantRole(registry.BOND_LOCKER_ROLE(), cap, {"from": admin})
    return registry, hub, cap, class_id


def test_reentrant_stablecoin_cannot_reenter_from_the_refund(admin, forwarder, operator, buyer):
    token = ReentrantToken.deploy({"from": admin})
    registry, hub, cap, class_id = _market(admin, forwarder, token)
    node = registry.registerNode(
        class_id,
        32,
        b32("eu-west"),
        ACQUISITION_COST,
        ACQUIRED_AT,
        "0x" + "cd" * 20,
        {"from": operator},
    ).return_value
    for who, spender in ((operator, registry), (buyer, cap)):
        token.mint(who, 1_000 * USD, {"from": admin})
        token.approve(spender, 2**256 - 1, {"from": who})
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(class_id, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 10, PRICE, {"from": operator}).return_value
    cap.buy(offer, 10, {"from": buyer})
    rid = cap.redeem(tid, 5, node, {"from": buyer}).return_value
    attest_window(hub, cap, tid, {node: [0, 0]})
    chain.sleep(GRACE)

    # The refund transfer (registry.settleLock → token → holder) calls back into the market,
    # trying a state change that would otherwise succeed (5 unredeemed hours can expire).
    token.arm(cap, cap.releaseExpired.encode_input(node, tid), {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        cap.settleReservation(rid, {"from": buyer})

    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    before = token.balanceOf(buyer)
    tx = cap.settleReservation(rid, {"from": buyer})
    assert token.balanceOf(buyer) - before == tx.events["ReservationSettled"]["refund"] == 15 * USD
    cap.releaseExpired(node, tid, {"from": buyer})


def test_gas(hourly_capacity, hourly_hub, registry, register_node, h100, operator, buyer, fund):
    cap, hub = hourly_capacity, hourly_hub
    node = register_node(gpu_count=32)
    fund(operator, 1_000 * USD, registry)
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(h100, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 20, PRICE, {"from": operator}).return_value
    fund(buyer, 1_000 * USD, cap)
    cap.buy(offer, 20, {"from": buyer})
    gas = {}
    tx = cap.redeem(tid, 10, node, {"from": buyer})
    gas["redeem"] = tx.gas_used
    gas["redeem (repeat)"] = cap.redeem(tid, 10, node, {"from": buyer}).gas_used
    commitments = attest_window(hub, cap, tid, {node: [3_000, 4_000]})
    proof = cap.proveDelivery(node, tid, *prove_args(commitments, node), {"from": operator})
    gas["proveDelivery (2 epochs)"] = proof.gas_used
    gas["settle (shortfall, first: finalizes)"] = cap.settleReservation(tx.return_value).gas_used
    gas["settle (shortfall)"] = cap.settleReservation(tx.return_value + 1).gas_used
    print("\nGAS " + ", ".join(f"{k}={v}" for k, v in gas.items()))
    for name, ceiling in CEILINGS.items():
        assert gas[name] <= ceiling, (name, gas[name])


# ---------------------------------------------------------------------------
# Delivery proofs that must not count, settlement that must not pay twice,
# and expiry combined with settlement (hourly market: a window is two epochs).
# ---------------------------------------------------------------------------


@pytest.fixture
def market(hourly_capacity, hourly_hub, registry, register_node, h100, operator, buyer, fund):
    """A 32-GPU node that sold 10 of `tid` (window one to two hours ahead) to `buyer`, who
    redeemed 4 of them (reservation `rid`); `other` is a second registered node."""
    cap, hub = hourly_capacity, hourly_hub
    node = register_node(gpu_count=32)
    other = register_node(gpu_count=32)
    fund(operator, 1_000 * USD, registry)
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(h100, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 10, PRICE, {"from": operator}).return_value
    fund(buyer, 1_000 * USD, cap)
    cap.buy(offer, 10, {"from": buyer})
    rid = cap.redeem(tid, 4, node, {"from": buyer}).return_value
    return SimpleNamespace(cap=cap, hub=hub, node=node, other=other, tid=tid, rid=rid)


def _nothing_counted(m):
    first, last = m.cap.windowEpochs(m.tid)
    assert not m.cap.isEpochProven(m.node, first) and not m.cap.isEpochProven(m.node, last)
    assert list(m.cap.obligationOf(m.node, m.tid))[2:4] == [0, 0]


class TestProveDeliveryAttacks:
    def test_other_nodes_leaf_relabelled_as_ours_reverts(self, market):
        m = market
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [0, 0], m.other: [9_000, 9_000]})
        first, _ = m.cap.windowEpochs(m.tid)
        leaves, proofs = prove_args(commitments, m.other, [first])
        stolen = list(leaves[0])
        stolen[0] = m.node  # the other node's delivery, claimed for ours
        with brownie.reverts(err("OracleInvalidProof", m.node, first)):
            m.cap.proveDelivery(m.node, m.tid, [stolen], proofs)
        _nothing_counted(m)

    def test_leaf_relabelled_to_another_epoch_reverts_whole_batch(self, market):
        m = market
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [8_000, 0]})
        first, last = m.cap.windowEpochs(m.tid)
        leaves, proofs = prove_args(commitments, m.node, [first, first])
        moved = list(leaves[1])
        moved[1] = last  # the good epoch's figures claimed a second time as the bad epoch
        with brownie.reverts(err("OracleInvalidProof", m.node, last)):
            m.cap.proveDelivery(m.node, m.tid, [leaves[0], moved], proofs)
        _nothing_counted(m)  # the valid first leaf was not counted either

    def test_attested_leaf_of_the_next_window_reverts(self, market):
        m = market
        attest_window(m.hub, m.cap, m.tid, {m.node: [4_000, 4_000]})
        following = m.tid + HOUR
        later = attest_window(m.hub, m.cap, following, {m.node: [16_000, 16_000]})
        first, last = m.cap.windowEpochs(m.tid)
        leaves, proofs = prove_args(later, m.node)
        with brownie.reverts(err("CapacityEpochOutsideWindow", last + 1, first, last)):
            m.cap.proveDelivery(m.node, m.tid, leaves, proofs)
        _nothing_counted(m)

    def test_leaf_of_an_unattested_epoch_reverts(self, market):
        m = market
        chain.sleep(m.tid % 2**64 + HOUR - chain[-1].timestamp)
        chain.mine()
        first, _ = m.cap.windowEpochs(m.tid)
        assert m.hub.lastAttestedEpoch() < first
        # A well-formed tree and proof the oracles never signed: no root on chain to match.
        unsigned = build_commitment(
            first, [test_leaf(m.node, first, 10_000, 5_000, 10_000, 3_600_000, 16_000)], 1
        )
        leaf = leaf_of(unsigned, m.node).values()
        with brownie.reverts(err("OracleInvalidProof", m.node, first)):
            m.cap.proveDelivery(m.node, m.tid, [leaf], [unsigned.proof(m.node)])
        _nothing_counted(m)

    def test_leaf_attested_on_another_hub_reverts(self, market, admin, registry):
        """The same oracles attesting on another OracleHub (another contract) prove nothing here."""
        m = market
        twin = OracleHub.deploy(
            admin,
            registry,
            m.hub.genesisTimestamp(),
            m.hub.epochLengthSeconds(),
            [address_of(k) for k in ORACLE_KEYS],
            2,
            {"from": admin},
        )
        elsewhere = attest_window(twin, m.cap, m.tid, {m.node: [16_000, 16_000]})
        first, _ = m.cap.windowEpochs(m.tid)
        with brownie.reverts(err("OracleInvalidProof", m.node, first)):
            m.cap.proveDelivery(m.node, m.tid, *prove_args(elsewhere, m.node))
        _nothing_counted(m)

    def test_out_of_range_leaf_reverts(self, market):
        m = market
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [4_000, 4_000]})
        first, _ = m.cap.windowEpochs(m.tid)
        leaves, proofs = prove_args(commitments, m.node, [first])
        inflated = list(leaves[0])
        inflated[10] = m.hub.maxNodeMilliGpuHours() + 1  # milliGpuHours
        with brownie.reverts(err("OracleLeafOutOfRange", m.node, first)):
            m.cap.proveDelivery(m.node, m.tid, [inflated], proofs)
        _nothing_counted(m)


class TestSettlementAttacks:
    def test_shortfall_refund_is_paid_once(self, market, stablecoin, buyer, stranger):
        m = market
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [1_000, 1_000]})
        m.cap.proveDelivery(m.node, m.tid, *prove_args(commitments, m.node))
        before = stablecoin.balanceOf(buyer)
        tx = m.cap.settleReservation(m.rid, {"from": stranger})
        refund = PRICE * 2 * 12_000 // 10_000  # 2 of 4 GPU-hours short, +20%
        assert tx.events["ReservationSettled"]["refund"] == refund
        with brownie.reverts(err("CapacityReservationSettled", m.rid)):
            m.cap.settleReservation(m.rid, {"from": buyer})
        assert stablecoin.balanceOf(buyer) == before + refund

    def test_release_then_settle(self, market, registry, stablecoin, buyer, stranger):
        """Expiring the 6 unredeemed hours neither touches the reservation's bond nor its refund."""
        m = market
        locked = registry.bondOf(m.node)[1]
        assert locked == 10 * BOND_PER_HOUR
        chain.sleep(m.tid % 2**64 - chain[-1].timestamp)
        chain.mine()
        tx = m.cap.releaseExpired(m.node, m.tid, {"from": stranger})
        assert tx.events["CapacityExpired"]["bondUnlocked"] == 6 * BOND_PER_HOUR
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [0, 1_000]})
        m.cap.proveDelivery(m.node, m.tid, *prove_args(commitments, m.node))
        before = stablecoin.balanceOf(buyer)
        tx = m.cap.settleReservation(m.rid, {"from": stranger})
        refund = PRICE * 3 * 12_000 // 10_000  # reserved 4, delivered 1
        settled = tx.events["ReservationSettled"]
        assert (settled["refund"], settled["slashed"], settled["bondUnlocked"]) == (
            refund,
            refund,
            4 * BOND_PER_HOUR,
        )
        assert stablecoin.balanceOf(buyer) == before + refund
        assert list(registry.bondOf(m.node)) == [1_000 * USD - refund, 0]
        with brownie.reverts(err("CapacityNothingToRelease", m.node, m.tid)):
            m.cap.releaseExpired(m.node, m.tid)

    def test_settle_then_release(self, market, registry, stranger):
        m = market
        commitments = attest_window(m.hub, m.cap, m.tid, {m.node: [2_000, 2_000]})
        m.cap.proveDelivery(m.node, m.tid, *prove_args(commitments, m.node))
        tx = m.cap.settleReservation(m.rid, {"from": stranger})
        assert tx.events["ReservationSettled"]["bondUnlocked"] == 4 * BOND_PER_HOUR
        tx = m.cap.releaseExpired(m.node, m.tid, {"from": stranger})
        assert (
            tx.events["CapacityExpired"]["amount"],
            tx.events["CapacityExpired"]["bondUnlocked"],
        ) == (
            6,
            6 * BOND_PER_HOUR,
        )
        assert list(registry.bondOf(m.node)) == [1_000 * USD, 0]


def _evil_market(admin, forwarder, operator, buyer):
    """A market paying in ReentrantToken: 10 GPU-hours sold, 5 redeemed (reservation 1)."""
    token = ReentrantToken.deploy({"from": admin})
    registry, hub, cap, class_id = _market(admin, forwarder, token)
    node = registry.registerNode(
        class_id,
        32,
        b32("eu-west"),
        ACQUISITION_COST,
        ACQUIRED_AT,
        "0x" + "ce" * 20,
        {"from": operator},
    ).return_value
    for who, spender in ((operator, registry), (buyer, cap)):
        token.mint(who, 1_000 * USD, {"from": admin})
        token.approve(spender, 2**256 - 1, {"from": who})
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(class_id, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 10, PRICE, {"from": operator}).return_value
    cap.buy(offer, 10, {"from": buyer})
    return SimpleNamespace(token=token, registry=registry, hub=hub, cap=cap, node=node, tid=tid)


def test_reentrant_stablecoin_cannot_collect_twice(admin, forwarder, operator, buyer, stranger):
    """collectProceeds' payout calls back into collectProceeds (the token holds PROCEEDS_ROLE,
    so the inner call alone would succeed): the guard stops it and nothing moves."""
    m = _evil_market(admin, forwarder, operator, buyer)
    cap, token = m.cap, m.token
    cap.grantRole(cap.PROCEEDS_ROLE(), token, {"from": admin})
    held = cap.heldProceeds(m.node)
    assert held == 10 * PRICE
    collect = cap.collectProceeds.encode_input(m.node, held // 2, stranger)
    token.arm(cap, collect, {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        token.execute(cap, collect, {"from": admin})
    assert cap.heldProceeds(m.node) == cap.totalHeldProceeds() == token.balanceOf(cap) == held
    assert token.balanceOf(stranger) == 0

    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    token.execute(cap, collect, {"from": admin})  # the same call, not re-entered, pays once
    assert token.balanceOf(stranger) == held // 2
    assert cap.heldProceeds(m.node) == token.balanceOf(cap) == held - held // 2


def test_reentrant_stablecoin_cannot_settle_another_reservation_from_the_refund(
    admin, forwarder, operator, buyer
):
    m = _evil_market(admin, forwarder, operator, buyer)
    cap, token = m.cap, m.token
    first = cap.redeem(m.tid, 5, m.node, {"from": buyer}).return_value
    second = cap.redeem(m.tid, 5, m.node, {"from": buyer}).return_value
    attest_window(m.hub, cap, m.tid, {m.node: [0, 0]})
    chain.sleep(GRACE)
    token.arm(cap, cap.settleReservation.encode_input(second), {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        cap.settleReservation(first, {"from": buyer})
    assert not cap.reservation(first)[6] and not cap.reservation(second)[6]

    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    before = token.balanceOf(buyer)
    for rid in (first, second):
        cap.settleReservation(rid, {"from": buyer})
    assert token.balanceOf(buyer) - before == 2 * PRICE * 5 * 12_000 // 10_000
