"""The operator bond under attack: the three scenarios of the bond audit, end to end on the
hourly market (a window is two oracle epochs), each showing that the attacker gains nothing.

1. A refund larger than its own bond: cheap sales to an accomplice must not dilute an
   honest holder's refund nor take the bond an honest sale brought (either order).
2. A live offer that cannot be cancelled: no slash reaches locked bond, so a cancel
   always unlocks exactly what its offer locked.
3. The bond walks out with reservations outstanding: no exit request nor withdrawal while
   anything is locked or owed; a reservation settles from its own lock in full.
"""

from types import SimpleNamespace

import brownie
import pytest
from brownie import chain

from tests.contracts.capacity_helpers import GRACE, HOUR, PENALTY_BPS, attest_window, token_id
from tests.contracts.node_helpers import USD, b32
from tests.support.errors import err

HONEST_PRICE = 5 * USD
DUST_PRICE = 1  # 0.000001 USD
BOND_PER_HOUR = HONEST_PRICE * 12_000 // 10_000  # coverage 120%: 6 USD per GPU-hour
HONEST_HOURS, DUST_HOURS = 10, 18


def refund_of(price: int, hours: int) -> int:
    """Full shortfall: price x hours x (1 + penalty)."""
    return price * hours * (10_000 + PENALTY_BPS) // 10_000


