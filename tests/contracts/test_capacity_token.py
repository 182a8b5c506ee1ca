"""CapacityToken: token ids, offers under capacity and bond caps, buying; a group per function."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain, web3
from eth_account import Account

from tests.contracts.capacity_helpers import (
    BOND_PER_HOUR,
    DAY,
    LIMIT_8_GPUS,
    NODE_BOND,
    PRICE,
    deploy_capacity_token,
    sign_permit,
    token_id,
)
from tests.contracts.forwarder_helpers import sign_request
from tests.contracts.node_helpers import USD, b32
from tests.support.errors import bytes_arg, err

JAILED, EXITING = 2, 3


def unauthorized(account, role):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg(role))


@pytest.fixture
def window():
    """Start of a daily window two to three days ahead."""
    return (chain.time() // DAY + 3) * DAY


@pytest.fixture
def node(registry, register_node, operator, fund):
    node_id = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node_id, NODE_BOND, {"from": operator})
    return node_id


@pytest.fixture
def tid(h100, window):
    return token_id(h100, window)


@pytest.fixture
def offer_id(capacity, node, tid, operator):
    return capacity.publishOffer(node, tid, 100, PRICE, {"from": operator}).return_value


@pytest.fixture
def funded_buyer(buyer, fund, capacity):
    fund(buyer, 10_000 * USD, capacity)
    return buyer


class TestTokenIds:
    def test_encodes_and_decodes(self, capacity, h100, window):
        tid = capacity.tokenIdFor(h100, window)
        assert tid == (h100 << 64) | window
        assert list(capacity.decodeTokenId(tid)) == [h100, window]
        assert capacity.windowSeconds() == DAY

    def test_misaligned_window_reverts(self, capacity, h100, window):
        with brownie.reverts(err("CapacityMisalignedWindow", window + 1, DAY)):
            capacity.tokenIdFor(h100, window + 1)

    @pytest.mark.parametrize("bad", ["class0", "high_bits", "misaligned"])
    def test_invalid_ids_do_not_decode(self, capacity, h100, window, bad):
        tid = {
            "class0": window,
            "high_bits": (1 << 96) | token_id(h100, window),
            "misaligned": token_id(h100, window + 60),
        }[bad]
        with brownie.reverts(err("CapacityInvalidTokenId", tid)):
            capacity.decodeTokenId(tid)


class TestPublishOffer:
    def test_publishes_locks_bond_and_emits(self, capacity, registry, node, tid, window, operator):
        tx = capacity.publishOffer(node, tid, 100, PRICE, {"from": operator})
        offer_id = tx.return_value
        assert offer_id == capacity.offerCount() == 1
        assert dict(tx.events["OfferPublished"]) == {
            "offerId": offer_id,
            "nodeId": node,
            "tokenId": tid,
            "amount": 100,
            "pricePerGpuHour": PRICE,
            "bondLocked": 100 * BOND_PER_HOUR,
        }
        assert tx.events["BondLocked"]["amount"] == 100 * BOND_PER_HOUR
        assert list(capacity.offer(offer_id)) == [tid, node, 100, 0, True, PRICE, BOND_PER_HOUR]
        assert list(capacity.capacityOf(node, window)) == [LIMIT_8_GPUS, 100, 0]
        assert list(registry.bondOf(node)) == [NODE_BOND, 100 * BOND_PER_HOUR]

    def test_bond_per_hour_rounds_up(self, capacity, node, tid, operator):
        tx = capacity.publishOffer(
            node, tid, 3, 1, {"from": operator}
        )  # 1 x 1.2 -> 2 units per hour
        assert tx.events["OfferPublished"]["bondLocked"] == 6

    def test_promises_add_up_to_the_limit_and_no_further(self, capacity, node, tid, operator):
        capacity.publishOffer(node, tid, 100, PRICE, {"from": operator})
        capacity.publishOffer(node, tid, LIMIT_8_GPUS - 100, PRICE, {"from": operator})
        with brownie.reverts(err("CapacityExceeded", 0, 1)):
            capacity.publishOffer(node, tid, 1, PRICE, {"from": operator})

    def test_over_limit_reverts_with_what_is_left(self, capacity, node, tid, operator):
        capacity.publishOffer(node, tid, 100, PRICE, {"from": operator})
        with brownie.reverts(err("CapacityExceeded", LIMIT_8_GPUS - 100, 100)):
            capacity.publishOffer(node, tid, 100, PRICE, {"from": operator})

    def test_windows_are_capped_separately(self, capacity, node, h100, window, operator):
        capacity.publishOffer(node, token_id(h100, window), LIMIT_8_GPUS, PRICE, {"from": operator})
        capacity.publishOffer(
            node, token_id(h100, window + DAY), LIMIT_8_GPUS, PRICE, {"from": operator}
        )

    def test_bond_short_reverts_in_registry(self, capacity, registry, node, tid, operator):
        price = NODE_BOND  # 10k USD per GPU-hour: 1 hour needs 12k of bond
        with brownie.reverts(err("RegistryInsufficientBond", NODE_BOND, NODE_BOND * 12 // 10)):
            capacity.publishOffer(node, tid, 1, price, {"from": operator})

    def test_not_operator_reverts(self, capacity, node, tid, operator2):
        with brownie.reverts(err("CapacityNotOperator", node, operator2)):
            capacity.publishOffer(node, tid, 1, PRICE, {"from": operator2})

    @pytest.mark.parametrize("status", [JAILED, EXITING])
    def test_inactive_node_reverts(self, capacity, registry, node, tid, operator, admin, status):
        if status == JAILED:
            registry.jail(node, b32("downtime"), {"from": admin})
        else:
            registry.requestExit(node, {"from": operator})
        with brownie.reverts(err("CapacityNodeNotActive", node, status)):
            capacity.publishOffer(node, tid, 1, PRICE, {"from": operator})

    def test_class_mismatch_reverts(self, capacity, node, system, window, h100, operator):
        a100 = system.class_ids["A100-SXM-80GB"]
        with brownie.reverts(err("CapacityClassMismatch", h100, a100)):
            capacity.publishOffer(node, token_id(a100, window), 1, PRICE, {"from": operator})

    def test_started_window_reverts(self, capacity, node, h100, operator):
        current = chain.time() // DAY * DAY
        tx_time = web3.eth.get_block("latest").timestamp
        with pytest.raises(brownie.exceptions.VirtualMachineError) as exc:
            capacity.publishOffer(node, token_id(h100, current), 1, PRICE, {"from": operator})
        assert exc.value.revert_msg.startswith(f"CapacityWindowStarted: {current}, ")
        assert int(exc.value.revert_msg.split(", ")[1]) >= tx_time

    def test_invalid_token_id_reverts(self, capacity, node, window, operator):
        with brownie.reverts(err("CapacityInvalidTokenId", window)):
            capacity.publishOffer(node, window, 1, PRICE, {"from": operator})

    @pytest.mark.parametrize("amount,price", [(0, PRICE), (1, 0)])
    def test_zero_amount_or_price_reverts(self, capacity, node, tid, operator, amount, price):
        with brownie.reverts(err("CapacityZeroAmount")):
            capacity.publishOffer(node, tid, amount, price, {"from": operator})

    def test_unknown_node_reverts(self, capacity, tid, operator):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            capacity.publishOffer(999, tid, 1, PRICE, {"from": operator})


class TestCancelOffer:
    def test_releases_unsold_capacity_and_bond(
        self, capacity, registry, offer_id, node, window, operator, funded_buyer
    ):
        capacity.buy(offer_id, 30, {"from": funded_buyer})
        tx = capacity.cancelOffer(offer_id, {"from": operator})
        assert dict(tx.events["OfferCancelled"]) == {
            "offerId": offer_id,
            "unsoldAmount": 70,
            "bondUnlocked": 70 * BOND_PER_HOUR,
        }
        assert tx.events["BondUnlocked"]["amount"] == 70 * BOND_PER_HOUR
        assert list(capacity.capacityOf(node, window)) == [LIMIT_8_GPUS, 30, 30]
        assert list(registry.bondOf(node)) == [
            NODE_BOND,
            30 * BOND_PER_HOUR,
        ]  # sold capacity stays backed
        assert list(capacity.offer(offer_id))[2:5] == [0, 30, False]

    def test_sold_out_offer_closes_without_unlock(self, capacity, offer_id, operator, funded_buyer):
        capacity.buy(offer_id, 100, {"from": funded_buyer})
        tx = capacity.cancelOffer(offer_id, {"from": operator})
        assert tx.events["OfferCancelled"]["bondUnlocked"] == 0
        assert "BondUnlocked" not in tx.events

    def test_twice_reverts(self, capacity, offer_id, operator):
        capacity.cancelOffer(offer_id, {"from": operator})
        with brownie.reverts(err("CapacityOfferClosed", offer_id)):
            capacity.cancelOffer(offer_id, {"from": operator})

    def test_not_operator_reverts(self, capacity, offer_id, node, stranger):
        with brownie.reverts(err("CapacityNotOperator", node, stranger)):
            capacity.cancelOffer(offer_id, {"from": stranger})

    def test_unknown_offer_reverts(self, capacity, operator):
        with brownie.reverts(err("CapacityUnknownOffer", 42)):
            capacity.cancelOffer(42, {"from": operator})
        with brownie.reverts(err("CapacityUnknownOffer", 42)):
            capacity.offer(42)


class TestBuy:
    def test_buys_mints_and_holds_proceeds(
        self, capacity, stablecoin, offer_id, node, tid, window, funded_buyer
    ):
        before = stablecoin.balanceOf(funded_buyer)
        tx = capacity.buy(offer_id, 40, {"from": funded_buyer})
        cost = 40 * PRICE
        assert tx.return_value == cost
        assert dict(tx.events["CapacityBought"]) == {
            "offerId": offer_id,
            "buyer": funded_buyer,
            "tokenId": tid,
            "nodeId": node,
            "amount": 40,
            "cost": cost,
        }
        assert dict(tx.events["TransferSingle"]) == {
            "operator": funded_buyer,
            "from": ZERO_ADDRESS,
            "to": funded_buyer,
            "id": tid,
            "value": 40,
        }
        assert capacity.balanceOf(funded_buyer, tid) == 40
        assert stablecoin.balanceOf(funded_buyer) == before - cost
        assert (
            stablecoin.balanceOf(capacity)
            == cost
            == capacity.heldProceeds(node)
            == capacity.totalHeldProceeds()
        )
        assert list(capacity.offer(offer_id))[2:4] == [60, 40]
        assert list(capacity.capacityOf(node, window)) == [LIMIT_8_GPUS, 100, 40]

    def test_same_class_and_window_is_fungible_across_operators(
        self, capacity, registry, register_node, offer_id, tid, operator2, fund, funded_buyer
    ):
        other = register_node(owner=operator2)
        fund(operator2, NODE_BOND, registry)
        registry.depositBond(other, NODE_BOND, {"from": operator2})
        other_offer = capacity.publishOffer(
            other, tid, 10, PRICE * 2, {"from": operator2}
        ).return_value
        capacity.buy(offer_id, 5, {"from": funded_buyer})
        capacity.buy(other_offer, 5, {"from": funded_buyer})
        assert capacity.balanceOf(funded_buyer, tid) == 10
        assert capacity.heldProceeds(other) == 10 * PRICE

    def test_more_than_remaining_reverts(self, capacity, offer_id, funded_buyer):
        capacity.buy(offer_id, 90, {"from": funded_buyer})
        with brownie.reverts(err("CapacityOfferInsufficient", offer_id, 10, 11)):
            capacity.buy(offer_id, 11, {"from": funded_buyer})

    def test_closed_offer_reverts(self, capacity, offer_id, operator, funded_buyer):
        capacity.cancelOffer(offer_id, {"from": operator})
        with brownie.reverts(err("CapacityOfferClosed", offer_id)):
            capacity.buy(offer_id, 1, {"from": funded_buyer})

    def test_jailed_node_cannot_back_new_capacity(
        self, capacity, registry, offer_id, node, admin, funded_buyer
    ):
        registry.jail(node, b32("downtime"), {"from": admin})
        with brownie.reverts(err("CapacityNodeNotActive", node, JAILED)):
            capacity.buy(offer_id, 1, {"from": funded_buyer})

    def test_started_window_reverts(self, capacity, offer_id, window, funded_buyer):
        chain.sleep(window - chain.time() + 1)
        with pytest.raises(brownie.exceptions.VirtualMachineError) as exc:
            capacity.buy(offer_id, 1, {"from": funded_buyer})
        assert exc.value.revert_msg.startswith(f"CapacityWindowStarted: {window}, ")

    def test_zero_amount_reverts(self, capacity, offer_id, funded_buyer):
        with brownie.reverts(err("CapacityZeroAmount")):
            capacity.buy(offer_id, 0, {"from": funded_buyer})

    def test_unknown_offer_reverts(self, capacity, funded_buyer):
        with brownie.reverts(err("CapacityUnknownOffer", 7)):
            capacity.buy(7, 1, {"from": funded_buyer})

    def test_without_allowance_reverts(self, capacity, offer_id, stranger, fund):
        fund(stranger, USD)
        with brownie.reverts(err("ERC20InsufficientAllowance", capacity, 0, PRICE)):
            capacity.buy(offer_id, 1, {"from": stranger})


class TestBuyWithPermit:
    def test_gasless_buy_through_forwarder(
        self, capacity, stablecoin, forwarder, offer_id, tid, node, fund, relayer
    ):
        wallet = Account.create()  # holds stablecoin but no ETH
        fund(wallet.address, 100 * USD)
        deadline = chain.time() + 3600
        v, r, s = sign_permit(wallet, stablecoin, capacity.address, 4 * PRICE, deadline)
        data = capacity.buyWithPermit.encode_input(offer_id, 4, deadline, v, r, s)
        request = sign_request(
            wallet, forwarder.address, 31337, capacity.address, data, 0, deadline
        )
        tx = forwarder.execute(request.as_tuple(), {"from": relayer})
        assert tx.events["CapacityBought"]["buyer"] == wallet.address
        assert capacity.balanceOf(wallet.address, tid) == 4
        assert stablecoin.balanceOf(wallet.address) == 100 * USD - 4 * PRICE
        assert web3.eth.get_balance(wallet.address) == 0

    def test_front_run_permit_is_tolerated(
        self, capacity, stablecoin, forwarder, offer_id, tid, fund, relayer, stranger
    ):
        wallet = Account.create()
        fund(wallet.address, 100 * USD)
        deadline = chain.time() + 3600
        v, r, s = sign_permit(wallet, stablecoin, capacity.address, 4 * PRICE, deadline)
        stablecoin.permit(
            wallet.address, capacity, 4 * PRICE, deadline, v, r, s, {"from": stranger}
        )
        data = capacity.buyWithPermit.encode_input(offer_id, 4, deadline, v, r, s)
        request = sign_request(
            wallet, forwarder.address, 31337, capacity.address, data, 0, deadline
        )
        forwarder.execute(request.as_tuple(), {"from": relayer})
        assert capacity.balanceOf(wallet.address, tid) == 4

    def test_bad_permit_without_allowance_reverts(
        self, capacity, offer_id, funded_buyer, stablecoin
    ):
        stablecoin.approve(capacity, 0, {"from": funded_buyer})
        with brownie.reverts(err("ERC20InsufficientAllowance", capacity, 0, PRICE)):
            capacity.buyWithPermit(
                offer_id,
                1,
                chain.time() + 60,
                27,
                b"\x01" * 32,
                b"\x02" * 32,
                {"from": funded_buyer},
            )

    def test_unknown_offer_reverts(self, capacity, funded_buyer):
        with brownie.reverts(err("CapacityUnknownOffer", 9)):
            capacity.buyWithPermit(9, 1, 0, 27, b"\x01" * 32, b"\x02" * 32, {"from": funded_buyer})


class TestCollectProceeds:
    @pytest.fixture
    def settlement(self, capacity, admin, staker):
        capacity.grantRole(capacity.PROCEEDS_ROLE(), staker, {"from": admin})
        return staker

    def test_pays_out_and_keeps_exact_accounting(
        self, capacity, stablecoin, offer_id, node, funded_buyer, settlement, operator
    ):
        capacity.buy(offer_id, 10, {"from": funded_buyer})
        tx = capacity.collectProceeds(node, 7 * PRICE, operator, {"from": settlement})
        assert dict(tx.events["ProceedsCollected"]) == {
            "nodeId": node,
            "to": operator,
            "amount": 7 * PRICE,
        }
        assert stablecoin.balanceOf(operator) == 7 * PRICE
        assert capacity.heldProceeds(node) == capacity.totalHeldProceeds() == 3 * PRICE
        # in (10 x PRICE) == paid out + held, to the unit
        assert stablecoin.balanceOf(operator) + stablecoin.balanceOf(capacity) == 10 * PRICE

    def test_more_than_held_reverts(
        self, capacity, offer_id, node, funded_buyer, settlement, operator
    ):
        capacity.buy(offer_id, 1, {"from": funded_buyer})
        with brownie.reverts(err("CapacityInsufficientProceeds", node, PRICE, PRICE + 1)):
            capacity.collectProceeds(node, PRICE + 1, operator, {"from": settlement})

    def test_zero_amount_reverts(self, capacity, node, settlement, operator):
        with brownie.reverts(err("CapacityZeroAmount")):
            capacity.collectProceeds(node, 0, operator, {"from": settlement})

    def test_zero_recipient_reverts(self, capacity, node, settlement):
        with brownie.reverts(err("CapacityInvalidRecipient")):
            capacity.collectProceeds(node, 1, ZERO_ADDRESS, {"from": settlement})

    def test_requires_proceeds_role(self, capacity, node, operator):
        with brownie.reverts(unauthorized(operator, capacity.PROCEEDS_ROLE())):
            capacity.collectProceeds(node, 1, operator, {"from": operator})


class TestConfiguration:
    def test_set_commit_ratio(self, capacity, admin, node, window):
        tx = capacity.setCommitRatio(5_000, {"from": admin})
        assert dict(tx.events["CommitRatioSet"]) == {"commitRatioBps": 5_000}
        assert capacity.commitRatioBps() == 5_000
        assert capacity.capacityOf(node, window)[0] == 8 * 24 // 2

    def test_set_bond_coverage(self, capacity, admin):
        tx = capacity.setBondCoverage(20_000, {"from": admin})
        assert dict(tx.events["BondCoverageSet"]) == {"bondCoverageBps": 20_000}
        assert capacity.bondCoverageBps() == 20_000

    @pytest.mark.parametrize("value", [0, 10_001])
    def test_commit_ratio_out_of_range_reverts(self, capacity, admin, value):
        with brownie.reverts(err("CapacityInvalidConfig", value)):
            capacity.setCommitRatio(value, {"from": admin})

    @pytest.mark.parametrize("value", [0, 100_001])
    def test_bond_coverage_out_of_range_reverts(self, capacity, admin, value):
        with brownie.reverts(err("CapacityInvalidConfig", value)):
            capacity.setBondCoverage(value, {"from": admin})

    def test_requires_admin(self, capacity, stranger):
        role = capacity.DEFAULT_ADMIN_ROLE()
        with brownie.reverts(unauthorized(stranger, role)):
            capacity.setCommitRatio(1, {"from": stranger})
        with brownie.reverts(unauthorized(stranger, role)):
            capacity.setBondCoverage(1, {"from": stranger})

    @pytest.mark.parametrize("window_seconds", [0, 5_400])
    def test_window_must_be_whole_hours(
        self, admin, registry, system, stablecoin, forwarder, window_seconds
    ):
        with brownie.reverts(err("CapacityInvalidConfig", window_seconds)):
            deploy_capacity_token(
                admin, registry, system.oracle_hub, stablecoin, forwarder, window_seconds
            )

    def test_wiring(self, capacity, registry, stablecoin, forwarder, admin):
        assert capacity.registry() == registry
        assert capacity.stablecoin() == stablecoin
        assert capacity.isTrustedForwarder(forwarder)
        assert registry.hasRole(registry.BOND_LOCKER_ROLE(), capacity)
        assert capacity.supportsInterface("0xd9b67a26")  # ERC-1155
        assert capacity.supportsInterface("0x7965db0b")  # AccessControl
