"""Market: signed limit orders for GPU-hours and pool shares; a group per function, every
revert and event, then the attacks (replay, foreign domains, over-fill, dead orders,
started windows, fee-on-transfer and re-entrant tokens)."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, FeeOnTransferToken, Market, ReentrantToken, chain, web3
from brownie.exceptions import VirtualMachineError
from eth_account import Account

from tests.contracts.capacity_helpers import DAY, PRICE
from tests.contracts.forwarder_helpers import sign_request
from tests.contracts.market_helpers import (
    HOURS_EACH,
    WAD,
    build_world,
    legs_of,
    order_for,
    signed,
    with_fields,
)
from tests.support.errors import bytes_arg, err
from tests.support.stateful import mine_at_least

OPEN, PARTIAL, FILLED, CANCELLED, EXPIRED = range(5)
MAKER_BPS, TAKER_BPS = 20, 30
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def world(system, registry, register_node, operator, admin, fund, h100, pool_gate):
    w = build_world(system, registry, register_node, operator, admin, fund, h100, pool_gate)
    w.market.setFees(MAKER_BPS, TAKER_BPS, {"from": admin})
    return w


@pytest.fixture(scope="module")
def market(world):
    return world.market


@pytest.fixture(scope="module")
def traders(world):
    return world.traders


def balances(world, *accounts_):
    """(stablecoin, GPU-hours of the world's id, pool shares) of each account."""
    return [
        (
            world.stablecoin.balanceOf(a),
            world.capacity.balanceOf(a, world.tid),
            world.pool.balanceOf(a),
        )
        for a in accounts_
    ]


def ohash(market, order):
    """An order's hash as a bytes32 error argument."""
    return bytes_arg(market.hashOrder(order.as_tuple()))


def listed_token(container, market, seller, admin):
    """A test ERC-20 (``container``) the admin listed as a pool share, held by ``seller``
    with the market approved: what an attack on the ERC-20 leg of a fill needs."""
    token = container.deploy({"from": admin})
    token.mint(seller, 10**9, {"from": admin})
    token.approve(market, 2**256 - 1, {"from": seller})
    market.setPoolListed(token, True, {"from": admin})
    return token


def unauthorized(account):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg("0x" + "00" * 32))


