"""The market view's order book in a real browser (Debian's Chromium via Playwright)
against the real stack: an order placed and partly taken through the API shows as the
window's depth and last trade; and a wallet with no ETH trades from the page (connect,
switch chain, approve, place, cancel) through an EIP-1193 provider whose signatures a
real key makes (tests/dashboard/wallet.py), its bid then filled on-chain."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from brownie import chain, web3
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak
from eth_utils.abi import collapse_if_tuple

from gpucap import devchain
from gpucap.signing import MarketOrder, sign_order, sign_request
from gpucap.trading import per_base_unit, quote_for
from scripts.deploy import PoolTerms, deploy_node_pool
from tests.backend.backend_helpers import ROOT, Stack, wait_for
from tests.dashboard.test_dashboard import (  # noqa: F401 - page: a fixture
    open_view,
    page,
    shoot,
    wait_points,
)
from tests.dashboard.wallet import NAME, PythonWallet

USD = 10**6


@pytest.fixture(scope="module")
def world(stack: Stack, admin, operator2, buyer) -> dict[str, Any]:
    """The admin (dev account 0) sells 6 GPU-hours of a future H100 window at 2.50 through
    the book; the buyer (dev account 3) takes 2 of them, relayed."""
    s = stack.deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (admin, operator2, buyer):
        s.stablecoin.drip(who, {"from": who})
    node = s.registry.registerNode(
        h100, 8, b"eu-west".ljust(32, b"\0"), 240_000 * USD, chain[-1].timestamp - 3_600,
        "0x" + "44" * 20, {"from": operator2},
    ).events["NodeRegistered"]["nodeId"]  # fmt: skip
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator2})
    s.registry.depositBond(node, 5_000 * USD, {"from": operator2})
    window = s.capacity.windowSeconds()
    start = (chain[-1].timestamp // window + 2) * window
    token = s.capacity.tokenIdFor(h100, start)
    offer = s.capacity.publishOffer(node, token, 50, 2 * USD, {"from": operator2}).return_value
    s.stablecoin.approve(s.capacity, 2**256 - 1, {"from": admin})
    s.capacity.buy(offer, 6, {"from": admin})
    s.capacity.setApprovalForAll(s.market, True, {"from": admin})
    s.stablecoin.approve(s.market, 2**256 - 1, {"from": buyer})
    order = MarketOrder(
        admin.address, s.capacity.address, token, True, 6, 15 * USD, 1, chain[-1].timestamp + 3_600
    )
    signature = sign_order(
        order, devchain.dev_private_key(0), market=s.market.address, chain_id=chain.id
    )
    placed = stack.post(
        "/api/v1/market/orders",
        json={
            "maker": order.maker, "asset": order.asset, "token_id": str(token), "sell": True,
            "amount": "6", "quote_amount": str(15 * USD), "nonce": "1", "expiry": order.expiry,
            "signature": "0x" + signature.hex(),
        },
    )  # fmt: skip
    assert placed.status_code == 201, placed.text
    found = stack.post(
        "/api/v1/market/match",
        json={"taker": buyer.address, "asset": s.capacity.address, "token_id": str(token),
              "side": "buy", "amount": "2", "limit_price": "2500000"},
    ).json()  # fmt: skip
    taker = Account.from_key(devchain.dev_private_key(3))
    req = sign_request(
        taker, s.forwarder.address, chain.id, found["to"], found["data"],
        s.forwarder.nonces(buyer.address), chain[-1].timestamp + 3_600, gas=found["gas"],
    )  # fmt: skip
    fill = stack.post("/api/v1/market/fills", json=req.api_body())
    assert fill.status_code == 202, fill.text
    assert stack.wait_final(fill.json()["action_id"])["status"] == "confirmed"
    params = {"asset": s.capacity.address, "token_id": str(token)}
    wait_for(
        lambda: stack.get("/api/v1/market/trades", params=params).json(), 30, "the trade indexed"
    )
    return {"token": str(token), "token_int": token, "node": node}


def test_the_market_view_shows_the_windows_book_and_last_trade(
    page: Any,  # noqa: F811 - the fixture
    stack: Stack,
    world: dict[str, Any],
) -> None:
    open_view(page, stack, "market")
    page.wait_for_selector("#market-book-card:not([hidden])")
    assert page.input_value("#market-instrument") == world["token"]
    page.wait_for_function(
        "() => document.querySelectorAll('#market-trades tbody tr').length === 1"
        " && !document.querySelector('#market-trades tbody td.muted')"
    )
    depth = page.locator("#market-depth tbody tr").all_inner_texts()
    assert [" ".join(r.split()) for r in depth] == ["ask $2.50 4 1"], depth
    trade = page.inner_text("#market-trades tbody tr")
    assert "$2.50" in trade and "$5.00" in trade, trade
    # The price index by source: the 6 GPU-hours sold at 2.00 (primary), the 2 traded at
    # 2.50 (secondary), and both: 17 / 8 = 2.125, floored to the base unit.
    assert wait_points(page, "market-price-chart", 3) == 3
    row = page.locator("#market-windows tbody tr").first
    cells = row.locator("td[data-source]").all_inner_texts()
    assert cells[:3] == ["$2.00", "$2.50", "$2.13"], cells
    assert cells[3] == "$2.50"  # the last trade: the secondary one
    shoot(page, "market-book")


# ---------------------------------------------------------------------------
# Trading from a browser wallet
# ---------------------------------------------------------------------------

BASE_FEE = 10**9  # wei: from the trader's first request on, only the relayer can pay gas
UNLIMITED = 2**256 - 1
SIGNING_JS = ROOT / "backend" / "dashboard" / "static" / "js" / "signing.js"
TRADER = Account.from_key(keccak(b"gpucap dashboard trader"))


@pytest.fixture
def trader(stack: Stack, world: dict[str, Any], admin, buyer) -> Any:
    """A wallet with no ETH, 20 tUSD and one GPU-hour of the world's window, whose network
    is chain 1 when the test starts (its user must switch). The buyer keeps its other
    GPU-hour and lets the market move it: it will sell it into the trader's bid."""
    s = stack.deployment.system
    wallet = PythonWallet(TRADER, chain_id=1)
    me = wallet.account.address
    s.stablecoin.transfer(me, 20 * USD, {"from": admin})
    s.capacity.safeTransferFrom(buyer, me, world["token_int"], 1, b"", {"from": buyer})
    s.capacity.setApprovalForAll(s.market, True, {"from": buyer})
    web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(BASE_FEE)])
    yield wallet
    web3.provider.make_request("anvil_setNextBlockBaseFeePerGas", ["0x0"])
    chain.mine()


