"""The secondary market through the real parts (uvicorn + celery + Redis + anvil): a maker
with no ETH signs sell orders into the API's book, a taker with no ETH is matched against
it and signs the fill as a forward request, the worker relays it through the forwarder
(paying gas at a non-zero base fee), the indexer follows the chain, and every order's
state, the trades and each balance are checked to the unit. Bad orders are refused with
their codes and nothing of them is stored."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from math import floor

import pytest
import requests
from brownie import chain, web3
from eth_account import Account

from backend.risk import formulas as F
from backend.risk.marking import market_implied_value
from gpucap import actions, devchain, trading
from gpucap.actions import ApiRejected
from gpucap.deployment import Deployment
from gpucap.signing import MarketOrder, sign_order, sign_permit, sign_request
from scripts.deploy import PoolTerms, deploy_node_pool
from tests.backend.backend_helpers import (
    Stack,
    malleable_copies,
    reorg_away,
    running_stack,
    wait_for,
)
from tests.backend.test_cli import cli

USD = 10**6
BASE_FEE = 10**9  # wei: the relayer pays real gas for the fills
MAX_OPEN = 5  # open orders per maker: low enough for a test to reach
# Collateral marks: a class's trades of the last two hours count, two of them worth 10 USD
# are enough (a test can push older trades out by moving the chain's clock).
MARK_LOOKBACK, MARK_MIN_TRADES, MARK_MIN_VOLUME = 7_200, 2, 10 * USD


@pytest.fixture(scope="module")
def stack(live_deployment, tmp_path_factory, backend):
    """The backend (tests/backend/conftest.py's) with a maker's count cap of MAX_OPEN and
    the collateral mark's rule above."""
    with running_stack(
        tmp_path_factory.mktemp("backend"),
        live_deployment,
        env_extra={
            "GPUCAP_MARKET_MAX_OPEN_ORDERS_PER_MAKER": str(MAX_OPEN),
            "GPUCAP_MARK_LOOKBACK_SECONDS": str(MARK_LOOKBACK),
            "GPUCAP_MARK_MIN_TRADES": str(MARK_MIN_TRADES),
            "GPUCAP_MARK_MIN_VOLUME": str(MARK_MIN_VOLUME),
        },
        backend=backend,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def market(stack: Stack, admin, operator2, staker):
    """A maker holding 30 GPU-hours of a future window (no ETH), a taker holding 100 USD
    that permitted the market to spend it (no ETH)."""
    s = stack.deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    s.stablecoin.drip(operator2, {"from": operator2})
    s.stablecoin.drip(admin, {"from": admin})
    node = s.registry.registerNode(
        h100,
        8,
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 3_600,
        "0x" + "43" * 20,
        {"from": operator2},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator2})
    s.registry.depositBond(node, 5_000 * USD, {"from": operator2})
    window = s.capacity.windowSeconds()
    token = s.capacity.tokenIdFor(h100, (chain[-1].timestamp // window + 2) * window)
    started = s.capacity.tokenIdFor(h100, (chain[-1].timestamp // window) * window)
    offer = s.capacity.publishOffer(node, token, 100, 2 * USD, {"from": operator2}).return_value
    s.stablecoin.approve(s.capacity, 2**256 - 1, {"from": admin})
    s.capacity.buy(offer, 40, {"from": admin})  # 30 for the maker, 10 for the CLI's maker
    maker, taker = Account.create(), Account.create()
    s.capacity.safeTransferFrom(admin, maker.address, token, 30, b"", {"from": admin})
    s.stablecoin.transfer(taker.address, 100 * USD, {"from": admin})
    deadline = chain[-1].timestamp + 7_200
    v, r, sig_s = sign_permit(
        taker,
        token_name=s.stablecoin.name(),
        token=s.stablecoin.address,
        spender=s.market.address,
        value=2**256 - 1,
        nonce=0,
        deadline=deadline,
        chain_id=chain.id,
    )
    s.stablecoin.permit(taker.address, s.market, 2**256 - 1, deadline, v, r, sig_s, {"from": admin})
    # Takers racing for one order, each with tUSD the market may spend.
    racers = [Account.create() for _ in range(3)]
    for racer in racers:
        s.stablecoin.transfer(racer.address, 10 * USD, {"from": admin})
        v, r, sig_s = sign_permit(
            racer,
            token_name=s.stablecoin.name(),
            token=s.stablecoin.address,
            spender=s.market.address,
            value=2**256 - 1,
            nonce=0,
            deadline=deadline,
            chain_id=chain.id,
        )
        s.stablecoin.permit(
            racer.address, s.market, 2**256 - 1, deadline, v, r, sig_s, {"from": admin}
        )
    # The CLI's taker (a dev account) pays with its own allowance.
    s.stablecoin.transfer(staker, 20 * USD, {"from": admin})
    s.stablecoin.approve(s.market, 2**256 - 1, {"from": staker})
    # From here the chain charges a base fee: only the relayer can pay it.
    web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
    yield {
        "s": s,
        "token": token,
        "started": started,
        "maker": maker,
        "taker": taker,
        "racers": racers,
        "node": node,
        "offer": offer,
    }
    web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", ["0x0"])
    chain.mine()


def _order(m, *, amount, quote, nonce=0, expiry=None, sell=True, token=None, maker=None):
    maker = maker or m["maker"]
    return MarketOrder(
        maker=maker.address,
        asset=m["s"].capacity.address,
        token_id=m["token"] if token is None else token,
        sell=sell,
        amount=amount,
        quote_amount=quote,
        nonce=nonce,
        expiry=expiry or chain[-1].timestamp + 3_600,
    )


def _body(m, order: MarketOrder, signer=None) -> dict:
    signer = signer or m["maker"]
    signature = sign_order(order, signer.key, market=m["s"].market.address, chain_id=chain.id)
    return trading.order_body(order, signature)


def _relay(stack: Stack, m, wallet, to: str, data: str, *, path="/api/v1/forward", gas=500_000):
    s = m["s"]
    req = sign_request(
        wallet,
        s.forwarder.address,
        chain.id,
        to,
        data,
        s.forwarder.nonces(wallet.address),
        chain[-1].timestamp + 3_600,
        gas=gas,
    )
    return stack.post(path, json=req.api_body())


def _confirmed(stack: Stack, resp) -> dict:
    assert resp.status_code == 202, resp.text
    final = stack.wait_final(resp.json()["action_id"])
    assert final["status"] == "confirmed", final
    return final


def _order_state(stack: Stack, order_hash: str, until) -> dict:
    return wait_for(
        lambda: (o := stack.get(f"/api/v1/market/orders/{order_hash}").json()) and until(o) and o,
        30,
        f"order {order_hash} to be indexed as wanted",
    )


def test_bad_orders_are_refused_with_their_codes_and_nothing_is_stored(stack: Stack, market):
    m = market
    good = _order(m, amount=10, quote=25 * USD)
    expect = [
        (_body(m, good, signer=m["taker"]), 422, "InvalidSignature"),
        (
            _body(m, _order(m, amount=10, quote=25 * USD, expiry=chain[-1].timestamp + 5)),
            422,
            "OrderExpired",
        ),
        (_body(m, _order(m, amount=10, quote=25 * USD, token=m["started"])), 422, "WindowStarted"),
        (_body(m, _order(m, amount=31, quote=75 * USD)), 422, "MakerBalanceTooLow"),
        (_body(m, good), 422, "MakerNotApproved"),  # the maker has not approved the market
        (_body(m, _order(m, amount=10, quote=0)), 422, "ValidationFailed"),
    ]
    unlisted = _order(m, amount=10, quote=25 * USD, token=0)
    unlisted = MarketOrder(**{**unlisted.__dict__, "asset": m["s"].stablecoin.address})
    expect.append((_body(m, unlisted), 422, "AssetNotListed"))
    for copy in malleable_copies(_body(m, good)["signature"]):
        expect.append(({**_body(m, good), "signature": copy}, 422, "NonCanonicalSignature"))
    for body, status, code in expect:
        resp = stack.post("/api/v1/market/orders", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    # A taker's match checks the instrument the same way (block and token in one read).
    ask = {"taker": m["taker"].address, "asset": m["s"].capacity.address, "side": "buy"}
    ask |= {"amount": "1", "limit_price": "2500000"}
    for asset, token, code in (
        (m["s"].capacity.address, m["started"], "WindowStarted"),
        (m["s"].capacity.address, 1, "InvalidTokenId"),  # class 0
        (m["s"].stablecoin.address, 0, "AssetNotListed"),
    ):
        resp = stack.post(
            "/api/v1/market/match", json={**ask, "asset": asset, "token_id": str(token)}
        )
        assert (resp.status_code, resp.json()["code"]) == (422, code), resp.text
    book = stack.get(
        "/api/v1/market/book", params={"asset": m["s"].capacity.address, "token_id": m["token"]}
    ).json()
    assert (book["asks"], book["bids"]) == ([], [])


def test_orders_matched_filled_on_chain_and_followed_to_the_unit(stack: Stack, market, admin):
    m, s = market, market["s"]
    maker, taker = m["maker"], m["taker"]
    relayer_eth = web3.eth.get_balance(stack_relayer(stack))
    # The maker approves the market gaslessly (a relayed setApprovalForAll).
    _confirmed(
        stack,
        _relay(
            stack,
            m,
            maker,
            s.capacity.address,
            s.capacity.setApprovalForAll.encode_input(s.market.address, True),
        ),
    )
    a = _order(m, amount=10, quote=25 * USD, nonce=1)  # 2.5 USD per GPU-hour
    b = _order(m, amount=5, quote=12 * USD, nonce=2)  # 2.4
    c = _order(m, amount=5, quote=15 * USD, nonce=3)  # 3.0
    hashes = {}
    for name, order in (("a", a), ("b", b), ("c", c)):
        resp = stack.post("/api/v1/market/orders", json=_body(m, order))
        assert resp.status_code == 201, resp.text
        assert resp.json()["status"] == "open" and resp.json()["in_book"] is True
        hashes[name] = resp.json()["order_hash"]
        assert hashes[name] == "0x" + bytes(s.market.hashOrder(order.as_tuple())).hex()
    again = stack.post("/api/v1/market/orders", json=_body(m, a))
    assert (again.status_code, again.json()["order_hash"]) == (200, hashes["a"])
    params = {"asset": s.capacity.address, "token_id": m["token"]}
    book = stack.get("/api/v1/market/book", params=params).json()
    assert [(lv["price"], lv["amount"]) for lv in book["asks"]] == [
        ("2400000", "5"),
        ("2500000", "10"),
        ("3000000", "5"),
    ]
    # A resting buy that would cross the asks is refused: a taker takes instead.
    crossing = _order(m, amount=2, quote=6 * USD, sell=False, maker=taker)
    resp = stack.post("/api/v1/market/orders", json=_body(m, crossing, signer=taker))
    assert (resp.status_code, resp.json()["code"]) == (409, "OrderCrossesBook"), resp.text

    # The taker buys 8 at up to 2.5: all of b (2.4, older price first), then 3 of a.
    matched = stack.post(
        "/api/v1/market/match",
        json={
            "taker": taker.address,
            "asset": s.capacity.address,
            "token_id": str(m["token"]),
            "side": "buy",
            "amount": "8",
            "limit_price": "2500000",
        },
    )
    assert matched.status_code == 200, matched.text
    found = matched.json()
    assert [(f["order_hash"], f["amount"], f["quote"]) for f in found["fills"]] == [
        (hashes["b"], "5", str(12 * USD)),
        (hashes["a"], "3", str(7_500_000)),
    ]
    assert (found["function"], found["amount"], found["quote"]) == ("fillBatch", "8", "19500000")
    fill = _relay(
        stack, m, taker, found["to"], found["data"], path="/api/v1/market/fills", gas=found["gas"]
    )
    assert fill.status_code == 202, fill.text
    assert (fill.json()["contract"], fill.json()["function"]) == ("Market", "fillBatch")
    # Another taker's fill of b, signed while the first is in flight or done: refused.
    other = Account.create()
    late = _relay(
        stack,
        m,
        other,
        s.market.address,
        s.market.fill.encode_input(b.as_tuple(), _sig(m, b), 5),
        path="/api/v1/market/fills",
    )
    assert (late.status_code, late.json()["code"]) == (409, "OrderTaken"), late.text
    # A fill call cut short (the selector and half an argument): refused, not a 500.
    cut = s.market.fill.encode_input(b.as_tuple(), _sig(m, b), 5)[:80]
    garbled = _relay(stack, m, other, s.market.address, cut, path="/api/v1/market/fills")
    assert 400 <= garbled.status_code < 500, garbled.text
    assert garbled.json()["code"] == "NotAFill", garbled.text
    # The general forward route does not take fills: it has no book to check them with.
    data = s.market.fill.encode_input(b.as_tuple(), _sig(m, b), 5)
    bypass = _relay(stack, m, other, s.market.address, data)
    assert (bypass.status_code, bypass.json()["code"]) == (422, "UseMarketFills"), bypass.text
    mined = stack.wait_final(fill.json()["action_id"])
    assert mined["status"] == "confirmed", mined
    assert web3.eth.get_block(mined["block_number"])["baseFeePerGas"] > 0

    state_b = _order_state(stack, hashes["b"], lambda o: o["status"] == "filled")
    assert (state_b["filled"], state_b["remaining"], state_b["in_book"]) == ("5", "0", False)
    state_a = _order_state(stack, hashes["a"], lambda o: o["status"] == "partially_filled")
    assert (state_a["filled"], state_a["in_flight"], state_a["remaining"]) == ("3", "0", "7")
    # Balances to the unit: taker fee 10 bps of each fill's quote, maker fee 0.
    fee = 12 * USD * 10 // 10_000 + 7_500_000 * 10 // 10_000
    assert fee == 19_500
    assert s.capacity.balanceOf(taker.address, m["token"]) == 8
    assert s.capacity.balanceOf(maker.address, m["token"]) == 22
    assert s.stablecoin.balanceOf(taker.address) == 100 * USD - 19_500_000 - fee
    assert s.stablecoin.balanceOf(maker.address) == 19_500_000
    assert web3.eth.get_balance(maker.address) == web3.eth.get_balance(taker.address) == 0
    assert web3.eth.get_balance(stack_relayer(stack)) < relayer_eth  # it paid the gas
    trades = stack.get("/api/v1/market/trades", params=params).json()
    assert [
        (t["order_hash"], t["amount"], t["quote"], t["taker_fee"], t["maker_fee"]) for t in trades
    ] == [(hashes["a"], "3", "7500000", "7500", "0"), (hashes["b"], "5", "12000000", "12000", "0")]
    book = stack.get("/api/v1/market/book", params=params).json()
    assert [(lv["price"], lv["amount"]) for lv in book["asks"]] == [
        ("2500000", "7"),
        ("3000000", "5"),
    ]

    # The maker cancels a on-chain, gaslessly: the index marks it, the book drops it.
    _confirmed(
        stack, _relay(stack, m, maker, s.market.address, s.market.cancel.encode_input(a.as_tuple()))
    )
    state_a = _order_state(stack, hashes["a"], lambda o: o["status"] == "cancelled")
    assert (state_a["filled"], state_a["remaining"]) == ("3", "0")
    # Time passes beyond c's expiry: expired, off the book, and a taker finds nothing.
    chain.sleep(3_700)
    chain.mine()
    _order_state(stack, hashes["c"], lambda o: o["status"] == "expired")
    book = stack.get("/api/v1/market/book", params=params).json()
    assert book["asks"] == []


def test_takers_racing_for_one_order_get_one_fill_relayed(stack: Stack, market) -> None:
    """Four takers post fills of the same 3 units at once: one is accepted, the others
    are told the units are taken (409 OrderTaken), and the one fills on-chain."""
    m, s = market, market["s"]
    g = _order(m, amount=3, quote=6_300_000, nonce=30)
    placed = stack.post("/api/v1/market/orders", json=_body(m, g))
    assert placed.status_code == 201, placed.text
    data = s.market.fill.encode_input(g.as_tuple(), _sig(m, g), 3)
    bodies = [
        sign_request(
            who,
            s.forwarder.address,
            chain.id,
            s.market.address,
            data,
            s.forwarder.nonces(who.address),
            chain[-1].timestamp + 3_600,
            gas=200_000,
        ).api_body()
        for who in [m["taker"], *m["racers"]]
    ]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: stack.post("/api/v1/market/fills", json=b), bodies))
    codes = sorted((a.status_code, a.json().get("code")) for a in answers)
    assert codes == [(202, None), (409, "OrderTaken"), (409, "OrderTaken"), (409, "OrderTaken")]
    (won,) = [a for a in answers if a.status_code == 202]
    assert stack.wait_final(won.json()["action_id"])["status"] == "confirmed"
    state = _order_state(stack, placed.json()["order_hash"], lambda o: o["status"] == "filled")
    assert state["filled"] == "3"


@pytest.fixture(scope="module")
def listed_pool(market, admin, operator2, stranger):
    """The market's node's RevenuePool (binding it lists its shares on the market); the
    stranger (dev account 5) deposited 40 USD for 40 shares."""
    s = market["s"]
    pool = deploy_node_pool(
        s, admin, node_id=market["node"], operator=operator2.address,
        terms=PoolTerms(target_assets=1_000 * USD),
    )  # fmt: skip
    s.stablecoin.transfer(stranger, 40 * USD, {"from": admin})
    s.stablecoin.approve(pool, 40 * USD, {"from": stranger})
    pool.deposit(40 * USD, stranger, {"from": stranger})
    return pool


def test_pool_shares_trade_through_the_book(stack: Stack, market, listed_pool, stranger):
    """An ERC-20 instrument: a listed pool's shares, sold by a depositor (dev account 5)
    and taken by the gasless taker, to the unit."""
    m, s, pool = market, market["s"], listed_pool
    pool.approve(s.market, 2**256 - 1, {"from": stranger})
    seller = Account.from_key(devchain.dev_private_key(5))
    shares = MarketOrder(
        maker=seller.address,
        asset=pool.address,
        token_id=0,
        sell=True,
        amount=10 * 10**18,
        quote_amount=12 * USD,
        nonce=1,
        expiry=chain[-1].timestamp + 3_600,
    )
    assert s.market.isPoolListed(pool)  # binding a pool lists its shares
    placed = stack.post("/api/v1/market/orders", json=_body(m, shares, signer=seller))
    assert placed.status_code == 201, placed.text
    assert placed.json()["price"] == "0.0000000000012"  # base units per share base unit
    coin_before = s.stablecoin.balanceOf(seller.address)
    found = stack.post(
        "/api/v1/market/match",
        json={
            "taker": m["taker"].address,
            "asset": pool.address,
            "token_id": "0",
            "side": "buy",
            "amount": str(10 * 10**18),
            "limit_price": "0.0000000000012",
        },
    ).json()
    assert (found["function"], found["quote"]) == ("fill", str(12 * USD))
    fill = _relay(
        stack,
        m,
        m["taker"],
        found["to"],
        found["data"],
        path="/api/v1/market/fills",
        gas=found["gas"],
    )
    _confirmed(stack, fill)
    _order_state(stack, placed.json()["order_hash"], lambda o: o["status"] == "filled")
    assert pool.balanceOf(m["taker"].address) == 10 * 10**18
    assert pool.balanceOf(seller.address) == 30 * 10**18
    assert s.stablecoin.balanceOf(seller.address) == coin_before + 12 * USD  # maker fee 0


def test_a_resting_bid_taken_by_a_seller(stack: Stack, market) -> None:
    """The other side: a buy order rests as a bid, the gasless taker sells into it. The
    buying maker pays the quote (and its own fee, 0); the taker's 10 bps come out of what
    the selling taker receives."""
    m, s = market, market["s"]
    taker, token = m["taker"], m["token"]
    bidder = max(m["racers"], key=lambda r: s.stablecoin.balanceOf(r.address))
    bid = _order(m, amount=2, quote=4_200_000, nonce=40, sell=False, maker=bidder)
    placed = stack.post("/api/v1/market/orders", json=_body(m, bid, signer=bidder))
    assert placed.status_code == 201, placed.text
    params = {"asset": s.capacity.address, "token_id": token}
    book = stack.get("/api/v1/market/book", params=params).json()
    assert [(lv["price"], lv["amount"]) for lv in book["bids"]] == [("2100000", "2")]
    approval = s.capacity.setApprovalForAll.encode_input(s.market.address, True)
    _confirmed(stack, _relay(stack, m, taker, s.capacity.address, approval))
    coins = {w: s.stablecoin.balanceOf(w.address) for w in (taker, bidder)}
    fees = s.stablecoin.balanceOf(s.market.feeRecipient())
    sold = _take(stack, m, 5, "2000000", buy=False)
    assert [(f["amount"], f["quote"]) for f in sold.matched["fills"]] == [("2", "4200000")]
    _taken(stack, sold)
    _order_state(stack, placed.json()["order_hash"], lambda o: o["status"] == "filled")
    assert s.capacity.balanceOf(bidder.address, token) == 2
    assert s.stablecoin.balanceOf(bidder.address) == coins[bidder] - 4_200_000
    assert s.stablecoin.balanceOf(taker.address) == coins[taker] + 4_200_000 - 4_200
    assert s.stablecoin.balanceOf(s.market.feeRecipient()) == fees + 4_200


def _take(stack: Stack, m, amount: int, limit_price: str, *, buy: bool = True) -> trading.Take:
    """The taker's take of the module's GPU-hours, as the CLI does it (gpucap.trading):
    matched by the API, signed, relayed. Raises ApiRejected when the API refuses."""
    return trading.take(
        actions.Api(stack.api_url),
        Deployment.load(stack.deployment.manifest_path),
        m["taker"],
        asset=m["s"].capacity.address,
        token_id=m["token"],
        buy=buy,
        amount=amount,
        limit_price=limit_price,
    )


def _taken(stack: Stack, take: trading.Take) -> dict:
    final = stack.wait_final(take.accepted["action_id"])
    assert final["status"] == "confirmed", final
    return final


def test_a_fill_a_reorg_removed_fills_again_once_and_unfunded_orders_leave_the_book(
    stack: Stack, market
) -> None:
    m, s = market, market["s"]
    maker, taker, token = m["maker"], m["taker"], m["token"]
    held = s.capacity.balanceOf(taker.address, token)
    nonce = s.forwarder.nonces(taker.address)
    e = _order(m, amount=2, quote=4_400_000, nonce=10)
    placed = stack.post("/api/v1/market/orders", json=_body(m, e))
    assert placed.status_code == 201, placed.text
    digest = placed.json()["order_hash"]
    first = _taken(stack, _take(stack, m, 2, "2200000"))
    _order_state(stack, digest, lambda o: o["status"] == "filled")

    head = reorg_away(first["block_number"])
    # The fill is gone (at the reorged head: the worker may have re-sent it already).
    assert s.capacity.balanceOf(taker.address, token, block_identifier=head) == held
    # Re-sent by the worker, mined again and indexed: filled once, one trade.
    wait_for(
        lambda: s.capacity.balanceOf(taker.address, token) == held + 2,
        60,
        "the fill to be re-sent and mined again",
    )
    state = _order_state(stack, digest, lambda o: o["status"] == "filled" and o["in_flight"] == "0")
    assert state["filled"] == "2"
    trades = stack.get(
        "/api/v1/market/trades", params={"asset": s.capacity.address, "token_id": token}
    ).json()
    assert [t["amount"] for t in trades if t["order_hash"] == digest] == ["2"]
    assert s.forwarder.nonces(taker.address) == nonce + 1

    # An order whose maker then gives its tokens away is dropped when a taker reaches it.
    left = s.capacity.balanceOf(maker.address, token)
    f = _order(m, amount=left, quote=left * 2_300_000, nonce=11)
    placed = stack.post("/api/v1/market/orders", json=_body(m, f))
    assert placed.status_code == 201, placed.text
    give = s.capacity.safeTransferFrom.encode_input(maker.address, taker.address, token, left, b"")
    _confirmed(stack, _relay(stack, m, maker, s.capacity.address, give))
    with pytest.raises(ApiRejected) as refused:
        _take(stack, m, 1, "2300000")
    assert (refused.value.status, refused.value.body["code"]) == (409, "NoMatch")
    state = stack.get(f"/api/v1/market/orders/{placed.json()['order_hash']}").json()
    assert (state["status"], state["in_book"], state["dropped"]) == (
        "open",
        False,
        "MakerBalanceTooLow",
    )


def _sig(m, order: MarketOrder) -> bytes:
    return sign_order(order, m["maker"].key, market=m["s"].market.address, chain_id=chain.id)


def stack_relayer(stack: Stack) -> str:
    return Account.from_key(devchain.dev_private_key(9)).address


def test_cli_places_takes_lists_and_cancels(stack: Stack, market) -> None:
    """``gpucap market``: the admin (dev account 0) sells 4 GPU-hours at 2.75 (and 2 at 2.9
    through the API), the staker (dev account 4) takes the 4 at up to 2.8, the trade is
    listed, and the admin cancels the other order on-chain."""
    s, token = market["s"], str(market["token"])
    admin = Account.from_key(devchain.dev_private_key(0))
    approved = cli(stack, "market", "approve", "--dev-account", "0")
    assert approved.returncode == 0 and "confirmed" in approved.stdout, approved.stderr
    assert s.capacity.isApprovedForAll(admin.address, s.market.address)
    placed = cli(
        stack, "--json", "market", "order", "sell", token, "4", "2.75", "--dev-account", "0"
    )
    assert placed.returncode == 0, placed.stderr
    assert json.loads(placed.stdout)["status"] == "open"
    other = _order(market, amount=2, quote=5_800_000, nonce=20, maker=admin)
    resp = stack.post("/api/v1/market/orders", json=_body(market, other, signer=admin))
    assert resp.status_code == 201, resp.text
    rest = resp.json()["order_hash"]
    book = json.loads(cli(stack, "--json", "market", "book", token).stdout)
    assert [(lv["price"], lv["amount"]) for lv in book["asks"]] == [
        ("2750000", "4"),
        ("2900000", "2"),
    ]
    taken = cli(stack, "market", "take", "buy", token, "4", "2.8", "--dev-account", "4")
    assert taken.returncode == 0 and "confirmed" in taken.stdout, taken.stdout + taken.stderr
    params = {"asset": s.capacity.address, "token_id": token}
    wait_for(
        lambda: stack.get("/api/v1/market/trades", params=params).json()[0]["quote"] == "11000000",
        30,
        "the CLI's trade to be indexed",
    )
    trade = json.loads(cli(stack, "--json", "market", "trades", token).stdout)[0]
    assert (trade["amount"], trade["quote"], trade["taker_fee"]) == ("4", "11000000", "11000")
    cancelled = cli(stack, "market", "cancel", rest, "--dev-account", "0")
    assert cancelled.returncode == 0 and "confirmed" in cancelled.stdout, cancelled.stderr
    _order_state(stack, rest, lambda o: o["status"] == "cancelled")
    assert s.capacity.balanceOf(s.market.address, market["token"]) == 0  # no custody


# ---------------------------------------------------------------------------
# Gasless approvals: EIP-2612 permits for the Market, submitted by the relayer
# ---------------------------------------------------------------------------

UNLIMITED = 2**256 - 1


def _permit_body(m, owner, token, *, value, nonce=0, deadline=None, spender=None, signer=None):
    """``owner``'s permit of ``token`` (the stablecoin or a pool) as POST /permits takes it."""
    s = m["s"]
    spender = spender or s.market.address
    deadline = deadline or chain[-1].timestamp + 3_600
    v, r, sig_s = sign_permit(
        signer or owner,
        token_name=token.name(),
        token=token.address,
        spender=spender,
        value=value,
        nonce=nonce,
        deadline=deadline,
        chain_id=chain.id,
    )
    return {
        "token": token.address,
        "owner": owner.address,
        "spender": str(spender),
        "value": str(value),
        "nonce": str(nonce),
        "deadline": deadline,
        "signature": "0x" + (r + sig_s + bytes([v])).hex(),
    }


def test_permits_refused_with_their_codes_and_a_used_one_in_effect(
    stack: Stack, market, listed_pool, admin, stranger
) -> None:
    m, s, pool = market, market["s"], listed_pool
    owner = Account.create()
    info = stack.get(
        f"/api/v1/market/approvals/{owner.address}", params={"pool": pool.address}
    ).json()
    assert (info["spender"], info["capacity_approved"]) == (s.market.address, False)
    assert [(t["kind"], t["token"], t["allowance"], t["nonce"]) for t in info["tokens"]] == [
        ("stablecoin", s.stablecoin.address, "0", "0"),
        ("pool", pool.address, "0", "0"),
    ]
    assert [t["domain"]["name"] for t in info["tokens"]] == [s.stablecoin.name(), pool.name()]
    unlisted = stack.get(
        f"/api/v1/market/approvals/{owner.address}", params={"pool": s.capacity.address}
    )
    assert (unlisted.status_code, unlisted.json()["code"]) == (422, "TokenNotAllowed")

    coin = s.stablecoin
    good = _permit_body(m, owner, coin, value=5 * USD)
    expect = [
        (_permit_body(m, owner, coin, value=5 * USD, spender=stranger.address), "SpenderNotMarket"),
        ({**good, "token": s.capacity.address}, "TokenNotAllowed"),
        (_permit_body(m, owner, coin, value=5 * USD, signer=m["taker"]), "InvalidSignature"),
        ({**good, "value": str(6 * USD)}, "InvalidSignature"),  # not what was signed
        (_permit_body(m, owner, coin, value=5 * USD, nonce=1), "InvalidNonce"),
        (
            _permit_body(m, owner, coin, value=5 * USD, deadline=chain[-1].timestamp + 5),
            "PermitExpired",
        ),
    ]
    for copy in malleable_copies(good["signature"]):
        expect.append(({**good, "signature": copy}, "NonCanonicalSignature"))
    for body, code in expect:
        resp = stack.post("/api/v1/market/permits", json=body)
        assert (resp.status_code, resp.json()["code"]) == (422, code), resp.text
    assert coin.nonces(owner.address) == 0

    # Someone submitted the permit first (it is public once signed): done, nothing relayed.
    sig = bytes.fromhex(good["signature"][2:])
    coin.permit(
        owner.address, s.market, 5 * USD, good["deadline"], sig[64], sig[:32], sig[32:64],
        {"from": admin},
    )  # fmt: skip
    done = stack.post("/api/v1/market/permits", json=good)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["action_id"]) == ("in_effect", None)
    assert done.json()["allowance"] == str(5 * USD)
    # A bigger permit signed for that used nonce cannot run, and the allowance is short.
    short = stack.post("/api/v1/market/permits", json=_permit_body(m, owner, coin, value=UNLIMITED))
    assert (short.status_code, short.json()["code"]) == (409, "PermitNonceUsed"), short.text

    # The pool's shares: relayed, the same permit again is its action.
    shares = _permit_body(m, owner, pool, value=UNLIMITED)
    relayed = stack.post("/api/v1/market/permits", json=shares)
    assert relayed.status_code == 202, relayed.text
    again = stack.post("/api/v1/market/permits", json=shares)
    assert (again.status_code, again.json()["action_id"]) == (200, relayed.json()["action_id"])
    final = stack.wait_final(relayed.json()["action_id"])
    assert (final["status"], final["error_code"]) == ("confirmed", None), final
    assert pool.allowance(owner.address, s.market) == UNLIMITED
    assert web3.eth.get_balance(owner.address) == 0


def test_one_client_cannot_have_the_relayer_pay_for_permits_without_end(
    stack: Stack, market, tmp_path
) -> None:
    """One open permit per owner and token bounds nothing for a client naming fresh
    owners: its own limit does. A second API process (same Redis, database and chain) with
    a limit of 2 per window: a refused permit and the same permit again do not count; the
    third new one is a 429 that leaves nothing behind; the two accepted confirm."""
    from backend.db.models import Action
    from backend.db.session import get_sessionmaker
    from tests.backend.backend_helpers import second_api

    env = {
        "GPUCAP_PERMIT_CLIENT_LIMIT": "2",
        "GPUCAP_PERMIT_CLIENT_WINDOW_SECONDS": "86397",  # its own counter, not the suite's
    }
    coin = market["s"].stablecoin

    def rows() -> int:
        with get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])() as session:
            return session.query(Action).count()

    with second_api(stack, tmp_path, "api-permits", env) as port:
        url = f"http://127.0.0.1:{port}/api/v1/market/permits"
        first = _permit_body(market, Account.create(), coin, value=USD)
        wrong = {**_permit_body(market, Account.create(), coin, value=USD), "value": "2"}
        assert requests.post(url, json=wrong, timeout=10).json()["code"] == "InvalidSignature"
        accepted = [requests.post(url, json=first, timeout=10)]
        again = requests.post(url, json=first, timeout=10)
        assert again.status_code == 200, again.text
        second = _permit_body(market, Account.create(), coin, value=USD)
        accepted.append(requests.post(url, json=second, timeout=10))
        assert [r.status_code for r in accepted] == [202, 202], [r.text for r in accepted]
        before = rows()
        refused = requests.post(
            url, json=_permit_body(market, Account.create(), coin, value=USD), timeout=10
        )
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["code"] == "PermitClientLimit" and 0 < body["retry_after_seconds"] <= 86397
        assert "(127.0.0.1)" in body["reason"]
        assert rows() == before  # the refused one left nothing behind
    for resp in accepted:
        assert stack.wait_final(resp.json()["action_id"])["status"] == "confirmed"


def test_a_wallet_with_no_gas_approves_by_signature_and_its_bid_and_share_sell_fill(
    stack: Stack, market, listed_pool, admin, stranger
) -> None:
    """``gpucap market approve --asset POOL`` for a wallet that never held ETH: GPU-hours
    (a relayed setApprovalForAll), the stablecoin and the pool's shares (permits the
    relayer submits). Then its bid and its share sell rest in the book and a taker fills
    both, to the unit; selling the GPU-hours straight back to that taker is a wash trade."""
    m, s, pool = market, market["s"], listed_pool
    user, taker, token = Account.create(), m["taker"], m["token"]
    s.stablecoin.transfer(user.address, 10 * USD, {"from": admin})
    pool.transfer(user.address, 5 * 10**18, {"from": stranger})
    bid = _order(m, amount=3, quote=3 * USD, nonce=50, sell=False, maker=user)  # 1.0 a GPU-hour
    sell = MarketOrder(
        maker=user.address,
        asset=pool.address,
        token_id=0,
        sell=True,
        amount=5 * 10**18,
        quote_amount=6 * USD,  # 1.2 a share
        nonce=51,
        expiry=chain[-1].timestamp + 3_600,
    )
    for order in (bid, sell):  # nothing approved yet
        resp = stack.post("/api/v1/market/orders", json=_body(m, order, signer=user))
        assert (resp.status_code, resp.json()["code"]) == (422, "MakerNotApproved"), resp.text

    wallet_env = {"GPUCAP_WALLET_KEY": "0x" + bytes(user.key).hex()}
    approved = cli(stack, "--json", "market", "approve", "--asset", pool.address, env=wallet_env)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert [(r["what"], r["status"]) for r in json.loads(approved.stdout)] == [
        ("GPU-hours", "confirmed"),
        ("tUSD", "confirmed"),
        (f"shares of {pool.address}", "confirmed"),
    ]
    assert s.capacity.isApprovedForAll(user.address, s.market)
    assert s.stablecoin.allowance(user.address, s.market) == UNLIMITED
    assert pool.allowance(user.address, s.market) == UNLIMITED
    again = cli(stack, "--json", "market", "approve", "--asset", pool.address, env=wallet_env)
    assert {r["status"] for r in json.loads(again.stdout)} == {"approved already"}, again.stdout

    hashes = []
    for order in (bid, sell):
        resp = stack.post("/api/v1/market/orders", json=_body(m, order, signer=user))
        assert resp.status_code == 201, resp.text
        hashes.append(resp.json()["order_hash"])
    # The taker sells 3 GPU-hours into the bid and buys the 5 shares.
    s.capacity.safeTransferFrom(admin, taker.address, token, 3, b"", {"from": admin})
    approval = s.capacity.setApprovalForAll.encode_input(s.market.address, True)
    _confirmed(stack, _relay(stack, m, taker, s.capacity.address, approval))
    coins = {w: s.stablecoin.balanceOf(w.address) for w in (user, taker)}
    held = s.capacity.balanceOf(taker.address, token)
    for asset, token_id, side, amount, limit in (
        (s.capacity.address, token, "sell", "3", "1000000"),
        (pool.address, 0, "buy", str(5 * 10**18), "0.0000000000012"),
    ):
        found = stack.post(
            "/api/v1/market/match",
            json={
                "taker": taker.address,
                "asset": asset,
                "token_id": str(token_id),
                "side": side,
                "amount": amount,
                "limit_price": limit,
            },
        )
        assert found.status_code == 200, found.text
        body = found.json()
        assert [f["order_hash"] for f in body["fills"]] == [hashes[0 if side == "sell" else 1]]
        _confirmed(
            stack,
            _relay(
                stack, m, taker, body["to"], body["data"], path="/api/v1/market/fills",
                gas=body["gas"],
            ),
        )  # fmt: skip
    for digest in hashes:
        _order_state(stack, digest, lambda o: o["status"] == "filled")
    # Maker fee 0; the taker's 10 bps: out of its proceeds when it sells, on top when it buys.
    assert s.capacity.balanceOf(user.address, token) == 3
    assert s.capacity.balanceOf(taker.address, token) == held - 3
    assert pool.balanceOf(user.address) == 0
    assert s.stablecoin.balanceOf(user.address) == coins[user] - 3 * USD + 6 * USD
    assert s.stablecoin.balanceOf(taker.address) == (
        coins[taker] + 3 * USD - 3_000 - 6 * USD - 6_000
    )
    assert web3.eth.get_balance(user.address) == 0

    # The user sells the 3 GPU-hours straight back to the taker: the same two addresses
    # trading one instrument back and forth within the hour. Both legs are flagged as a
    # wash trade in the index; nobody else's trades are.
    back = _order(m, amount=3, quote=6_600_000, nonce=52, maker=user)  # 2.2 a GPU-hour
    resp = stack.post("/api/v1/market/orders", json=_body(m, back, signer=user))
    assert resp.status_code == 201, resp.text
    _taken(stack, _take(stack, m, 3, "2200000"))
    params = {"asset": s.capacity.address, "token_id": token}
    trades = wait_for(
        lambda: (
            (t := stack.get("/api/v1/market/trades", params=params).json())
            and t[0]["order_hash"] == resp.json()["order_hash"]
            and t
        ),
        30,
        "the buy-back to be indexed",
    )
    pair = {user.address, taker.address}
    flags = {(t["order_hash"], t["wash_flag"]) for t in trades if {t["maker"], t["taker"]} == pair}
    assert flags == {(hashes[0], "wash_trade"), (resp.json()["order_hash"], "wash_trade")}
    assert {t["wash_flag"] for t in trades if {t["maker"], t["taker"]} != pair} == {None}


def test_a_makers_open_orders_are_capped_by_its_funds_and_their_count(
    stack: Stack, market, listed_pool, admin
) -> None:
    """Each order alone is funded, yet together they may not promise more than the maker
    holds or allows: the sells of one instrument by its balance of it, the bids of every
    instrument by its stablecoin and the market's allowance; and at most MAX_OPEN open
    orders. A cancelled order frees what it held; two orders placed at once for the same
    funds: one is accepted."""
    m, s, pool, token = market, market["s"], listed_pool, market["token"]
    maker = Account.create()
    s.capacity.buy(m["offer"], 5, {"from": admin})
    s.capacity.safeTransferFrom(admin, maker.address, token, 5, b"", {"from": admin})
    s.stablecoin.transfer(maker.address, 12 * USD, {"from": admin})
    approval = s.capacity.setApprovalForAll.encode_input(s.market.address, True)
    _confirmed(stack, _relay(stack, m, maker, s.capacity.address, approval))
    permit = stack.post(
        "/api/v1/market/permits", json=_permit_body(m, maker, s.stablecoin, value=10 * USD)
    )
    assert stack.wait_final(permit.json()["action_id"])["status"] == "confirmed"

    def place(order: MarketOrder):
        return stack.post("/api/v1/market/orders", json=_body(m, order, signer=maker))

    def share_bid(quote: int, nonce: int) -> MarketOrder:
        return MarketOrder(
            maker=maker.address,
            asset=pool.address,
            token_id=0,
            sell=False,
            amount=5 * 10**18,
            quote_amount=quote,
            nonce=nonce,
            expiry=chain[-1].timestamp + 3_600,
        )

    def sell(amount: int, quote: int, nonce: int) -> MarketOrder:
        return _order(m, amount=amount, quote=quote, nonce=nonce, maker=maker)

    def bid(amount: int, quote: int, nonce: int) -> MarketOrder:
        return _order(m, amount=amount, quote=quote, nonce=nonce, sell=False, maker=maker)

    def expect(answer, status: int, code: str | None) -> None:
        assert (answer.status_code, answer.json().get("code")) == (status, code), answer.text

    first_sell = sell(3, 9 * USD, 1)
    for order, status, code in [
        (first_sell, 201, None),
        (sell(3, 9_300_000, 2), 422, "OpenOrdersExceedBalance"),  # 3 + 3 > 5 held
        (sell(2, 6_200_000, 3), 201, None),  # 5 of 5 held
        (bid(2, 3 * USD, 4), 201, None),  # 3 of 10 allowed (12 held)
        (share_bid(8 * USD, 5), 422, "OpenOrdersExceedAllowance"),  # 3 + 8 > 10 allowed
        (share_bid(5 * USD, 6), 201, None),  # 8 of 10 allowed
    ]:
        expect(place(order), status, code)

    # Cancelled on-chain: its 3 GPU-hours are free again once the index has it. Two sells
    # of 3 placed at once: 2 + 3 of 5 held, one fits.
    cancel = s.market.cancel.encode_input(first_sell.as_tuple())
    _confirmed(stack, _relay(stack, m, maker, s.market.address, cancel))
    first = "0x" + bytes(s.market.hashOrder(first_sell.as_tuple())).hex()
    _order_state(stack, first, lambda o: o["status"] == "cancelled")
    with ThreadPoolExecutor(2) as threads:
        answers = list(threads.map(place, [sell(3, 9_600_000 + n, 10 + n) for n in (0, 1)]))
    assert sorted((a.status_code, a.json().get("code")) for a in answers) == [
        (201, None),
        (422, "OpenOrdersExceedBalance"),
    ], [a.text for a in answers]
    # The fifth open order fits (9 of 10 allowed); a sixth is one too many, funded or not.
    expect(place(bid(1, USD, 20)), 201, None)
    expect(place(bid(1, USD // 2, 21)), 422, "TooManyOpenOrders")


# ---------------------------------------------------------------------------
# Prices that mean something: the price index by source, collateral marked to the market
# ---------------------------------------------------------------------------


def _block_time(number: int) -> int:
    return web3.eth.get_block(number)["timestamp"]


def _timeless(point: dict) -> dict:
    """A price point without what moves with the index's clock (as_of and the TWAPs)."""
    drop = {"as_of", "twap_per_gpu_hour", "twap_until"}
    return {
        k: {f: x for f, x in v.items() if f not in drop} if isinstance(v, dict) else v
        for k, v in point.items()
        if k not in drop
    }


def _pool_view(stack: Stack, pool, until) -> dict:
    def seen() -> dict | None:
        resp = stack.get(f"/api/v1/pools/{pool.address}")
        return resp.json() if resp.status_code == 200 and until(resp.json()) else None

    return wait_for(seen, 30, "the pool view to show it")


def test_prices_by_source_and_collateral_marked_to_the_market(
    stack: Stack, market, listed_pool, admin, operator2, stranger
) -> None:
    """A fresh H100 window: the operator sells 10 GPU-hours at 1.50 (primary); two holders
    sell 3 at 2.00 and 2 at 2.50 to a gasless taker in one relayed batch (secondary); the
    taker sells 1 straight back to the first at 2.20: a wash trade, both legs left out.
    The price index gives each source's VWAP, last and TWAP to the unit, the pool of the
    market's node marks its collateral to the class's trades once they are enough, and a
    stress run takes the marked value."""
    m, s, pool, node = market, market["s"], listed_pool, market["node"]
    h100 = s.class_ids["H100-SXM-80GB"]
    # Every earlier trade leaves the two-hour lookback: no market price, book value.
    chain.sleep(MARK_LOOKBACK + 100)
    chain.mine()
    quiet = chain[-1].number
    view = _pool_view(stack, pool, lambda v: v["as_of_block"] >= quiet)
    c = view["collateral"]
    assert (c["basis"], c["market_value"], c["marked_value"]) == ("book", None, c["book_value"])
    assert (c["market"]["trades"], c["market"]["enough"], c["curve"]) == (0, False, "straight_line")
    assert c["rule"] == {
        "lookback_seconds": MARK_LOOKBACK,
        "min_trades": MARK_MIN_TRADES,
        "min_volume": MARK_MIN_VOLUME,
        "source": "combined",
    }
    indexed = stack.get(f"/api/v1/nodes/{node}").json()
    cost, acquired = indexed["acquisition_cost"], indexed["acquired_at"]
    assert (cost, indexed["gpu_count"]) == (240_000 * USD, 8)
    assert c["book_value"] == F.depreciated_value(cost, 1_000, 48, acquired, c["as_of"])

    window = s.capacity.windowSeconds()
    start = (chain[-1].timestamp // window + 3) * window
    token = s.capacity.tokenIdFor(h100, start)
    offer = s.capacity.publishOffer(node, token, 20, 1_500_000, {"from": operator2}).return_value
    bought = s.capacity.buy(offer, 10, {"from": admin})  # primary: 10 at 1.50
    seller_a = Account.from_key(devchain.dev_private_key(5))  # the stranger
    seller_b = Account.from_key(devchain.dev_private_key(0))  # the admin
    taker = Account.create()
    for who in (stranger, admin):
        s.capacity.setApprovalForAll(s.market, True, {"from": who})
    s.capacity.safeTransferFrom(admin, stranger, token, 4, b"", {"from": admin})
    s.stablecoin.transfer(stranger, 5 * USD, {"from": admin})
    s.stablecoin.approve(s.market, 2**256 - 1, {"from": stranger})
    s.stablecoin.transfer(taker.address, 30 * USD, {"from": admin})
    deadline = chain[-1].timestamp + 3_600
    v, r, sig_s = sign_permit(
        taker, token_name=s.stablecoin.name(), token=s.stablecoin.address,
        spender=s.market.address, value=2**256 - 1, nonce=0, deadline=deadline,
        chain_id=chain.id,
    )  # fmt: skip
    s.stablecoin.permit(taker.address, s.market, 2**256 - 1, deadline, v, r, sig_s, {"from": admin})

    def place(order: MarketOrder, signer) -> str:
        resp = stack.post("/api/v1/market/orders", json=_body(m, order, signer=signer))
        assert resp.status_code == 201, resp.text
        return resp.json()["order_hash"]

    def take(side: str, amount: int, limit: str) -> dict:
        found = stack.post(
            "/api/v1/market/match",
            json={"taker": taker.address, "asset": s.capacity.address, "token_id": str(token),
                  "side": side, "amount": str(amount), "limit_price": limit},
        )  # fmt: skip
        assert found.status_code == 200, found.text
        body = found.json()
        relayed = _relay(
            stack, m, taker, body["to"], body["data"], path="/api/v1/market/fills",
            gas=body["gas"],
        )  # fmt: skip
        return _confirmed(stack, relayed)

    chain.sleep(600)  # the primary price holds 10 minutes (the TWAP's weights)
    sell_a = place(
        _order(m, amount=3, quote=6 * USD, nonce=900, token=token, maker=seller_a), seller_a
    )
    sell_b = place(
        _order(m, amount=2, quote=5 * USD, nonce=900, token=token, maker=seller_b), seller_b
    )
    batch = take("buy", 5, "2500000")  # all of a (2.00), then all of b (2.50)
    for digest in (sell_a, sell_b):  # off the book before a bid at 2.20 could cross them
        _order_state(stack, digest, lambda o: o["status"] == "filled")
    approval = s.capacity.setApprovalForAll.encode_input(s.market.address, True)
    _confirmed(stack, _relay(stack, m, taker, s.capacity.address, approval))
    bid_a = place(
        _order(m, amount=1, quote=2_200_000, nonce=901, sell=False, token=token, maker=seller_a),
        seller_a,
    )
    chain.sleep(300)
    back = take("sell", 1, "2200000")  # straight back to the first seller: a wash trade
    params = {"asset": s.capacity.address, "token_id": token}
    trades = wait_for(
        lambda: (t := stack.get("/api/v1/market/trades", params=params).json())
        and len(t) == 3 and t,
        30,
        "the three fills to be indexed",
    )  # fmt: skip
    assert {t["order_hash"]: t["wash_flag"] for t in trades} == {
        sell_a: "wash_trade", sell_b: None, bid_a: "wash_trade"
    }  # fmt: skip

    # The price index for the window, to the unit.
    t_p, t_b = bought.timestamp, _block_time(batch["block_number"])
    assert t_p < t_b < _block_time(back["block_number"])
    (point,) = stack.get(
        "/api/v1/price-index", params={"class_id": h100, "window_start": start}
    ).json()
    until = point["as_of"]
    primary, secondary, combined = point["primary"], point["secondary"], point["combined"]
    assert primary == {
        "source": "primary", "trades": 1, "gpu_hours": 10, "volume": 15 * USD,
        "vwap_per_gpu_hour": 1_500_000, "last_per_gpu_hour": 1_500_000, "last_at": t_p,
        "first_at": t_p, "twap_per_gpu_hour": 1_500_000, "twap_until": until,
    }  # fmt: skip
    assert secondary == {
        "source": "secondary", "trades": 1, "gpu_hours": 2, "volume": 5 * USD,
        "vwap_per_gpu_hour": 2_500_000, "last_per_gpu_hour": 2_500_000, "last_at": t_b,
        "first_at": t_b, "twap_per_gpu_hour": 2_500_000, "twap_until": until,
    }  # fmt: skip
    twap = floor((Fraction(1_500_000) * (t_b - t_p) + 2_500_000 * (until - t_b)) / (until - t_p))
    assert combined == {
        "source": "combined", "trades": 2, "gpu_hours": 12, "volume": 20 * USD,
        "vwap_per_gpu_hour": 20 * USD // 12, "last_per_gpu_hour": 2_500_000, "last_at": t_b,
        "first_at": t_p, "twap_per_gpu_hour": twap, "twap_until": until,
    }  # fmt: skip
    assert point["excluded"] == {"trades": 2, "gpu_hours": 4, "volume": 6 * USD + 2_200_000}
    listed = json.loads(
        cli(stack, "--json", "prices", "--class-id", str(h100), "--window-start", str(start)).stdout
    )
    assert [_timeless(p) for p in listed] == [_timeless(point)]

    # The pool's collateral, marked to the class's two counted trades (20 USD >= 10 USD).
    view = _pool_view(stack, pool, lambda v: v["collateral"]["market"]["trades"] == 2)
    c = view["collateral"]
    assert c["market"] == {
        "class_id": h100, "since": c["as_of"] - MARK_LOOKBACK, "until": c["as_of"], "trades": 2,
        "gpu_hours": 12, "volume": 20 * USD, "price_per_gpu_hour": 1_666_666,
        "excluded": {"trades": 2, "gpu_hours": 4, "volume": 8_200_000}, "enough": True,
    }  # fmt: skip
    assert (c["utilization_bps"], c["utilization_attested"], c["capital_share_bps"]) == (
        7_000,
        False,
        6_200,
    )
    book = F.depreciated_value(cost, 1_000, 48, acquired, c["as_of"])
    implied = market_implied_value(
        acquisition_cost=cost, residual_value_bps=1_000, economic_life_months=48,
        acquired_at=acquired, t=c["as_of"], gpu_count=8, price_per_gpu_hour=1_666_666,
        utilization_bps=7_000,
    )  # fmt: skip
    assert implied < book  # 1.67 USD an hour does not pay for the book's 240k node
    assert (c["book_value"], c["market_value"], c["marked_value"], c["basis"]) == (
        book,
        implied,
        implied,
        "market",
    )
    assert c["remaining_life_seconds"] == acquired + 48 * F.MONTH_SECONDS - c["as_of"]
    assert c["ltv_bps_book"] == c["ltv_bps_marked"] == 0  # the raise was never drawn
    shown = json.loads(cli(stack, "--json", "pool", "collateral", str(node)).stdout)
    assert (shown["basis"], shown["market"]["price_per_gpu_hour"]) == ("market", 1_666_666)

    # A stress run takes the marked value: month 1 at min(book, implied) there.
    t0 = c["as_of"]
    runs = {
        basis: stack.post(
            "/api/v1/risk/scenarios",
            json={
                "node_ids": [node],
                "scenarios": ["base"],
                "collateral": basis,
                "start_time": t0,
                "horizon_months": 2,
                "include_node_paths": True,
            },
        )  # fmt: skip
        for basis in ("book", "marked")
    }
    for resp in runs.values():
        assert resp.status_code == 200, resp.text
    book_run, marked_run = (runs[b].json() for b in ("book", "marked"))
    assert (book_run["collateral"], marked_run["collateral"]) == ("book", "marked")
    (booked,), (marked,) = (r["results"][0]["nodes"] for r in (book_run, marked_run))
    assert (booked["mark_price_per_gpu_hour"], marked["mark_price_per_gpu_hour"]) == (
        None,
        1_666_666,
    )
    t1 = t0 + F.MONTH_SECONDS
    month_1 = market_implied_value(
        acquisition_cost=cost, residual_value_bps=1_000, economic_life_months=48,
        acquired_at=acquired, t=t1, gpu_count=8, price_per_gpu_hour=1_666_666,
        utilization_bps=marked["paths"]["utilization_bps"][0],
    )  # fmt: skip
    assert booked["paths"]["value"][0] == F.depreciated_value(cost, 1_000, 48, acquired, t1)
    assert marked["paths"]["value"][0] == min(month_1, booked["paths"]["value"][0]) == month_1
