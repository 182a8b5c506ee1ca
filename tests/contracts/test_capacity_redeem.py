"""CapacityToken redemption → attested delivery → settlement, and expiry; a group per function.

Runs on `hourly_capacity`: hourly windows over a hub with 30-minute epochs, so a
window is two attested epochs. Numbers: 32-GPU node (28 GPU-hours per window at
90%), price 2.50, bond 3.00 per GPU-hour offered, penalty 20%.
"""

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain, web3
from eth_abi import encode
from hexbytes import HexBytes

from gpucap.attestation import Cumulative, build_commitment
from tests.contracts.capacity_helpers import (
    BOND_PER_HOUR,
    GRACE,
    HOUR,
    NODE_BOND,
    PENALTY_BPS,
    PRICE,
    attest_window,
    deploy_capacity_token,
    prove_args,
    token_id,
)
from tests.contracts.node_helpers import USD
from tests.oracle.hub_helpers import ORACLE_KEYS, signatures
from tests.support.errors import bytes_arg, err
from tests.support.leaves import test_leaf

GPUS = 32
OFFERED = 20
AMOUNT = 10


@pytest.fixture(scope="module", autouse=True)
def _deploy_before_snapshot(hourly_capacity, fund):
    """Module state exists before fn_isolation's snapshot, so no test reverts it away."""


@pytest.fixture
def cap(hourly_capacity):
    return hourly_capacity


@pytest.fixture
def hub(hourly_hub):
    return hourly_hub