@pytest.fixture
def trader_pool(stack: Stack, world: dict[str, Any], admin, operator2) -> Any:
    """The world's node's RevenuePool (its binding lists the shares on the market); the
    trader holds 4 of its shares. Made before ``trader`` charges a base fee."""
    s = stack.deployment.system
    pool = deploy_node_pool(
        s, admin, node_id=world["node"], operator=operator2.address,
        terms=PoolTerms(target_assets=1_000 * USD),
    )  # fmt: skip
    s.stablecoin.approve(pool, 4 * USD, {"from": admin})
    pool.deposit(4 * USD, TRADER.address, {"from": admin})
    return pool


def says(tab: Any, text: str) -> str:
    """The trade card's message once it says ``text``."""
    tab.wait_for_function(
        "t => document.getElementById('market-trade-message').textContent.includes(t)", arg=text
    )
    return tab.inner_text("#market-trade-message")


def my_orders(tab: Any, n: int) -> None:
    tab.wait_for_function(
        "n => document.querySelectorAll('#market-my-orders tbody tr[data-order]').length === n",
        arg=n,
    )


def test_a_wallet_trades_from_the_market_view(
    page: Any,  # noqa: F811 - the fixture
    stack: Stack,
    world: dict[str, Any],
    trader_pool: Any,
    trader: PythonWallet,
    refusals: set[tuple[int, str]],
    buyer,
) -> None:
    """Connect (two wallets announced: pick one), a wrong network said and switched, the
    GPU-hours approval declined in the wallet then given (a relayed forward request), a
    sell placed, a bid held back for want of an allowance, a tUSD permit, a crossing bid
    refused by the API, a bid placed, the sell cancelled (a relayed Market.cancel), the
    bid filled on-chain by a taker; then a pool-share permit and a share sell, filled too:
    the signatures the page asked the wallet for are those the contracts verify."""
    s, token = stack.deployment.system, world["token_int"]
    me = trader.account.address
    refusals.add((409, "/api/v1/market/orders"))  # the bid that crosses the book
    trader.install(page)
    open_view(page, stack, "market")
    page.wait_for_selector("#market-trade-card:not([hidden])")
    assert page.is_visible("#wallet-pick")
    page.select_option("#wallet-pick", label=NAME)
    page.click("#wallet-connect")
    page.wait_for_function(
        "a => document.getElementById('wallet-address').textContent === a", arg=me.lower()
    )
    page.wait_for_selector("#wallet-chain:not([hidden])")
    assert f"chain 1, gpucap runs on chain {chain.id}" in page.inner_text("#wallet-chain")
    page.check('input[name="market-order-side"][value="sell"]')
    page.fill("#market-order-amount", "1")
    page.fill("#market-order-price", "2.9")
    assert "for 2.9 tUSD in all" in page.inner_text("#market-order-terms")
    page.click("#market-order-submit")
    assert "switch networks first (nothing was signed)" in says(page, "Your wallet is on chain 1")
    page.click("#wallet-switch")
    page.wait_for_selector("#wallet-chain", state="hidden")
    assert trader.chain_id == chain.id and trader.signed == []

    # Selling GPU-hours needs the market's approval: declined in the wallet, then given.
    page.wait_for_selector("#market-approve:not([hidden])")
    assert "approval to move your GPU-hours" in page.inner_text("#market-approvals")
    trader.reject_next.add("eth_signTypedData_v4")
    page.click("#market-approve")
    says(page, "You declined the request in your wallet: nothing was signed or sent.")
    assert not s.capacity.isApprovedForAll(me, s.market)
    page.click("#market-approve")
    says(page, "Approved: the market may now move your GPU-hours.")
    assert s.capacity.isApprovedForAll(me, s.market)
    assert page.is_hidden("#market-approve")

    page.click("#market-order-submit")
    says(page, "is in the book (open): sell 1 at $2.90")
    my_orders(page, 1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#market-depth tbody tr')]"
        ".some(r => r.innerText.replace(/\\s+/g, ' ') === 'ask $2.90 1 1')"
    )

    # A bid before the market may spend the trader's tUSD: not signed; approved by a
    # permit; a bid that crosses the book: the API's refusal, plainly; then one that rests.
    page.check('input[name="market-order-side"][value="buy"]')
    page.fill("#market-order-price", "2.6")
    assert "approval to move your tUSD" in page.inner_text("#market-approvals")
    page.click("#market-order-submit")
    says(page, "Approve first: the market may not move your tUSD yet (nothing was signed).")
    assert len(trader.signed) == 2
    page.click("#market-approve")  # an EIP-2612 permit, submitted by the relayer
    says(page, "Approved: the market may now move your tUSD.")
    assert s.stablecoin.allowance(me, s.market) == UNLIMITED
    page.click("#market-order-submit")
    assert "take those orders" in says(page, "Refused (409 OrderCrossesBook): ")
    page.fill("#market-order-price", "2.4")
    page.click("#market-order-submit")
    says(page, "is in the book (open): buy 1 at $2.40")
    my_orders(page, 2)
    assert [t["primaryType"] for t in trader.signed] == [
        "ForwardRequest",
        "Order",
        "Permit",
        "Order",
        "Order",
    ]
    listed = stack.get(
        "/api/v1/market/orders", params={"maker": me, "status": ["open", "partially_filled"]}
    ).json()
    bid, ask = sorted(listed, key=lambda o: o["sell"])
    assert (ask["sell"], ask["amount"], ask["quote_amount"]) == (True, "1", "2900000")
    assert (bid["sell"], bid["amount"], bid["quote_amount"]) == (False, "1", "2400000")
    bad = stack.get("/api/v1/market/orders", params={"maker": "0x12"})
    assert (bad.status_code, bad.json()["code"]) == (422, "ValidationFailed")

    # Cancel the sell: the maker's Market.cancel as a relayed forward request.
    page.click(f'#market-my-orders button[data-cancel="{ask["order_hash"]}"]')
    says(page, "is cancelled on-chain")
    assert s.market.orderState(ask["order_hash"])[1] is True
    my_orders(page, 1)
    assert (
        page.get_attribute("#market-my-orders tbody tr[data-order]", "data-order")
        == (bid["order_hash"])
    )
    cancelled = stack.get("/api/v1/market/orders", params={"maker": me, "status": "cancelled"})
    assert [o["order_hash"] for o in cancelled.json()] == [ask["order_hash"]]

    # A taker sells into the bid: the Market verifies the signature the wallet made.
    found = stack.post(
        "/api/v1/market/match",
        json={"taker": buyer.address, "asset": s.capacity.address, "token_id": str(token),
              "side": "sell", "amount": "1", "limit_price": "2400000"},
    ).json()  # fmt: skip
    assert [f["order_hash"] for f in found["fills"]] == [bid["order_hash"]], found
    taker = Account.from_key(devchain.dev_private_key(3))
    req = sign_request(
        taker, s.forwarder.address, chain.id, found["to"], found["data"],
        s.forwarder.nonces(buyer.address), chain[-1].timestamp + 3_600, gas=found["gas"],
    )  # fmt: skip
    fill = stack.post("/api/v1/market/fills", json=req.api_body())
    assert fill.status_code == 202, fill.text
    assert stack.wait_final(fill.json()["action_id"])["status"] == "confirmed"
    maker_bps, _ = s.market.fees()
    assert s.capacity.balanceOf(me, token) == 2
    assert s.stablecoin.balanceOf(me) == 20 * USD - 2_400_000 - 2_400_000 * maker_bps // 10_000
    my_orders(page, 0)
    assert "No open orders." in page.inner_text("#market-my-orders")

    # Pool shares (18 decimals): a permit in the pool's own EIP-712 domain, then a sell of
    # 1.5 shares at 1.20 that a taker fills.
    pool = trader_pool
    page.wait_for_selector(f'#market-instrument option[value="{pool.address}"]', state="attached")
    page.select_option("#market-instrument", value=pool.address)
    page.check('input[name="market-order-side"][value="sell"]')
    page.fill("#market-order-amount", "1.5")
    page.fill("#market-order-price", "1.2")
    page.wait_for_selector("#market-approve:not([hidden])")
    assert "approval to move your shares of" in page.inner_text("#market-approvals")
    page.click("#market-approve")
    says(page, "Approved: the market may now move your shares of")
    assert pool.allowance(me, s.market) == UNLIMITED
    assert trader.signed[-1]["domain"]["verifyingContract"] == pool.address
    page.click("#market-order-submit")
    says(page, "is in the book (open): sell 1.5 at $1.20")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#market-depth tbody tr')]"
        ".some(r => r.innerText.replace(/\\s+/g, ' ') === 'ask $1.20 1.5 1')"
    )
    (shares,) = stack.get("/api/v1/market/orders", params={"maker": me, "status": "open"}).json()
    assert (shares["asset"], shares["amount"], shares["quote_amount"]) == (
        pool.address,
        str(15 * 10**17),
        "1800000",
    )
    found = stack.post(
        "/api/v1/market/match",
        json={"taker": buyer.address, "asset": pool.address, "token_id": "0", "side": "buy",
              "amount": str(15 * 10**17), "limit_price": "0.0000000000012"},
    ).json()  # fmt: skip
    req = sign_request(
        taker, s.forwarder.address, chain.id, found["to"], found["data"],
        s.forwarder.nonces(buyer.address), chain[-1].timestamp + 3_600, gas=found["gas"],
    )  # fmt: skip
    fill = stack.post("/api/v1/market/fills", json=req.api_body())
    assert fill.status_code == 202, fill.text
    assert stack.wait_final(fill.json()["action_id"])["status"] == "confirmed"
    assert pool.balanceOf(me) == 4 * 10**18 - 15 * 10**17
    my_orders(page, 0)
    assert web3.eth.get_balance(me) == 0  # it never needed gas
    shoot(page, "market-trade")