class TestFill:
    def test_sell_order_partial_fill_moves_both_legs_and_fees(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, amount=10, quote=10 * PRICE)
        before = balances(world, alice, bob, world.fee_recipient)
        tx = market.fill(
            order.as_tuple(), signed(order, alice.private_key, market), 4, {"from": bob}
        )
        legs = legs_of(order, 4, MAKER_BPS, TAKER_BPS)
        assert tx.return_value == legs.quote == 4 * PRICE
        order_hash = market.hashOrder(order.as_tuple())
        assert dict(tx.events["OrderFilled"]) == {
            "orderHash": order_hash,
            "maker": alice.address,
            "taker": bob.address,
            "asset": world.capacity.address,
            "tokenId": world.tid,
            "makerSells": True,
            "amount": 4,
            "quote": legs.quote,
            "makerFee": legs.maker_fee,
            "takerFee": legs.taker_fee,
            "filledTotal": 4,
        }
        after = balances(world, alice, bob, world.fee_recipient)
        assert after[0] == (before[0][0] + legs.seller_receives, before[0][1] - 4, before[0][2])
        assert after[1] == (before[1][0] - legs.buyer_pays, before[1][1] + 4, before[1][2])
        assert after[2][0] == before[2][0] + legs.maker_fee + legs.taker_fee
        assert legs.buyer_pays == legs.seller_receives + legs.maker_fee + legs.taker_fee
        assert list(market.orderState(order_hash)) == [4, False]
        assert list(market.orderStatus(order.as_tuple())) == [PARTIAL, 6]
        assert list(market.lastTrade(world.capacity, world.tid)) == [PRICE * WAD, tx.timestamp]

    def test_buy_order_taker_sells(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, sell=False, amount=5, quote=5 * PRICE)
        before = balances(world, alice, bob, world.fee_recipient)
        market.fill(order.as_tuple(), signed(order, alice.private_key, market), 5, {"from": bob})
        legs = legs_of(order, 5, MAKER_BPS, TAKER_BPS)
        after = balances(world, alice, bob, world.fee_recipient)
        assert after[0][:2] == (before[0][0] - legs.buyer_pays, before[0][1] + 5)
        assert after[1][:2] == (before[1][0] + legs.seller_receives, before[1][1] - 5)
        assert after[2][0] - before[2][0] == legs.maker_fee + legs.taker_fee
        assert list(market.orderStatus(order.as_tuple())) == [FILLED, 0]

    @pytest.mark.parametrize("sell", [True, False])
    def test_rounding_favours_the_maker_to_the_unit(self, world, market, traders, sell):
        """3 units for 10 stablecoin units: a 1-unit fill is 4 when the maker sells (ceil)
        and 3 when it buys (floor); fees round down."""
        alice, bob, _ = traders
        order = order_for(world, alice, sell=sell, amount=3, quote=10)
        before = world.stablecoin.balanceOf(bob), world.stablecoin.balanceOf(alice)
        tx = market.fill(
            order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
        )
        assert tx.return_value == (4 if sell else 3)
        delta_bob = world.stablecoin.balanceOf(bob) - before[0]
        delta_alice = world.stablecoin.balanceOf(alice) - before[1]
        assert (delta_bob, delta_alice) == ((-4, 4) if sell else (3, -3))  # fees round to 0

    def test_pool_shares_trade(self, world, market, traders):
        alice, bob, _ = traders
        shares = world.pool.balanceOf(alice) // 4
        order = order_for(world, alice, asset=world.pool, amount=shares, quote=250 * 10**6)
        before = balances(world, alice, bob)
        market.fill(
            order.as_tuple(), signed(order, alice.private_key, market), shares, {"from": bob}
        )
        legs = legs_of(order, shares, MAKER_BPS, TAKER_BPS)
        after = balances(world, alice, bob)
        assert after[0] == (
            before[0][0] + legs.seller_receives,
            before[0][1],
            before[0][2] - shares,
        )
        assert after[1] == (before[1][0] - legs.buyer_pays, before[1][1], before[1][2] + shares)
        value, at = market.markToMarket(world.pool, 0, 4 * shares)
        assert (value, at) == (4 * legs.quote * WAD // shares * shares // WAD, chain[-1].timestamp)

    def test_relayed_through_the_forwarder(self, world, market, traders, forwarder, relayer):
        alice, bob, _ = traders
        order = order_for(world, alice, amount=2, quote=2 * PRICE)
        data = market.fill.encode_input(
            order.as_tuple(), signed(order, alice.private_key, market), 2
        )
        request = sign_request(
            Account.from_key(bob.private_key),
            forwarder.address,
            31337,
            market.address,
            data,
            forwarder.nonces(bob),
            chain.time() + 600,
        )
        before = world.capacity.balanceOf(bob, world.tid)
        tx = forwarder.execute(request.as_tuple(), {"from": relayer})
        assert tx.events["OrderFilled"]["taker"] == bob.address
        assert world.capacity.balanceOf(bob, world.tid) == before + 2

    def test_zero_fill_reverts(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        with brownie.reverts(err("MarketZeroAmount")):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 0, {"from": bob}
            )

    def test_fill_rounding_to_no_quote_reverts(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, sell=False, amount=10, quote=5)  # 1 unit floors to 0
        with brownie.reverts(err("MarketZeroQuote", ohash(market, order), 1)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )

    def test_self_trade_reverts(self, world, market, traders):
        alice = traders[0]
        order = order_for(world, alice)
        with brownie.reverts(err("MarketSelfTrade", alice)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": alice}
            )

    def test_unlisted_asset_reverts(self, world, market, traders, stablecoin):
        alice, bob, _ = traders
        order = order_for(world, alice, asset=stablecoin)
        with brownie.reverts(err("MarketAssetNotListed", stablecoin)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )

    def test_pool_share_with_a_token_id_reverts(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, asset=world.pool, token_id_=7)
        with brownie.reverts(err("MarketInvalidTokenId", world.pool, 7)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )

    def test_invalid_capacity_id_reverts(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, token_id_=world.window)  # class 0
        with brownie.reverts(err("CapacityInvalidTokenId", world.window)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )

    def test_paused_refuses_fills(self, world, market, traders, admin):
        alice, bob, _ = traders
        tx = market.pause({"from": admin})
        until = tx.events["PauseSet"]["pausedUntil"]
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, market)
        with brownie.reverts(err("PauseActive", until)):
            market.fill(order.as_tuple(), sig, 1, {"from": bob})
        with brownie.reverts(err("PauseActive", until)):
            market.fillBatch([(order.as_tuple(), sig, 1)], {"from": bob})
        market.unpause({"from": admin})
        market.fill(order.as_tuple(), sig, 1, {"from": bob})

    def test_missing_approval_reverts_and_changes_nothing(self, world, market, traders):
        alice, bob, _ = traders
        world.capacity.setApprovalForAll(market, False, {"from": alice})
        order = order_for(world, alice)
        with brownie.reverts(err("ERC1155MissingApprovalForAll", market, alice)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )
        assert list(market.orderState(market.hashOrder(order.as_tuple()))) == [0, False]