@pytest.fixture
def window():
    """Start of an hourly window one to two hours ahead."""
    return (chain.time() // HOUR + 2) * HOUR


@pytest.fixture
def tid(h100, window):
    return token_id(h100, window)


def bonded_node(registry, register_node, operator, fund, bond=NODE_BOND):
    node_id = register_node(owner=operator, gpu_count=GPUS)
    fund(operator, bond, registry)
    registry.depositBond(node_id, bond, {"from": operator})
    return node_id


@pytest.fixture
def node(registry, register_node, operator, fund):
    return bonded_node(registry, register_node, operator, fund)


@pytest.fixture
def offer_id(cap, node, tid, operator, buyer, fund):
    """Node offers OFFERED hours at PRICE; buyer bought AMOUNT of them."""
    offer = cap.publishOffer(node, tid, OFFERED, PRICE, {"from": operator}).return_value
    fund(buyer, 1_000 * USD, cap)
    cap.buy(offer, AMOUNT, {"from": buyer})
    return offer


@pytest.fixture
def rid(cap, offer_id, node, tid, buyer):
    return cap.redeem(tid, AMOUNT, node, {"from": buyer}).return_value


def balances(stablecoin, *holders):
    return [stablecoin.balanceOf(h) for h in holders]


def evidence(cap, rid, tid, reserved, delivered):
    return web3.keccak(
        encode(
            ["address", "uint256", "uint256", "uint64", "uint64"],
            [cap.address, rid, tid, reserved, delivered],
        )
    )


def deliver_and_prove(cap, hub, node, tid, milli, sender):
    commitments = attest_window(hub, cap, tid, {node: milli})
    cap.proveDelivery(node, tid, *prove_args(commitments, node), {"from": sender})
    return commitments


class TestRedeem:
    def test_burns_reserves_at_the_highest_price_asked_and_moves_its_bond(
        self, cap, registry, node, tid, operator, buyer, fund
    ):
        """Every hour of the id is backed alike (the tokens are fungible): the dearer offer
        raises the id's refund price and bond per hour, tops up the hours already on offer,
        and a reservation takes exactly its hours' bond."""
        cheap = cap.publishOffer(node, tid, 4, PRICE, {"from": operator}).return_value
        locked_cheap = registry.bondOf(node)[1]
        assert locked_cheap == 4 * BOND_PER_HOUR
        tx = cap.publishOffer(node, tid, 4, 2 * PRICE, {"from": operator})
        dear = tx.return_value
        # The 4 cheap hours on offer are topped up from 3.00 to 6.00 of bond per hour.
        assert dict(tx.events["ObligationTermsRaised"]) == {
            "nodeId": node,
            "tokenId": tid,
            "refundPricePerGpuHour": 2 * PRICE,
            "bondPerGpuHour": 2 * BOND_PER_HOUR,
            "bondToppedUp": 4 * BOND_PER_HOUR,
        }
        assert (
            tx.events["OfferPublished"]["bondLocked"] == 4 * 2 * BOND_PER_HOUR + 4 * BOND_PER_HOUR
        )
        assert registry.bondOf(node)[1] == 8 * 2 * BOND_PER_HOUR
        fund(buyer, 1_000 * USD, cap)
        cap.buy(cheap, 4, {"from": buyer})
        cap.buy(dear, 2, {"from": buyer})
        locked_before = registry.bondOf(node)[1]

        tx = cap.redeem(tid, 3, node, {"from": buyer})
        rid = tx.return_value
        assert rid == cap.reservationCount() == 1
        assert dict(tx.events["Redeemed"]) == {
            "reservationId": rid,
            "holder": buyer,
            "nodeId": node,
            "tokenId": tid,
            "amount": 3,
            "pricePerGpuHour": 2 * PRICE,
            "bondLocked": 3 * 2 * BOND_PER_HOUR,
        }
        assert tx.events["TransferSingle"]["to"] == ZERO_ADDRESS
        assert cap.balanceOf(buyer, tid) == 3
        assert list(cap.reservation(rid)) == [
            buyer,
            node,
            tid,
            3,
            2 * PRICE,
            PENALTY_BPS,
            False,
            3 * 2 * BOND_PER_HOUR,
            0,
        ]
        assert list(cap.obligationOf(node, tid)) == [
            3,
            3,
            0,
            0,
            False,
            2 * PRICE,
            2 * BOND_PER_HOUR,
        ]
        assert cap.redeemableFrom(node, tid) == 3
        assert registry.bondOf(node)[1] == locked_before  # the bond moved, it stays locked

        last = cap.redeem(tid, 3, node, {"from": buyer})
        assert last.events["Redeemed"]["bondLocked"] == 3 * 2 * BOND_PER_HOUR
        assert cap.obligationOf(node, tid)[0] == 0
        # Locked: 2 dear hours still on offer + the two reservations, to the unit.
        assert registry.bondOf(node)[1] == (2 + 6) * 2 * BOND_PER_HOUR

    def test_cheaper_offer_is_backed_at_the_ids_bond_per_hour(
        self, cap, registry, node, tid, operator
    ):
        cap.publishOffer(node, tid, 2, PRICE, {"from": operator})
        tx = cap.publishOffer(node, tid, 3, PRICE // 1_000, {"from": operator})
        assert "ObligationTermsRaised" not in tx.events
        assert tx.events["OfferPublished"]["bondLocked"] == 3 * BOND_PER_HOUR
        assert list(cap.obligationOf(node, tid))[5:] == [PRICE, BOND_PER_HOUR]
        assert registry.bondOf(node)[1] == 5 * BOND_PER_HOUR

    def test_jailed_node_still_takes_reservations(
        self, cap, registry, offer_id, node, tid, buyer, admin
    ):
        """Jailing freezes new business, not what the node already sold: refusing its holders
        would let their tokens expire while the operator keeps the price."""
        registry.jail(node, b"\x01" * 32, {"from": admin})
        rid = cap.redeem(tid, 2, node, {"from": buyer}).return_value
        assert cap.reservation(rid)[3] == 2

    def test_exiting_node_reverts(self, cap, registry, register_node, tid, buyer, operator):
        """An exiting node owes nothing (no exit while it does): nothing to reserve on it."""
        quiet = register_node()
        registry.requestExit(quiet, {"from": operator})
        with brownie.reverts(err("CapacityNodeNotActive", quiet, 3)):
            cap.redeem(tid, 1, quiet, {"from": buyer})

    def test_more_than_node_sold_reverts(self, cap, offer_id, node, tid, buyer):
        with brownie.reverts(err("CapacityNotRedeemable", node, tid, AMOUNT, AMOUNT + 1)):
            cap.redeem(tid, AMOUNT + 1, node, {"from": buyer})

    def test_node_that_sold_nothing_reverts(
        self, cap, offer_id, tid, buyer, registry, register_node, operator2, fund
    ):
        other = bonded_node(registry, register_node, operator2, fund)
        with brownie.reverts(err("CapacityNotRedeemable", other, tid, 0, 1)):
            cap.redeem(tid, 1, other, {"from": buyer})

    def test_fungible_tokens_redeem_against_any_seller(
        self, cap, offer_id, node, tid, buyer, stranger, registry, register_node, operator2, fund
    ):
        other = bonded_node(registry, register_node, operator2, fund)
        offer2 = cap.publishOffer(other, tid, 5, PRICE, {"from": operator2}).return_value
        fund(stranger, 100 * USD, cap)
        cap.buy(offer2, 5, {"from": stranger})
        # buyer bought from `node` but may redeem against `other`, up to what `other` sold
        tx = cap.redeem(tid, 5, other, {"from": buyer})
        assert tx.events["Redeemed"]["nodeId"] == other
        with brownie.reverts(err("CapacityNotRedeemable", other, tid, 0, 5)):
            cap.redeem(tid, 5, other, {"from": stranger})
        cap.redeem(tid, 5, node, {"from": stranger})

    def test_without_tokens_reverts(self, cap, offer_id, node, tid, buyer, stranger):
        with brownie.reverts(err("ERC1155InsufficientBalance", stranger, 0, 1, tid)):
            cap.redeem(tid, 1, node, {"from": stranger})

    def test_after_window_start_reverts(self, cap, offer_id, node, tid, window, buyer):
        chain.sleep(window - chain.time() + 1)
        chain.mine()
        assert cap.redeemableFrom(node, tid) == 0
        with brownie.reverts(revert_pattern=rf"CapacityWindowStarted: {window}, \d+"):
            cap.redeem(tid, 1, node, {"from": buyer, "gas_limit": 500_000})

    def test_zero_amount_and_bad_id_revert(self, cap, offer_id, node, window, buyer):
        with brownie.reverts(err("CapacityZeroAmount")):
            cap.redeem(token_id(1, window), 0, node, {"from": buyer})
        with brownie.reverts(err("CapacityInvalidTokenId", window)):
            cap.redeem(window, 1, node, {"from": buyer})


class TestProveDelivery:
    def test_counts_each_epoch_once(self, cap, hub, rid, node, tid, stranger):
        commitments = attest_window(hub, cap, tid, {node: [4_000, 5_000]})
        first, last = cap.windowEpochs(tid)
        assert last == first + 1 == max(commitments)
        # each counted epoch ends inside the window
        assert tid % 2**64 < hub.epochEnd(first) <= hub.epochEnd(last) <= tid % 2**64 + HOUR

        tx = cap.proveDelivery(
            node, tid, *prove_args(commitments, node, [first]), {"from": stranger}
        )
        assert dict(tx.events["DeliveryProven"]) == {
            "nodeId": node,
            "tokenId": tid,
            "epochs": 1,
            "milliGpuHours": 4_000,
            "provenEpochs": 1,
            "deliveredMilliGpuHours": 4_000,
        }
        assert cap.isEpochProven(node, first) and not cap.isEpochProven(node, last)
        with brownie.reverts(err("CapacityEpochAlreadyProven", node, first)):
            cap.proveDelivery(node, tid, *prove_args(commitments, node, [last, first]))
        tx = cap.proveDelivery(node, tid, *prove_args(commitments, node, [last]))
        assert tx.events["DeliveryProven"]["deliveredMilliGpuHours"] == 9_000
        assert list(cap.obligationOf(node, tid))[2:4] == [9_000, 2]

    def test_forged_leaf_reverts(self, cap, hub, rid, node, tid):
        commitments = attest_window(hub, cap, tid, {node: [4_000, 5_000]})
        leaves, proofs = prove_args(commitments, node)
        forged = list(leaves[0])
        forged[10] = 5_000  # milliGpuHours: claim more than attested
        forged[11] = max(forged[11], 5_000)  # cumMilliGpuHours kept in range
        with brownie.reverts(err("OracleInvalidProof", node, forged[1])):
            cap.proveDelivery(node, tid, [forged], proofs[:1])

    def test_other_nodes_leaf_reverts(self, cap, hub, rid, node, tid, register_node):
        other = register_node()
        commitments = attest_window(hub, cap, tid, {node: [1, 1], other: [1, 1]})
        with brownie.reverts(err("CapacityLeafNodeMismatch", node, other)):
            cap.proveDelivery(node, tid, *prove_args(commitments, other))

    def test_token_of_another_class_reverts_and_cannot_void_delivery(
        self, cap, hub, rid, node, tid, window, h100, operator, stranger
    ):
        """Regression: proofs used to be accepted against any class's id for the window, and the
        per-node epoch bitmap then refused them for the node's real obligation, so anyone could
        void a delivery and, after the grace period, have the full refund slashed."""
        commitments = attest_window(hub, cap, tid, {node: [5_000, 5_000]})
        decoy = token_id(h100 + 1, window)
        with brownie.reverts(err("CapacityClassMismatch", h100, h100 + 1)):
            cap.proveDelivery(node, decoy, *prove_args(commitments, node), {"from": stranger})
        cap.proveDelivery(node, tid, *prove_args(commitments, node), {"from": operator})
        chain.sleep(GRACE)
        tx = cap.settleReservation(rid, {"from": stranger})
        assert tx.events["ReservationSettled"]["refund"] == 0

    def test_epoch_outside_window_reverts(self, cap, hub, rid, node, tid):
        commitments = attest_window(hub, cap, tid, {node: [1, 1]})
        first, last = cap.windowEpochs(tid)
        leaves, proofs = prove_args(commitments, node, [first])
        moved = list(leaves[0])
        moved[1] = first - 1
        with brownie.reverts(err("CapacityEpochOutsideWindow", first - 1, first, last)):
            cap.proveDelivery(node, tid, [moved], proofs)

    def test_before_window_end_reverts(self, cap, rid, node, tid, window):
        with brownie.reverts(
            revert_pattern=rf"CapacityWindowNotEnded: {tid}, {window + HOUR}, \d+"
        ):
            cap.proveDelivery(node, tid, [(node, 1, *[0] * 12)], [[]], {"gas_limit": 500_000})

    def test_length_mismatch_reverts(self, cap, node, tid):
        with brownie.reverts(err("CapacityProofLengthMismatch", 0, 0)):
            cap.proveDelivery(node, tid, [], [])
        with brownie.reverts(err("CapacityProofLengthMismatch", 1, 0)):
            cap.proveDelivery(node, tid, [(node, 1, *[0] * 12)], [])

    def test_after_finalization_reverts(self, cap, hub, rid, node, tid, stranger):
        commitments = attest_window(hub, cap, tid, {node: [5_000, 5_000]})
        first, last = cap.windowEpochs(tid)
        cap.proveDelivery(node, tid, *prove_args(commitments, node, [first]))
        chain.sleep(GRACE)
        cap.settleReservation(rid, {"from": stranger})
        with brownie.reverts(err("CapacityDeliveryFinalized", node, tid)):
            cap.proveDelivery(node, tid, *prove_args(commitments, node, [last]))


def range_args(commitments, node: int, first: int, last: int):
    """(first leaf, its proof, last leaf, its proof) arguments of proveDeliveryRange."""
    (a, b), (pa, pb) = prove_args(commitments, node, [first, last])
    return a, pa, b, pb


class TestProveDeliveryRange:
    def test_two_leaves_count_the_whole_range_once(self, cap, hub, rid, node, tid, stranger):
        """The difference of the cumulative counters is the range's delivery, whatever the
        node delivered before the window; the same figure as leaf by leaf."""
        commitments = attest_window(hub, cap, tid, {node: [4_000, 5_000]}, before={node: 77_000})
        first, last = cap.windowEpochs(tid)
        tx = cap.proveDeliveryRange(
            node, tid, *range_args(commitments, node, first, last), {"from": stranger}
        )
        assert dict(tx.events["DeliveryProven"]) == {
            "nodeId": node,
            "tokenId": tid,
            "epochs": 2,
            "milliGpuHours": 9_000,
            "provenEpochs": 2,
            "deliveredMilliGpuHours": 9_000,
        }
        assert cap.isEpochProven(node, first) and cap.isEpochProven(node, last)
        for epochs in ([first], [last]):  # neither epoch counts again, by either form
            with brownie.reverts(err("CapacityEpochAlreadyProven", node, epochs[0])):
                cap.proveDelivery(node, tid, *prove_args(commitments, node, epochs))
        with brownie.reverts(err("CapacityEpochAlreadyProven", node, last)):
            cap.proveDeliveryRange(node, tid, *range_args(commitments, node, last, last))

    def test_composes_with_leaf_by_leaf_proofs(self, cap, hub, rid, node, tid):
        commitments = attest_window(hub, cap, tid, {node: [4_000, 5_000]}, before={node: 10})
        first, last = cap.windowEpochs(tid)
        cap.proveDelivery(node, tid, *prove_args(commitments, node, [first]))
        with brownie.reverts(err("CapacityEpochAlreadyProven", node, first)):
            cap.proveDeliveryRange(node, tid, *range_args(commitments, node, first, last))
        tx = cap.proveDeliveryRange(node, tid, *range_args(commitments, node, last, last))
        assert tx.events["DeliveryProven"]["milliGpuHours"] == 5_000  # one leaf: its own figure
        assert list(cap.obligationOf(node, tid))[2:4] == [9_000, 2]

    def test_refuses_reversed_foreign_forged_and_unchained_leaves(
        self, cap, hub, rid, node, tid, register_node
    ):
        other = register_node()
        commitments = attest_window(
            hub, cap, tid, {node: [4_000, 5_000], other: [1, 1]}, before={other: 50_000}
        )
        first, last = cap.windowEpochs(tid)
        a, pa, b, pb = range_args(commitments, node, first, last)
        with brownie.reverts(err("CapacityRangeReversed", last, first)):
            cap.proveDeliveryRange(node, tid, b, pb, a, pa)
        _, _, y, py = range_args(commitments, other, first, last)
        with brownie.reverts(err("CapacityLeafNodeMismatch", node, other)):
            cap.proveDeliveryRange(node, tid, a, pa, y, py)
        forged = list(b)
        forged[11] += 1_000  # cumMilliGpuHours: claim more than attested
        with brownie.reverts(err("OracleInvalidProof", node, last)):
            cap.proveDeliveryRange(node, tid, a, pa, forged, pb)
        moved = list(a)
        moved[1] = first - 1
        with brownie.reverts(err("CapacityEpochOutsideWindow", first - 1, first, last)):
            cap.proveDeliveryRange(node, tid, moved, pa, b, pb)

    def test_refuses_two_leaves_of_different_chains_of_counters(self, cap, hub, rid, node, tid):
        """Each leaf attested, but the last one's counters do not continue the first's (a
        quorum that lost its base): the difference would be garbage, so the pair is refused."""
        first, last = cap.windowEpochs(tid)
        chain.sleep(max(0, tid % 2**64 + HOUR - chain[-1].timestamp))
        chain.mine()
        leaves = {
            first: test_leaf(node, first, milli_gpu_hours=4_000, base=Cumulative(50_000)),
            last: test_leaf(node, last, milli_gpu_hours=5_000),  # counters restarted at 0
        }
        commitments = {}
        for epoch, leaf in leaves.items():
            c = build_commitment(epoch, [leaf], hub.configVersion())
            hub.attest(c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]))
            commitments[epoch] = c
        with brownie.reverts(err("CapacityCumulativeMismatch", 50_000, 5_000)):
            cap.proveDeliveryRange(node, tid, *range_args(commitments, node, first, last))