def test_order_terms_in_the_page_round_as_the_cli(
    page: Any,  # noqa: F811 - the fixture
    stack: Stack,
) -> None:
    """The page's quote for an amount and a price is the CLI's (gpucap market order), to
    the unit: GPU-hours and 18-decimal shares, a sell rounded up and a bid down."""
    cases = [
        (True, "6", "2.5", 0),
        (False, "7", "2.345678", 0),
        (True, "3", "0.0000001", 0),
        (False, "3", "0.0000001", 0),
        (True, "1.5", "1.0000001", 18),
        (False, "1.5", "1.0000001", 18),
        (True, "0.000000000000000007", "12.5", 18),
    ]
    open_view(page, stack, "market")
    got = page.evaluate(
        """async (cases) => {
          const m = await import('/dashboard/js/order_terms.js');
          return cases.map(([sell, amount, price, decimals]) => {
            try {
              const t = m.orderTerms({ sell, amount, price, decimals });
              return [t.amount.toString(), t.quote.toString()];
            } catch (err) { return err.message; }
          });
        }""",
        cases,
    )
    for (sell, amount, price, decimals), answer in zip(cases, got, strict=True):
        units = int(Decimal(amount).scaleb(decimals))
        quote = quote_for(units, per_base_unit(Decimal(price), decimals), sell=sell)
        if quote == 0:
            assert "less than one stablecoin unit" in answer
        else:
            assert answer == [str(units), str(quote)], (sell, amount, price)


def test_the_pages_calldata_selectors_are_the_compiled_functions() -> None:
    """The selectors js/signing.js encodes Market.cancel and setApprovalForAll with are
    those of the compiled ABIs (the browser has no keccak to derive them)."""
    text = SIGNING_JS.read_text()
    table = text[text.index("export const SELECTORS") :]
    table = table[: table.index("};")]
    selectors = dict(re.findall(r'"(\w+\([^"]*\))": "([0-9a-f]{8})"', table))
    compiled = {}
    for name in ("Market", "CapacityToken"):
        abi = json.loads((ROOT / "build" / "contracts" / f"{name}.json").read_text())["abi"]
        for item in abi:
            if item["type"] == "function":
                inputs = ",".join(collapse_if_tuple(i) for i in item["inputs"])
                compiled[f"{item['name']}({inputs})"] = item
    assert set(selectors) == {
        "cancel((address,address,uint256,bool,uint256,uint256,uint256,uint64))",
        "setApprovalForAll(address,bool)",
    }
    for signature, selector in selectors.items():
        assert signature in compiled, signature
        assert function_signature_to_4byte_selector(signature).hex() == selector
