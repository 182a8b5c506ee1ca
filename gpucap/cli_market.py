"""``python -m gpucap market …``: the secondary market's book, from a terminal.

Orders are signed here (EIP-712, the market's domain) and posted to the API's book;
a take asks the API to match, signs the Market call it answers as a forward request
and posts it as a fill, relayed gaslessly like a buy; a cancel is the maker's own
``Market.cancel`` (or ``cancelUpTo``), relayed the same way; approve gives the market
what a sell and a bid need without gas (a relayed setApprovalForAll, and EIP-2612 permits
of the stablecoin and pool shares that the relayer submits). Prices are tUSD per
GPU-hour for capacity tokens and per whole share for pool shares.
"""

from __future__ import annotations

import time
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Annotated, Any

import typer

from gpucap import actions
from gpucap.cli import (
    USD,
    Ctx,
    DevAccount,
    Keystore,
    _ctx,
    app,
    console,
    fail,
    follow,
    relay,
    report,
    show,
    wallet,
)
from gpucap.signing import MarketOrder, sign_order, sign_permit, sign_request

market_app = typer.Typer(
    help="The secondary market: book, trades, order, take, cancel, approve.",
    no_args_is_help=True,
)
app.add_typer(market_app, name="market")

SHARE_DECIMALS = 18
DAY = 24 * 3600
Asset = Annotated[
    str | None,
    typer.Option("--asset", help="a listed pool's address (default: the capacity token)"),
]
TokenId = Annotated[int, typer.Argument(help="capacity token id (class x window); 0 for shares")]
Side = Annotated[str, typer.Argument(help="buy or sell")]


def _asset(ctx: Ctx, asset: str | None) -> tuple[str, int]:
    """(address, decimals of one unit): the capacity token counts whole GPU-hours."""
    if asset is None:
        return ctx.deployment.contracts["CapacityToken"].address, 0
    return asset, SHARE_DECIMALS


def _side(side: str) -> bool:
    if side not in ("buy", "sell"):
        raise typer.BadParameter(f"{side!r}: buy or sell", param_hint="SIDE")
    return side == "sell"


def _per_base_unit(price: Decimal, decimals: int) -> Decimal:
    """tUSD per unit → stablecoin base units per asset base unit."""
    return price * USD / Decimal(10) ** decimals


def _price_cell(price: str, decimals: int) -> str:
    return f"{Decimal(price) * Decimal(10) ** decimals / USD:,.6f}".rstrip("0").rstrip(".")


@market_app.command("book")
def book(typer_ctx: typer.Context, token_id: TokenId, asset: Asset = None) -> None:
    """Depth of one instrument: asks and bids by price level."""
    ctx = _ctx(typer_ctx)
    address, decimals = _asset(ctx, asset)
    depth = ctx.get("/api/v1/market/book", asset=address, token_id=str(token_id))
    if ctx.as_json:
        console.print_json(data=depth)
        return
    rows = [
        {**lv, "side": side, "price": _price_cell(lv["price"], decimals)}
        for side, levels in (("ask", reversed(depth["asks"])), ("bid", depth["bids"]))
        for lv in levels
    ]
    show(ctx, rows, f"book of {address} id {token_id}", ["side", "price", "amount", "orders"])


@market_app.command("trades")
def trades(
    typer_ctx: typer.Context, token_id: TokenId, asset: Asset = None, limit: int = 20
) -> None:
    """The instrument's last trades, newest first."""
    ctx = _ctx(typer_ctx)
    address, decimals = _asset(ctx, asset)
    rows = ctx.get("/api/v1/market/trades", asset=address, token_id=str(token_id), limit=limit)
    if not ctx.as_json:
        for row in rows:
            row["price"] = _price_cell(row["price"], decimals)
    show(
        ctx,
        rows,
        f"trades of {address} id {token_id}",
        ["block_number", "price", "amount", "quote", "taker_fee", "maker", "taker"],
    )