class TestSettleReservation:
    def test_full_delivery_unlocks_bond_without_slash(
        self, cap, hub, registry, stablecoin, rid, node, tid, buyer, operator, stranger
    ):
        deliver_and_prove(cap, hub, node, tid, [6_000, 4_000], operator)
        locked = registry.bondOf(node)[1]
        before = balances(stablecoin, buyer, registry, cap, operator)

        tx = cap.settleReservation(rid, {"from": stranger})
        assert dict(tx.events["DeliveryFinalized"]) == {
            "nodeId": node,
            "tokenId": tid,
            "reservedGpuHours": AMOUNT,
            "deliveredMilliGpuHours": 10_000,
            "provenEpochs": 2,
            "windowEpochs": 2,
            "shortfallMilliGpuHours": 0,
        }
        assert dict(tx.events["ReservationSettled"]) == {
            "reservationId": rid,
            "nodeId": node,
            "holder": buyer,
            "shortfallMilliGpuHours": 0,
            "refund": 0,
            "slashed": 0,
            "bondUnlocked": AMOUNT * BOND_PER_HOUR,
        }
        assert "NodeSlashed" not in tx.events and "ShortfallUncovered" not in tx.events
        assert list(registry.bondOf(node)) == [NODE_BOND, locked - AMOUNT * BOND_PER_HOUR]
        assert balances(stablecoin, buyer, registry, cap, operator) == before
        assert cap.reservation(rid)[6] is True and cap.reservation(rid)[7] == 0

    def test_shortfall_refunds_price_times_hours_short_plus_penalty(
        self, cap, hub, registry, stablecoin, rid, node, tid, buyer, operator, stranger
    ):
        deliver_and_prove(cap, hub, node, tid, [3_000, 4_000], operator)  # 3 GPU-hours short
        refund = PRICE * 3 * (10_000 + PENALTY_BPS) // 10_000
        assert refund == 9 * USD
        holders = (buyer, registry, cap, operator)
        before = balances(stablecoin, *holders)
        total = sum(before)
        locked = registry.bondOf(node)[1]

        tx = cap.settleReservation(rid, {"from": stranger})
        settled = tx.events["ReservationSettled"]
        assert (settled["shortfallMilliGpuHours"], settled["refund"], settled["slashed"]) == (
            3_000,
            refund,
            refund,
        )
        slash = tx.events["NodeSlashed"]
        assert (slash["nodeId"], slash["amount"], slash["recipient"]) == (node, refund, buyer)
        assert HexBytes(slash["evidence"]) == evidence(cap, rid, tid, AMOUNT, 7_000)
        after = balances(stablecoin, *holders)
        assert after[0] == before[0] + refund
        assert after[1] == before[1] - refund
        assert after[2:] == before[2:]
        assert sum(after) == total  # conservation to the unit
        assert list(registry.bondOf(node)) == [NODE_BOND - refund, locked - AMOUNT * BOND_PER_HOUR]
        assert cap.uncoveredShortfall(node) == 0

    def test_shortfall_is_shared_pro_rata(
        self, cap, hub, stablecoin, offer_id, node, tid, buyer, stranger, fund
    ):
        fund(stranger, 100 * USD, cap)
        cap.buy(offer_id, 10, {"from": stranger})
        r1 = cap.redeem(tid, 6, node, {"from": buyer}).return_value
        r2 = cap.redeem(tid, 10, node, {"from": stranger}).return_value
        deliver_and_prove(cap, hub, node, tid, [7_000, 5_000], buyer)  # 4 of 16 short
        refunds = []
        for rid, who in ((r1, buyer), (r2, stranger)):
            before = stablecoin.balanceOf(who)
            tx = cap.settleReservation(rid, {"from": buyer})
            refunds.append(stablecoin.balanceOf(who) - before)
            assert tx.events["ReservationSettled"]["refund"] == refunds[-1]
        assert refunds == [PRICE * 6 * 4 * 12 // (16 * 10), PRICE * 10 * 4 * 12 // (16 * 10)]
        assert sum(refunds) == PRICE * 4 * 12 // 10

    def test_bond_exhausted_records_uncovered(
        self, cap, hub, registry, stablecoin, tid, buyer, operator, admin, register_node, fund
    ):
        cap.setShortfallPenalty(5_000, {"from": admin})
        node = bonded_node(registry, register_node, operator, fund, bond=OFFERED * BOND_PER_HOUR)
        offer = cap.publishOffer(node, tid, OFFERED, PRICE, {"from": operator}).return_value
        fund(buyer, 1_000 * USD, cap)
        cap.buy(offer, OFFERED, {"from": buyer})
        rid = cap.redeem(tid, OFFERED, node, {"from": buyer}).return_value
        attest_window(hub, cap, tid, {node: [0, 0]})
        chain.sleep(GRACE)  # nothing to prove: settle after the grace period
        refund = PRICE * OFFERED * 15_000 // 10_000  # 75 USD > the 60 USD bond
        before = balances(stablecoin, buyer, registry, cap)

        tx = cap.settleReservation(rid, {"from": buyer})
        bond = OFFERED * BOND_PER_HOUR
        settled = tx.events["ReservationSettled"]
        assert (settled["refund"], settled["slashed"], settled["bondUnlocked"]) == (
            refund,
            bond,
            bond,
        )
        assert dict(tx.events["ShortfallUncovered"]) == {
            "reservationId": rid,
            "nodeId": node,
            "holder": buyer,
            "uncovered": refund - bond,
        }
        assert cap.uncoveredShortfall(node) == refund - bond
        assert cap.reservation(rid)[8] == refund - bond
        after = balances(stablecoin, buyer, registry, cap)
        assert (after[0] - before[0], before[1] - after[1], after[2]) == (bond, bond, before[2])
        assert list(registry.bondOf(node)) == [0, 0]

    def test_twice_reverts(self, cap, hub, rid, node, tid, operator):
        deliver_and_prove(cap, hub, node, tid, [5_000, 5_000], operator)
        cap.settleReservation(rid)
        with brownie.reverts(err("CapacityReservationSettled", rid)):
            cap.settleReservation(rid)

    def test_waits_for_proofs_until_grace_ends(self, cap, hub, rid, node, tid, window, stranger):
        commitments = attest_window(hub, cap, tid, {node: [5_000, 5_000]})
        first, _ = cap.windowEpochs(tid)
        cap.proveDelivery(node, tid, *prove_args(commitments, node, [first]))
        grace_end = window + HOUR + GRACE
        with brownie.reverts(err("CapacitySettlementTooEarly", 1, 2, grace_end)):
            cap.settleReservation(rid, {"from": stranger})
        chain.sleep(grace_end - chain[-1].timestamp)
        tx = cap.settleReservation(rid, {"from": stranger})  # the unproven epoch counts as zero
        assert tx.events["ReservationSettled"]["refund"] == PRICE * 5 * 12 // 10
        assert tx.events["DeliveryFinalized"]["provenEpochs"] == 1

    def test_before_window_end_reverts(self, cap, rid, tid, window):
        with brownie.reverts(
            revert_pattern=rf"CapacityWindowNotEnded: {tid}, {window + HOUR}, \d+"
        ):
            cap.settleReservation(rid, {"gas_limit": 500_000})

    def test_unknown_reservation_reverts(self, cap):
        with brownie.reverts(err("CapacityUnknownReservation", 7)):
            cap.settleReservation(7)
        with brownie.reverts(err("CapacityUnknownReservation", 7)):
            cap.reservation(7)


class TestReleaseExpired:
    def test_releases_unredeemed_bond_and_leaves_tokens_inert(
        self, cap, registry, offer_id, node, tid, window, buyer, stranger
    ):
        cap.redeem(tid, 4, node, {"from": buyer})
        chain.sleep(window - chain.time() + 1)
        locked = registry.bondOf(node)[1]
        tx = cap.releaseExpired(node, tid, {"from": stranger})
        assert dict(tx.events["CapacityExpired"]) == {
            "nodeId": node,
            "tokenId": tid,
            "amount": 6,
            "bondUnlocked": 6 * BOND_PER_HOUR,
        }
        assert tx.events["BondUnlocked"]["amount"] == 6 * BOND_PER_HOUR
        assert registry.bondOf(node)[1] == locked - 6 * BOND_PER_HOUR
        assert cap.balanceOf(buyer, tid) == 6  # inert record: no longer redeemable
        assert cap.redeemableFrom(node, tid) == 0
        with brownie.reverts(err("CapacityNothingToRelease", node, tid)):
            cap.releaseExpired(node, tid)

    def test_before_window_start_reverts(self, cap, offer_id, node, tid, window):
        with brownie.reverts(err("CapacityWindowNotStarted", tid, window)):
            cap.releaseExpired(node, tid)


class TestConfiguration:
    def test_set_shortfall_penalty(self, cap, admin, stranger):
        tx = cap.setShortfallPenalty(10_000, {"from": admin})
        assert tx.events["ShortfallPenaltySet"]["shortfallPenaltyBps"] == 10_000
        assert cap.shortfallPenaltyBps() == 10_000
        with brownie.reverts(err("CapacityInvalidConfig", 10_001)):
            cap.setShortfallPenalty(10_001, {"from": admin})
        role = bytes_arg(cap.DEFAULT_ADMIN_ROLE())
        with brownie.reverts(err("AccessControlUnauthorizedAccount", stranger, role)):
            cap.setShortfallPenalty(0, {"from": stranger})

    def test_window_must_be_whole_epochs(self, admin, registry, stablecoin, forwarder, system):
        from brownie import OracleHub

        from tests.oracle.hub_helpers import ORACLE_KEYS, address_of

        hub = OracleHub.deploy(
            admin,
            registry,
            chain[-1].timestamp,
            420,
            [address_of(ORACLE_KEYS[0])],
            1,
            {"from": admin},
        )
        with brownie.reverts(err("CapacityWindowNotEpochAligned", HOUR, 420)):
            deploy_capacity_token(admin, registry, hub, stablecoin, forwarder, HOUR)

    def test_grace_is_bounded(self, admin, registry, stablecoin, forwarder, hub):
        too_long = 30 * 24 * HOUR + 1
        with brownie.reverts(err("CapacityInvalidConfig", too_long)):
            deploy_capacity_token(
                admin, registry, hub, stablecoin, forwarder, HOUR, grace_seconds=too_long
            )

    def test_wiring(self, system, cap, hub, registry):
        assert cap.oracleHub() == hub
        assert cap.settlementGraceSeconds() == GRACE
        assert cap.shortfallPenaltyBps() == PENALTY_BPS
        deployed = system.capacity
        assert deployed.oracleHub() == system.oracle_hub
        assert registry.hasRole(registry.BOND_LOCKER_ROLE(), deployed)
        # Refunds are paid from the reservation's own lock (settleLock): no slasher role.
        assert not registry.hasRole(registry.SLASHER_ROLE(), deployed)