class TestFillBatch:
    def test_fills_each_item_and_sums_quotes(self, world, market, traders):
        alice, bob, carol = traders
        o1 = order_for(world, alice, amount=10, quote=10 * PRICE)
        o2 = order_for(world, carol, amount=10, quote=12 * PRICE)
        o3 = order_for(world, carol, sell=False, amount=4, quote=3 * PRICE, nonce=1)
        fills = [
            (o1.as_tuple(), signed(o1, alice.private_key, market), 3),
            (o2.as_tuple(), signed(o2, carol.private_key, market), 10),
            (o3.as_tuple(), signed(o3, carol.private_key, market), 4),
        ]
        tx = market.fillBatch(fills, {"from": bob})
        assert tx.return_value == 3 * PRICE + 12 * PRICE + 3 * PRICE
        assert [e["amount"] for e in tx.events["OrderFilled"]] == [3, 10, 4]
        assert list(market.lastTrade(world.capacity, world.tid))[0] == 3 * PRICE * WAD // 4

    def test_one_bad_item_reverts_the_batch(self, world, market, traders):
        alice, bob, _ = traders
        good = order_for(world, alice, amount=10)
        bad = order_for(world, alice, amount=1, nonce=2)
        fills = [
            (good.as_tuple(), signed(good, alice.private_key, market), 5),
            (bad.as_tuple(), signed(bad, alice.private_key, market), 2),
        ]
        with brownie.reverts(err("MarketOverfill", ohash(market, bad), 1, 2)):
            market.fillBatch(fills, {"from": bob})
        assert market.orderState(market.hashOrder(good.as_tuple()))[0] == 0


