"""The market view's order book in a real browser (Debian's Chromium via Playwright)
against the real stack: an order placed and partly taken through the API shows as the
window's depth and last trade."""

from __future__ import annotations

from typing import Any

import pytest
from brownie import chain
from eth_account import Account

from gpucap import devchain
from gpucap.signing import MarketOrder, sign_order, sign_request
from tests.backend.backend_helpers import Stack, wait_for
from tests.dashboard.test_dashboard import (  # noqa: F401 - page: a fixture
    open_view,
    page,
    shoot,
    wait_points,
)

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
    return {"token": str(token)}


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