@market_app.command("order")
def order(
    typer_ctx: typer.Context,
    side: Side,
    token_id: TokenId,
    amount: Annotated[int, typer.Argument(help="units (GPU-hours, or share base units)")],
    price: Annotated[str, typer.Argument(help="tUSD per GPU-hour (per share for pools)")],
    asset: Asset = None,
    expires_in: Annotated[int, typer.Option(help="seconds from the chain's time")] = DAY,
    nonce: Annotated[
        int | None, typer.Option(help="default: milliseconds now (cancel --all goes by it)")
    ] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Sign a limit order and place it in the book (it rests there; to cross, take)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    sell = _side(side)
    address, decimals = _asset(ctx, asset)
    # Rounded in the maker's favour, as the market rounds its fills.
    quote = (amount * _per_base_unit(Decimal(price), decimals)).to_integral_value(
        ROUND_UP if sell else ROUND_DOWN
    )
    signing = actions.signing_of(ctx.client, signer.address)
    info = ctx.get("/api/v1/market")
    made = MarketOrder(
        maker=signer.address,
        asset=address,
        token_id=token_id,
        sell=sell,
        amount=amount,
        quote_amount=int(quote),
        nonce=int(time.time() * 1000) if nonce is None else nonce,
        expiry=signing.chain_time + expires_in,
    )
    signature = sign_order(
        made,
        signer.key,
        market=info["domain"]["verifyingContract"],
        chain_id=info["domain"]["chainId"],
    )
    placed = ctx.post(
        "/api/v1/market/orders",
        {
            "maker": made.maker,
            "asset": made.asset,
            "token_id": str(made.token_id),
            "sell": made.sell,
            "amount": str(made.amount),
            "quote_amount": str(made.quote_amount),
            "nonce": str(made.nonce),
            "expiry": made.expiry,
            "signature": "0x" + signature.hex(),
        },
    )
    show(ctx, placed, "order", ["order_hash", "status", "price", "amount", "expiry"])


@market_app.command("take")
def take(
    typer_ctx: typer.Context,
    side: Side,
    token_id: TokenId,
    amount: Annotated[int, typer.Argument(help="units to take at most")],
    limit_price: Annotated[str, typer.Argument(help="tUSD per unit, worst you accept")],
    asset: Asset = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Take resting orders up to a limit price: matched by the API, signed here, relayed."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    _side(side)
    address, decimals = _asset(ctx, asset)
    limit = _per_base_unit(Decimal(limit_price), decimals)
    found = ctx.post(
        "/api/v1/market/match",
        {
            "taker": signer.address,
            "asset": address,
            "token_id": str(token_id),
            "side": side,
            "amount": str(amount),
            "limit_price": format(limit.normalize(), "f"),
        },
    )
    signing = actions.signing_of(ctx.client, signer.address)
    req = sign_request(
        signer,
        ctx.deployment.contracts["GpucapForwarder"].address,
        ctx.deployment.chain_id,
        found["to"],
        found["data"],
        signing.nonce,
        signing.deadline,
        gas=found["gas"],
    )
    accepted = ctx.post("/api/v1/market/fills", req.api_body())
    if not ctx.as_json:
        console.print(
            f"matched {found['amount']} for {int(found['quote']) / USD:,.6f} tUSD before fees "
            f"in {len(found['fills'])} order(s): action {accepted['action_id']}"
        )
    report(ctx, follow(ctx, accepted["action_id"]))


@market_app.command("cancel")
def cancel(
    typer_ctx: typer.Context,
    order_hash: Annotated[str | None, typer.Argument(help="the order to cancel")] = None,
    all_orders: Annotated[
        bool, typer.Option("--all", help="every order of yours with a nonce below now (ms)")
    ] = False,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Cancel one of your orders on-chain (or all with --all), gasless."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    market = ctx.contract("Market")
    if all_orders:
        data = market.encode_abi("cancelUpTo", args=[int(time.time() * 1000)])
    elif order_hash is not None:
        placed: dict[str, Any] = ctx.get(f"/api/v1/market/orders/{order_hash}")
        made = MarketOrder(
            maker=placed["maker"],
            asset=placed["asset"],
            token_id=int(placed["token_id"]),
            sell=placed["sell"],
            amount=int(placed["amount"]),
            quote_amount=int(placed["quote_amount"]),
            nonce=int(placed["nonce"]),
            expiry=placed["expiry"],
        )
        data = market.encode_abi("cancel", args=[made.as_tuple()])
    else:
        raise typer.BadParameter("name an ORDER_HASH or pass --all")
    relay(ctx, signer, "Market", data)


Pools = Annotated[
    list[str] | None,
    typer.Option("--asset", help="a listed pool whose shares you may sell (repeat for several)"),
]
UNLIMITED = 2**256 - 1


@market_app.command("approve")
def approve(
    typer_ctx: typer.Context,
    pools: Pools = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Give the market every approval a trade needs, gasless: your GPU-hours (a relayed
    setApprovalForAll), the stablecoin bids pay with and, with --asset, a pool's shares
    (EIP-2612 permits signed here, submitted by the relayer). Allowances are unlimited and
    name the Market only; what is there already is left alone."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    info = ctx.get(f"/api/v1/market/approvals/{signer.address}", pool=pools or None)
    pending: list[tuple[str, str]] = []  # (what, action id)
    done: list[dict[str, Any]] = []
    if info["capacity_approved"]:
        done.append({"what": "GPU-hours", "status": "approved already"})
    else:
        data = ctx.contract("CapacityToken").encode_abi(
            "setApprovalForAll", args=[info["spender"], True]
        )
        try:
            accepted = actions.forward(ctx.client, ctx.deployment, signer, "CapacityToken", data)
        except actions.ApiRejected as exc:
            fail(exc)
        pending.append(("GPU-hours", accepted["action_id"]))
    deadline = info["chain_time"] + actions.DEFAULT_DEADLINE_SECONDS
    for token in info["tokens"]:
        what = "tUSD" if token["kind"] == "stablecoin" else f"shares of {token['token']}"
        if int(token["allowance"]) == UNLIMITED:
            done.append({"what": what, "status": "approved already"})
            continue
        domain = token["domain"]
        v, r, s = sign_permit(
            signer,
            token_name=domain["name"],
            token_version=domain["version"],
            token=token["token"],
            spender=info["spender"],
            value=UNLIMITED,
            nonce=int(token["nonce"]),
            deadline=deadline,
            chain_id=domain["chainId"],
        )
        accepted = ctx.post(
            "/api/v1/market/permits",
            {
                "token": token["token"],
                "owner": signer.address,
                "spender": info["spender"],
                "value": str(UNLIMITED),
                "nonce": token["nonce"],
                "deadline": deadline,
                "signature": "0x" + (r + s + bytes([v])).hex(),
            },
        )
        if accepted["action_id"] is None:
            done.append({"what": what, "status": accepted["status"]})
        else:
            pending.append((what, accepted["action_id"]))
    for what, action_id in pending:
        action = follow(ctx, action_id)
        done.append(
            {
                "what": what,
                "status": action["status"],
                "action_id": action_id,
                "tx_hash": action.get("tx_hash"),
                "error": action.get("error"),
            }
        )
    show(ctx, done, f"market approvals of {signer.address}", ["what", "status", "tx_hash", "error"])
    if any(d["status"] == "failed" for d in done):
        raise typer.Exit(code=1)