class TestCancel:
    def test_cancel_emits_and_the_order_never_fills(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        order_hash = market.hashOrder(order.as_tuple())
        tx = market.cancel(order.as_tuple(), {"from": alice})
        assert dict(tx.events["OrderCancelled"]) == {
            "orderHash": order_hash,
            "maker": alice.address,
        }
        assert list(market.orderState(order_hash)) == [0, True]
        assert list(market.orderStatus(order.as_tuple())) == [CANCELLED, 0]
        with brownie.reverts(err("MarketOrderCancelled", bytes_arg(order_hash))):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )

    def test_a_partly_filled_order_cancels_its_rest(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, market)
        market.fill(order.as_tuple(), sig, 3, {"from": bob})
        market.cancel(order.as_tuple(), {"from": alice})
        with brownie.reverts(err("MarketOrderCancelled", ohash(market, order))):
            market.fill(order.as_tuple(), sig, 1, {"from": bob})

    def test_only_the_maker_cancels(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        with brownie.reverts(err("MarketNotMaker", bob, alice)):
            market.cancel(order.as_tuple(), {"from": bob})

    def test_cancelling_twice_reverts(self, world, market, traders):
        alice = traders[0]
        order = order_for(world, alice)
        market.cancel(order.as_tuple(), {"from": alice})
        with brownie.reverts(err("MarketOrderCancelled", ohash(market, order))):
            market.cancel(order.as_tuple(), {"from": alice})

    def test_cancel_works_while_paused(self, world, market, traders, admin):
        alice = traders[0]
        market.pause({"from": admin})
        market.cancel(order_for(world, alice).as_tuple(), {"from": alice})
        market.cancelUpTo(5, {"from": alice})
        assert market.minValidNonce(alice) == 5


class TestCancelUpTo:
    def test_cancels_every_lower_nonce(self, world, market, traders):
        alice, bob, _ = traders
        old = order_for(world, alice, nonce=4)
        kept = order_for(world, alice, nonce=5)
        tx = market.cancelUpTo(5, {"from": alice})
        assert dict(tx.events["NoncesCancelled"]) == {"maker": alice.address, "minValidNonce": 5}
        assert list(market.orderStatus(old.as_tuple())) == [CANCELLED, 0]
        with brownie.reverts(err("MarketNonceCancelled", ohash(market, old), 4, 5)):
            market.fill(old.as_tuple(), signed(old, alice.private_key, market), 1, {"from": bob})
        market.fill(kept.as_tuple(), signed(kept, alice.private_key, market), 1, {"from": bob})

    def test_must_increase(self, market, traders):
        alice = traders[0]
        market.cancelUpTo(3, {"from": alice})
        with brownie.reverts(err("MarketNonceNotIncreasing", 3, 3)):
            market.cancelUpTo(3, {"from": alice})

    def test_is_per_maker(self, world, market, traders):
        alice, bob, carol = traders
        market.cancelUpTo(9, {"from": carol})
        order = order_for(world, alice, nonce=0)
        market.fill(order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob})


class TestAdmin:
    def test_set_fees_emits_and_bounds(self, market, admin):
        tx = market.setFees(100, 0, {"from": admin})
        assert dict(tx.events["FeesSet"]) == {"makerFeeBps": 100, "takerFeeBps": 0}
        assert list(market.fees()) == [100, 0]
        with brownie.reverts(err("MarketFeeTooHigh", 101, 100)):
            market.setFees(101, 0, {"from": admin})
        with brownie.reverts(err("MarketFeeTooHigh", 101, 100)):
            market.setFees(0, 101, {"from": admin})

    def test_fee_recipient(self, market, admin, stranger):
        tx = market.setFeeRecipient(stranger, {"from": admin})
        assert tx.events["FeeRecipientSet"]["recipient"] == stranger
        assert market.feeRecipient() == stranger
        with brownie.reverts(err("MarketZeroAddress")):
            market.setFeeRecipient(ZERO_ADDRESS, {"from": admin})

    def test_pool_listing(self, market, admin, stranger):
        tx = market.setPoolListed(stranger, True, {"from": admin})
        assert dict(tx.events["PoolListed"]) == {"pool": stranger.address, "listed": True}
        assert market.isPoolListed(stranger)
        market.setPoolListed(stranger, False, {"from": admin})
        assert not market.isPoolListed(stranger)
        with brownie.reverts(err("MarketZeroAddress")):
            market.setPoolListed(ZERO_ADDRESS, True, {"from": admin})

    @pytest.mark.parametrize(
        "call",
        [
            lambda m, s: m.setFees(0, 0, {"from": s}),
            lambda m, s: m.setFeeRecipient(s, {"from": s}),
            lambda m, s: m.setPoolListed(s, True, {"from": s}),
        ],
    )
    def test_admin_only(self, market, stranger, call):
        with brownie.reverts(unauthorized(stranger)):
            call(market, stranger)

    def test_constructor_checks(self, admin, capacity, stablecoin, forwarder):
        with brownie.reverts(err("MarketZeroAddress")):
            Market.deploy(
                admin, capacity, stablecoin, forwarder, ZERO_ADDRESS, 0, 0, {"from": admin}
            )
        with brownie.reverts(err("MarketFeeTooHigh", 500, 100)):
            Market.deploy(admin, capacity, stablecoin, forwarder, admin, 500, 0, {"from": admin})
        with brownie.reverts(err("MarketZeroAddress")):
            Market.deploy(admin, ZERO_ADDRESS, stablecoin, forwarder, admin, 0, 0, {"from": admin})