@pytest.fixture
def m(hourly_capacity, hourly_hub, registry, stablecoin, register_node, h100, operator, fund):
    node = register_node(gpu_count=32)
    fund(operator, 1_000 * USD, registry)
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(h100, (chain.time() // HOUR + 2) * HOUR)
    return SimpleNamespace(
        cap=hourly_capacity, hub=hourly_hub, registry=registry, coin=stablecoin, node=node, tid=tid
    )


def _settle_after_grace(m, *rids, caller):
    """The node delivers nothing; after the grace period every reservation settles."""
    attest_window(m.hub, m.cap, m.tid, {m.node: [0, 0]})
    chain.sleep(GRACE)
    return [m.cap.settleReservation(rid, {"from": caller}) for rid in rids]


class TestCheapSalesCannotTakeAnHonestRefund:
    @pytest.mark.parametrize("honest_redeems_first", [True, False])
    def test_accomplice_gains_nothing_and_the_honest_holder_is_refunded_in_full(
        self, m, fund, operator, buyer, stranger, honest_redeems_first
    ):
        honest, accomplice = buyer, stranger
        fund(honest, 100 * USD, m.cap)
        fund(accomplice, 1 * USD, m.cap)
        dear = m.cap.publishOffer(m.node, m.tid, HONEST_HOURS, HONEST_PRICE, {"from": operator})
        m.cap.buy(dear.return_value, HONEST_HOURS, {"from": honest})
        rids = {}
        if honest_redeems_first:
            rids["honest"] = m.cap.redeem(
                m.tid, HONEST_HOURS, m.node, {"from": honest}
            ).return_value
        # The dust offer must be backed at the id's bond per hour (6 USD), not at its price.
        dust = m.cap.publishOffer(m.node, m.tid, DUST_HOURS, DUST_PRICE, {"from": operator})
        assert dust.events["OfferPublished"]["bondLocked"] == DUST_HOURS * BOND_PER_HOUR
        m.cap.buy(dust.return_value, DUST_HOURS, {"from": accomplice})
        rids["accomplice"] = m.cap.redeem(
            m.tid, DUST_HOURS, m.node, {"from": accomplice}
        ).return_value
        if not honest_redeems_first:
            rids["honest"] = m.cap.redeem(
                m.tid, HONEST_HOURS, m.node, {"from": honest}
            ).return_value
        for who, hours in (("honest", HONEST_HOURS), ("accomplice", DUST_HOURS)):
            r = m.cap.reservation(rids[who])
            assert (r[4], r[7]) == (HONEST_PRICE, hours * BOND_PER_HOUR), who

        coins_before = {
            w: m.coin.balanceOf(a)
            for w, a in (("honest", honest), ("accomplice", accomplice), ("operator", operator))
        }
        bonded_before = m.registry.bondOf(m.node)[0]
        txs = _settle_after_grace(m, rids["honest"], rids["accomplice"], caller=honest)
        paid = {
            w: m.coin.balanceOf(a) - coins_before[w]
            for w, a in (("honest", honest), ("accomplice", accomplice))
        }
        assert paid["honest"] == refund_of(HONEST_PRICE, HONEST_HOURS) == 60 * USD
        assert paid["accomplice"] == refund_of(HONEST_PRICE, DUST_HOURS)
        for tx in txs:
            settled = tx.events["ReservationSettled"]
            assert settled["slashed"] == settled["refund"] <= settled["bondUnlocked"]
            assert "ShortfallUncovered" not in tx.events
        assert m.cap.uncoveredShortfall(m.node) == 0
        # The pair (operator + accomplice) is where it started, less the dust it paid: every
        # unit the accomplice was refunded came out of the operator's own bond.
        assert bonded_before - m.registry.bondOf(m.node)[0] == paid["honest"] + paid["accomplice"]
        pair_gain = paid["accomplice"] - (
            bonded_before - m.registry.bondOf(m.node)[0] - paid["honest"]
        )
        assert pair_gain == 0
        assert m.registry.bondOf(m.node)[1] == 0

    def test_tight_bond_refuses_the_dust_offer(
        self, m, registry, register_node, fund, operator, buyer
    ):
        """Bond that covers the honest sale only: the dust offer cannot be published at all."""
        node = register_node(gpu_count=32)
        fund(operator, HONEST_HOURS * BOND_PER_HOUR, registry)
        registry.depositBond(node, HONEST_HOURS * BOND_PER_HOUR, {"from": operator})
        dear = m.cap.publishOffer(node, m.tid, HONEST_HOURS, HONEST_PRICE, {"from": operator})
        fund(buyer, 100 * USD, m.cap)
        m.cap.buy(dear.return_value, HONEST_HOURS, {"from": buyer})
        with brownie.reverts(err("RegistryInsufficientBond", 0, DUST_HOURS * BOND_PER_HOUR)):
            m.cap.publishOffer(node, m.tid, DUST_HOURS, DUST_PRICE, {"from": operator})

    def test_dearer_offer_tops_up_the_cheap_hours_already_sold(
        self, m, operator, buyer, stranger, fund
    ):
        """Cheap first, dear later: the cheap unreserved hours are topped up to the new bond
        per hour, so the dearer buyer's refund is backed whatever the order of redemptions."""
        fund(buyer, 100 * USD, m.cap)
        fund(stranger, 1 * USD, m.cap)
        cheap_bph = -(-DUST_PRICE * 12_000 // 10_000)
        dust = m.cap.publishOffer(m.node, m.tid, DUST_HOURS, DUST_PRICE, {"from": operator})
        m.cap.buy(dust.return_value, DUST_HOURS, {"from": stranger})
        tx = m.cap.publishOffer(m.node, m.tid, HONEST_HOURS, HONEST_PRICE, {"from": operator})
        assert tx.events["ObligationTermsRaised"]["bondToppedUp"] == DUST_HOURS * (
            BOND_PER_HOUR - cheap_bph
        )
        m.cap.buy(tx.return_value, HONEST_HOURS, {"from": buyer})
        assert m.registry.bondOf(m.node)[1] == (DUST_HOURS + HONEST_HOURS) * BOND_PER_HOUR
        r_dust = m.cap.redeem(m.tid, DUST_HOURS, m.node, {"from": stranger}).return_value
        r_honest = m.cap.redeem(m.tid, HONEST_HOURS, m.node, {"from": buyer}).return_value
        before = m.coin.balanceOf(buyer)
        _settle_after_grace(m, r_dust, r_honest, caller=buyer)
        assert m.coin.balanceOf(buyer) - before == refund_of(HONEST_PRICE, HONEST_HOURS)


class TestCancelAfterSlash:
    def test_no_slash_reaches_locked_bond_and_the_offer_cancels_exactly(
        self, m, registry, admin, staker, operator, buyer, fund
    ):
        registry.grantRole(registry.SLASHER_ROLE(), staker, {"from": admin})
        offer = m.cap.publishOffer(m.node, m.tid, 20, HONEST_PRICE, {"from": operator}).return_value
        locked = 20 * BOND_PER_HOUR
        free = 1_000 * USD - locked
        with brownie.reverts(err("RegistryInsufficientBond", free, free + 1)):
            registry.slash(m.node, free + 1, staker, b32("x"), {"from": staker})
        registry.slash(m.node, free, staker, b32("x"), {"from": staker})
        assert list(registry.bondOf(m.node)) == [locked, locked]
        fund(buyer, 100 * USD, m.cap)
        m.cap.buy(offer, 5, {"from": buyer})
        tx = m.cap.cancelOffer(offer, {"from": operator})
        assert (
            tx.events["OfferCancelled"]["unsoldAmount"],
            tx.events["OfferCancelled"]["bondUnlocked"],
        ) == (15, 15 * BOND_PER_HOUR)
        assert list(registry.bondOf(m.node)) == [locked, 5 * BOND_PER_HOUR]
        with brownie.reverts(err("CapacityOfferClosed", offer)):
            m.cap.buy(offer, 1, {"from": buyer})


class TestNoExitWhileOwing:
    def test_reservation_keeps_the_bond_until_it_is_settled(
        self, m, registry, stablecoin, h100, operator, buyer, fund
    ):
        later = token_id(h100, (m.tid & (2**64 - 1)) + HOUR)
        fund(buyer, 200 * USD, m.cap)
        now_offer = m.cap.publishOffer(
            m.node, m.tid, 10, HONEST_PRICE, {"from": operator}
        ).return_value
        later_offer = m.cap.publishOffer(
            m.node, later, 5, HONEST_PRICE, {"from": operator}
        ).return_value
        m.cap.buy(now_offer, 10, {"from": buyer})  # never redeemed: expires
        m.cap.buy(later_offer, 5, {"from": buyer})
        rid = m.cap.redeem(later, 5, m.node, {"from": buyer}).return_value
        with brownie.reverts(err("RegistryBondLocked", m.node, 15 * BOND_PER_HOUR)):
            registry.requestExit(m.node, {"from": operator})
        # The first window opens: its unredeemed hours expire and release their bond only.
        chain.sleep((m.tid & (2**64 - 1)) - chain.time() + 1)
        chain.mine()
        m.cap.releaseExpired(m.node, m.tid, {"from": buyer})
        assert registry.bondOf(m.node)[1] == 5 * BOND_PER_HOUR
        with brownie.reverts(err("RegistryBondLocked", m.node, 5 * BOND_PER_HOUR)):
            registry.requestExit(m.node, {"from": operator})
        # The reservation settles (nothing delivered) from its own lock, in full.
        attest_window(m.hub, m.cap, later, {m.node: [0, 0]})
        chain.sleep(GRACE)
        before = stablecoin.balanceOf(buyer)
        tx = m.cap.settleReservation(rid, {"from": buyer})
        assert (
            stablecoin.balanceOf(buyer) - before
            == refund_of(HONEST_PRICE, 5)
            == tx.events["ReservationSettled"]["slashed"]
        )
        registry.requestExit(m.node, {"from": operator})
        chain.sleep(registry.unbondingDelay() + 1)
        chain.mine()
        out = registry.withdrawBond(m.node, {"from": operator}).events["NodeExited"]["amount"]
        assert out == 1_000 * USD - refund_of(HONEST_PRICE, 5)

    def test_redeem_against_an_exiting_node_reverts(
        self, m, registry, register_node, operator, buyer, fund
    ):
        offer = m.cap.publishOffer(m.node, m.tid, 10, HONEST_PRICE, {"from": operator})
        fund(buyer, 100 * USD, m.cap)
        m.cap.buy(offer.return_value, 10, {"from": buyer})
        quiet = register_node()  # owes nothing: it may exit
        registry.requestExit(quiet, {"from": operator})
        with brownie.reverts(err("CapacityNodeNotActive", quiet, 3)):
            m.cap.redeem(m.tid, 1, quiet, {"from": buyer})
        # The node that sold the hours still takes them (it cannot exit while it owes them).
        with brownie.reverts(err("RegistryBondLocked", m.node, 10 * BOND_PER_HOUR)):
            registry.requestExit(m.node, {"from": operator})
        m.cap.redeem(m.tid, 1, m.node, {"from": buyer})
