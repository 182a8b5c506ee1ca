"""``python -m gpucap market …``: the secondary market's book, from a terminal.

Orders are signed here (EIP-712, the market's domain) and posted to the API's book;
a take asks the API to match, signs the Market call it answers as a forward request
and posts it as a fill, relayed gaslessly like a buy; a cancel is the maker's own
``Market.cancel`` (or ``cancelUpTo``), relayed the same way; approve gives the market
what a sell and a bid need without gas (a relayed setApprovalForAll, and EIP-2612 permits
of the stablecoin and pool shares that the relayer submits). Those steps are
gpucap/trading.py's, which the demo's traders take too. Prices are tUSD per GPU-hour
for capacity tokens and per whole share for pool shares.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import typer

from gpucap import actions, trading
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
from gpucap.signing import MarketOrder

market_app = typer.Typer(
    help="The secondary market: book, trades, order, take, cancel, approve.",
    no_args_is_help=True,
)
app.add_typer(market_app, name="market")

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
    return asset, trading.SHARE_DECIMALS


def _side(side: str) -> bool:
    if side not in ("buy", "sell"):
        raise typer.BadParameter(f"{side!r}: buy or sell", param_hint="SIDE")
    return side == "sell"


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
    signing = actions.signing_of(ctx.client, signer.address)
    info = ctx.get("/api/v1/market")
    made = MarketOrder(
        maker=signer.address,
        asset=address,
        token_id=token_id,
        sell=sell,
        amount=amount,
        quote_amount=trading.quote_for(
            amount, trading.per_base_unit(Decimal(price), decimals), sell=sell
        ),
        nonce=trading.order_nonce() if nonce is None else nonce,
        expiry=signing.chain_time + expires_in,
    )
    try:
        placed = trading.place(ctx.client, signer, made, info)
    except actions.ApiRejected as exc:
        fail(exc)
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
    limit = trading.per_base_unit(Decimal(limit_price), decimals)
    try:
        taken = trading.take(
            ctx.client,
            ctx.deployment,
            signer,
            asset=address,
            token_id=token_id,
            buy=side == "buy",
            amount=amount,
            limit_price=format(limit.normalize(), "f"),
        )
    except actions.ApiRejected as exc:
        fail(exc)
    found = taken.matched
    if not ctx.as_json:
        console.print(
            f"matched {found['amount']} for {int(found['quote']) / USD:,.6f} tUSD before fees "
            f"in {len(found['fills'])} order(s): action {taken.accepted['action_id']}"
        )
    report(ctx, follow(ctx, taken.accepted["action_id"]))


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
    if all_orders:
        data = trading.cancel_data(ctx.deployment, up_to=trading.order_nonce())
    elif order_hash is not None:
        placed: dict[str, Any] = ctx.get(f"/api/v1/market/orders/{order_hash}")
        data = trading.cancel_data(ctx.deployment, trading.order_of(placed))
    else:
        raise typer.BadParameter("name an ORDER_HASH or pass --all")
    relay(ctx, signer, "Market", data)


Pools = Annotated[
    list[str] | None,
    typer.Option("--asset", help="a listed pool whose shares you may sell (repeat for several)"),
]


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
    try:
        given = trading.approve(ctx.client, ctx.deployment, signer, pools)
    except actions.ApiRejected as exc:
        fail(exc)
    done = given.done
    for what, action_id in given.pending:
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