class TestViews:
    def test_status_open_then_expired(self, world, market, traders):
        alice = traders[0]
        order = order_for(world, alice, expiry=chain.time() + 100)
        assert list(market.orderStatus(order.as_tuple())) == [OPEN, 10]
        chain.sleep(200)
        chain.mine()
        assert list(market.orderStatus(order.as_tuple())) == [EXPIRED, 0]

    def test_never_traded_marks_at_zero(self, world, market):
        assert list(market.markToMarket(world.capacity, world.tid + DAY, 10)) == [0, 0]
        assert list(market.lastTrade(world.pool, 0)) == [0, 0]

    def test_hash_matches_the_signed_typed_data(self, world, market, traders):
        order = order_for(world, traders[0])
        assert market.hashOrder(order.as_tuple()) == "0x" + _digest(order, market).hex()


def _digest(order, market):
    from eth_account.messages import _hash_eip191_message

    return _hash_eip191_message(order.typed_data(str(market.address), 31337))


class TestAttacks:
    def test_replayed_signature_cannot_fill_beyond_the_amount(self, world, market, traders):
        alice, bob, carol = traders
        order = order_for(world, alice, amount=3)
        sig = signed(order, alice.private_key, market)
        market.fill(order.as_tuple(), sig, 3, {"from": bob})
        order_hash = market.hashOrder(order.as_tuple())
        for taker in (bob, carol):
            with brownie.reverts(err("MarketOverfill", bytes_arg(order_hash), 0, 1)):
                market.fill(order.as_tuple(), sig, 1, {"from": taker})

    def test_over_fill_reverts_with_what_is_left(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, amount=10)
        sig = signed(order, alice.private_key, market)
        market.fill(order.as_tuple(), sig, 7, {"from": bob})
        with brownie.reverts(err("MarketOverfill", ohash(market, order), 3, 4)):
            market.fill(order.as_tuple(), sig, 4, {"from": bob})

    def test_signature_for_another_chain_is_refused(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, market, chain_id=1)
        signer = Account.recover_message(
            order.typed_data(str(market.address), 31337), signature=sig
        )
        with brownie.reverts(err("MarketInvalidSigner", ohash(market, order), signer, alice)):
            market.fill(order.as_tuple(), sig, 1, {"from": bob})

    def test_signature_for_another_market_is_refused(self, world, market, traders, admin):
        alice, bob, _ = traders
        other = Market.deploy(
            admin, world.capacity, world.stablecoin, ZERO_ADDRESS, admin, 0, 0, {"from": admin}
        )
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, other)
        signer = Account.recover_message(
            order.typed_data(str(market.address), 31337), signature=sig
        )
        with brownie.reverts(err("MarketInvalidSigner", ohash(market, order), signer, alice)):
            market.fill(order.as_tuple(), sig, 1, {"from": bob})

    def test_altered_order_is_refused(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, quote=10 * PRICE)
        sig = signed(order, alice.private_key, market)
        cheaper = with_fields(order, quote_amount=PRICE)
        with brownie.reverts():
            market.fill(cheaper.as_tuple(), sig, 1, {"from": bob})
        assert market.orderState(market.hashOrder(cheaper.as_tuple()))[0] == 0

    def test_expired_order_never_fills(self, world, market, traders):
        alice, bob, _ = traders
        expiry = chain.time() + 50
        order = order_for(world, alice, expiry=expiry)
        mine_at_least(expiry + 1)
        with pytest.raises(VirtualMachineError) as refused:
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )
        *head, now = refused.value.revert_msg.split(", ")
        expected = err("MarketOrderExpired", ohash(market, order), expiry)
        assert ", ".join(head) == expected and int(now) >= expiry

    def test_started_window_is_refused(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice, expiry=world.window + DAY)
        mine_at_least(world.window + 10)
        with pytest.raises(VirtualMachineError) as refused:
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1, {"from": bob}
            )
        *head, now = refused.value.revert_msg.split(", ")
        assert ", ".join(head) == err("MarketWindowStarted", world.tid, world.window)
        assert int(now) >= world.window

    def test_malleable_twin_signature_is_refused(self, world, market, traders):
        # The signature is read from calldata as r, s, v: the twin (n - s, the other v)
        # recovers the same maker, and the market refuses it as ECDSA.recover does.
        alice, bob, _ = traders
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, market)
        twin_s = (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
        twin = sig[:32] + twin_s + bytes([55 - sig[64]])
        with brownie.reverts(err("ECDSAInvalidSignatureS", twin_s)):
            market.fill(order.as_tuple(), twin, 1, {"from": bob})
        with brownie.reverts(err("ECDSAInvalidSignatureLength", 64)):
            market.fill(order.as_tuple(), sig[:64], 1, {"from": bob})

    @pytest.mark.parametrize(("word", "value"), [(0, 2**160), (3, 2), (7, 2**64)])
    def test_dirty_order_words_are_refused(self, world, market, traders, word, value):
        # The order is hashed from its calldata words: a maker, a sell flag or an expiry
        # with bits the type cannot hold would hash apart from the order it decodes to.
        alice, bob, _ = traders
        order = order_for(world, alice)
        sig = signed(order, alice.private_key, market)
        for call in (
            market.fill.encode_input(order.as_tuple(), sig, 1),
            market.hashOrder.encode_input(order.as_tuple()),
        ):
            data = bytearray(bytes.fromhex(call[2:]))
            at = 4 + 32 * word
            dirty = int.from_bytes(data[at : at + 32], "big") | value
            data[at : at + 32] = dirty.to_bytes(32, "big")
            with pytest.raises(ValueError, match="execution reverted") as refused:
                web3.eth.call({"from": bob.address, "to": market.address, "data": bytes(data)})
            assert refused.value.args[0]["data"] == "0x"  # as the ABI decoder refuses

    def test_fee_on_transfer_share_is_refused(self, world, market, traders, admin):
        alice, bob, _ = traders
        token = listed_token(FeeOnTransferToken, market, alice, admin)
        order = order_for(world, alice, asset=token, amount=1_000, quote=PRICE)
        with brownie.reverts(err("MarketTransferShortfall", token, 1_000, 990)):
            market.fill(
                order.as_tuple(), signed(order, alice.private_key, market), 1_000, {"from": bob}
            )

    def test_fee_on_transfer_stablecoin_is_refused(self, world, traders, admin, forwarder):
        alice, bob, _ = traders
        cash = FeeOnTransferToken.deploy({"from": admin})
        other = Market.deploy(admin, world.capacity, cash, forwarder, admin, 0, 0, {"from": admin})
        cash.mint(bob, 10**12, {"from": admin})
        cash.approve(other, 2**256 - 1, {"from": bob})
        world.capacity.setApprovalForAll(other, True, {"from": alice})
        order = order_for(world, alice, amount=1, quote=1_000)
        with brownie.reverts(err("MarketTransferShortfall", cash, 1_000, 990)):
            other.fill(order.as_tuple(), signed(order, alice.private_key, other), 1, {"from": bob})
        # A batch checks the stablecoin on its first leg only: that leg refuses the token.
        second = order_for(world, alice, amount=1, quote=1_000, nonce=1)
        fills = [(o.as_tuple(), signed(o, alice.private_key, other), 1) for o in (order, second)]
        with brownie.reverts(err("MarketTransferShortfall", cash, 1_000, 990)):
            other.fillBatch(fills, {"from": bob})

    def test_reentrant_token_cannot_fill_again(self, world, market, traders, admin):
        alice, bob, _ = traders
        token = listed_token(ReentrantToken, market, alice, admin)
        order = order_for(world, alice, asset=token, amount=1_000, quote=PRICE)
        sig = signed(order, alice.private_key, market)
        token.arm(market, market.fill.encode_input(order.as_tuple(), sig, 1), {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            market.fill(order.as_tuple(), sig, 500, {"from": bob})
        assert market.orderState(market.hashOrder(order.as_tuple()))[0] == 0

    def test_holdings_are_never_in_custody(self, world, market, traders):
        alice, bob, _ = traders
        order = order_for(world, alice)
        market.fill(order.as_tuple(), signed(order, alice.private_key, market), 5, {"from": bob})
        assert balances(world, market) == [(0, 0, 0)]
        assert world.capacity.balanceOf(alice, world.tid) == HOURS_EACH - 5
