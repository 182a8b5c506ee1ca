"""The secondary market (``/api/v1/market``): signed orders into the book, depth and
trades per instrument, an order's state and a maker's orders, and takers matched into
relayed fills.

The book and matching are ``backend/services/market``; a fill travels as a forward
request through the same relaying path as a buy, and a maker cancels an order with a
forward request of ``Market.cancel`` / ``cancelUpTo`` through ``POST /api/v1/forward``.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Annotated, Literal

from eth_keys.exceptions import BadSignature
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.app.deps import ChainDep, EnqueueDep, Enqueuer, SessionDep, SettingsDep
from backend.app.errors import ApiError
from backend.app.params import Limit, address_param
from backend.app.relayed import forward_accepted
from backend.app.schemas import ErrorPublic, ForwardAccepted, ForwardCreate
from backend.app.schemas_market import (
    LevelPublic,
    MarketInfoPublic,
    MarketOrderCreate,
    MarketOrderPublic,
    MarketTradePublic,
    MatchCreate,
    MatchedFillPublic,
    MatchPublic,
    OrderBookPublic,
)
from backend.db.models import Action, MarketFillRow, MarketOrderRow
from backend.services.chain import Chain
from backend.services.market import book, matching, placing
from backend.services.market.book import MarketRejected, OrderView
from backend.services.relaying.forward import OpenRequest
from gpucap.signing import MARKET_NAME, ORDER_TYPES, MarketOrder, SignedRequest

router = APIRouter(prefix="/market", tags=["market"])

UNAVAILABLE = {503: {"model": ErrorPublic, "description": "Chain or database unavailable"}}
TokenIdQuery = Annotated[
    str, Query(pattern=r"^[0-9]{1,78}$", description="token id (decimal); 0 for pool shares")
]
AssetQuery = Annotated[str, Query(description="the CapacityToken or a listed pool")]
# Gas a taker's forward request should carry: a fill measured 99k inside the call, a
# batch about 59k per order (README, market gas); with margin. The API simulates the
# call as a transaction of this gas (forward.simulate), intrinsic and calldata gas
# included: the first trade of an id measured 143k so, and a taker new to the token
# and a fee recipient's first fee add ~17k each. At 180k the demo's first take was
# refused, out of gas in the simulation.
FILL_GAS, PER_EXTRA_ORDER_GAS = 250_000, 90_000


def _token_id(text: str) -> int:
    value = int(text)
    if value >= 2**256:
        raise ApiError(422, "ValidationFailed", "token_id: above the uint256 maximum")
    return value


def _now(session: Session, chain: Chain) -> int:
    """The chain time order states are taken at: the index's newest block, else the node's."""
    indexed = book.indexed_time(session)
    return indexed if indexed is not None else book.chain_time(chain)


def _public(view: OrderView) -> MarketOrderPublic:
    r = view.row
    return MarketOrderPublic(
        order_hash=r.order_hash,
        maker=r.maker,
        asset=r.asset,
        token_id=r.token_id,
        sell=r.sell,
        amount=str(r.amount),
        quote_amount=str(r.quote_amount),
        price=book.price_text(view.price),
        nonce=str(r.nonce),
        expiry=r.expiry,
        signature=r.signature,
        status=view.status,  # type: ignore[arg-type]
        filled=str(view.filled),
        in_flight=str(view.in_flight),
        remaining=str(view.remaining),
        in_book=r.dropped is None and view.remaining > 0,
        dropped=r.dropped,
    )


@router.get("", responses=UNAVAILABLE)
def market_info(chain: ChainDep) -> MarketInfoPublic:
    """What a maker signs an order with (the market's EIP-712 domain and Order type) and
    the fees fills pay now."""
    market = book.market_contract(chain)
    maker_bps, taker_bps = chain.call("reading fees", lambda: market.functions.fees().call())
    return MarketInfoPublic(
        domain={
            "name": MARKET_NAME,
            "version": "1",
            "chainId": chain.deployment.chain_id,
            "verifyingContract": market.address,
        },
        types=ORDER_TYPES,
        capacity_token=chain.contract(book.CAPACITY).address,
        stablecoin=chain.stablecoin.address,
        maker_fee_bps=maker_bps,
        taker_fee_bps=taker_bps,
    )


@router.post(
    "/orders",
    status_code=201,
    responses={
        200: {"model": MarketOrderPublic, "description": "The same order: already in the book"},
        409: {"model": ErrorPublic, "description": "`OrderCrossesBook`: take instead"},
        422: {
            "model": ErrorPublic,
            "description": "Refused: code says why (signature, expiry, instrument, window, "
            "maker's balance or approval, the order's on-chain state; the maker's open orders "
            "with this one beyond its balance or allowance, `OpenOrdersExceedBalance`, "
            "`OpenOrdersExceedAllowance`, or its count cap, `TooManyOpenOrders`)",
        },
        **UNAVAILABLE,
    },
)
def place_order(
    body: MarketOrderCreate,
    response: Response,
    session: SessionDep,
    chain: ChainDep,
    settings: SettingsDep,
) -> MarketOrderPublic:
    """Accept a signed limit order into the book once every check a fill would make
    passes now and the maker's open orders, with it, stay within its funds and its count
    cap; an order that would cross the book is refused (a taker takes)."""
    order = MarketOrder(
        maker=body.maker,
        asset=body.asset,
        token_id=_token_id(body.token_id),
        sell=body.sell,
        amount=int(body.amount),
        quote_amount=int(body.quote_amount),
        nonce=int(body.nonce),
        expiry=body.expiry,
    )
    try:
        row, created = placing.accept_order(
            session,
            chain,
            order,
            bytes.fromhex(body.signature[2:]),
            max_open=settings.market_max_open_orders_per_maker,
        )
    except BadSignature as exc:
        raise ApiError(422, "InvalidSignature", f"the signature does not recover: {exc}") from exc
    response.status_code = 201 if created else 200
    (view,) = book.order_views(session, chain, [row], _now(session, chain))
    return _public(view)


ORDERS_PAGE = 500  # rows read at once when listing a maker's orders
OrderStatus = Literal["open", "partially_filled", "filled", "cancelled", "expired"]


@router.get(
    "/orders",
    responses={422: {"model": ErrorPublic, "description": "Invalid request"}, **UNAVAILABLE},
)
def maker_orders(
    maker: Annotated[str, Query(description="the maker whose orders to list")],
    session: SessionDep,
    chain: ChainDep,
    status: Annotated[
        list[OrderStatus] | None,
        Query(description="only orders in these states (repeat for several); default all"),
    ] = None,
    limit: Limit = 100,
) -> list[MarketOrderPublic]:
    """A maker's orders in the book, newest first, each in its state as the index follows
    the chain (what a wallet shows as "my orders", with what it may still cancel). An
    order the book dropped (``dropped``: funds or approval went) is listed too: it is
    still signed and could fill on-chain until cancelled or expired."""
    address = address_param(maker, "maker")
    now = _now(session, chain)
    query = select(MarketOrderRow).where(MarketOrderRow.maker == address)
    if status is not None and "expired" not in status:
        # Only an order still ahead of its expiry can be in another state: the rows read
        # are what the maker rests now, not its whole history.
        query = query.where(MarketOrderRow.expiry > now)
    query = query.order_by(MarketOrderRow.id.desc())
    found: list[OrderView] = []
    for offset in itertools.count(0, ORDERS_PAGE):  # states are known only once read
        rows = session.scalars(query.offset(offset).limit(ORDERS_PAGE)).all()
        views = book.order_views(session, chain, rows, now) if rows else []
        found += [v for v in views if status is None or v.status in status]
        if len(found) >= limit or len(rows) < ORDERS_PAGE:
            break
    return [_public(v) for v in found[:limit]]


@router.get(
    "/orders/{order_hash}",
    responses={404: {"model": ErrorPublic, "description": "No such order"}, **UNAVAILABLE},
)
def read_order(
    order_hash: Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$")],
    session: SessionDep,
    chain: ChainDep,
) -> MarketOrderPublic:
    """An order's state as the index follows the chain: open, partially filled, filled,
    cancelled or expired, with the units in flight in relayed fills."""
    row = session.scalar(
        select(MarketOrderRow).where(MarketOrderRow.order_hash == order_hash.lower())
    )
    if row is None:
        raise ApiError(404, "NotFound", f"no order {order_hash} in the book")
    (view,) = book.order_views(session, chain, [row], _now(session, chain))
    return _public(view)


@router.get("/book", responses=UNAVAILABLE)
def order_book(
    asset: AssetQuery, token_id: TokenIdQuery, session: SessionDep, chain: ChainDep
) -> OrderBookPublic:
    """Depth of one instrument by price level (units a taker can take now, orders per
    level), asks ascending and bids descending."""
    address = address_param(asset, "asset")
    now = _now(session, chain)
    live = book.live_orders(session, chain, address, str(_token_id(token_id)), now)

    def levels(sell: bool) -> list[LevelPublic]:
        return [
            LevelPublic(price=book.price_text(lv.price), amount=str(lv.amount), orders=lv.orders)
            for lv in book.depth(live, sell=sell)
        ]

    return OrderBookPublic(
        asset=address, token_id=token_id, asks=levels(True), bids=levels(False), as_of=now
    )


@router.get("/trades")
def market_trades(
    asset: AssetQuery, token_id: TokenIdQuery, session: SessionDep, limit: Limit = 50
) -> list[MarketTradePublic]:
    """The instrument's fills as indexed, newest first, with self-trades and wash trades
    flagged."""
    address = address_param(asset, "asset")
    rows = session.scalars(
        select(MarketFillRow)
        .where(MarketFillRow.asset == address, MarketFillRow.token_id == str(int(token_id)))
        .order_by(MarketFillRow.block_number.desc(), MarketFillRow.log_index.desc())
        .limit(limit)
    ).all()
    return [
        MarketTradePublic(
            block_number=r.block_number,
            log_index=r.log_index,
            tx_hash=r.tx_hash,
            order_hash=r.order_hash,
            maker=r.maker,
            taker=r.taker,
            maker_sells=r.maker_sells,
            amount=str(r.amount),
            quote=str(r.quote),
            maker_fee=str(r.maker_fee),
            taker_fee=str(r.taker_fee),
            price=book.price_text(book.price_of(r.amount, r.quote)),
            block_timestamp=r.block_timestamp,
            wash_flag=r.wash_flag,  # type: ignore[arg-type]
        )
        for r in rows
    ]


_PRICE = re.compile(r"^([0-9]+)(?:\.([0-9]+))?$")


def _price(text: str) -> Fraction:
    whole, frac = _PRICE.match(text).groups()  # type: ignore[union-attr]  # schema pattern
    return Fraction(int(whole + (frac or "")), 10 ** len(frac or ""))


@router.post(
    "/match",
    responses={
        409: {"model": ErrorPublic, "description": "`NoMatch`: nothing crosses the limit"},
        422: {"model": ErrorPublic, "description": "Invalid request"},
        **UNAVAILABLE,
    },
)
def match_taker(body: MatchCreate, session: SessionDep, chain: ChainDep) -> MatchPublic:
    """Match a taker's request against the book (price, then time) and answer the Market
    call that takes those orders, for the taker to sign as a forward request. Nothing is
    reserved until the signed fill is posted to /api/v1/market/fills."""
    token_id = _token_id(body.token_id)
    now = book.instrument_time(chain, body.asset, token_id)
    found = matching.match(
        session,
        chain,
        taker=body.taker,
        asset=body.asset,
        token_id=token_id,
        buy=body.side == "buy",
        amount=int(body.amount),
        limit_price=_price(body.limit_price),
        now=now,
    )
    return MatchPublic(
        fills=[
            MatchedFillPublic(
                order_hash=f.view.row.order_hash,
                maker=f.view.row.maker,
                amount=str(f.amount),
                quote=str(f.quote),
                price=book.price_text(f.view.price),
            )
            for f in found.fills
        ],
        amount=str(found.amount),
        quote=str(found.quote),
        to=found.to,
        function=found.function,  # type: ignore[arg-type]
        data=found.data,
        gas=FILL_GAS + PER_EXTRA_ORDER_GAS * (len(found.fills) - 1),
    )


@router.post(
    "/fills",
    status_code=202,
    responses={
        200: {"model": ForwardAccepted, "description": "The same signed fill: its action"},
        409: {
            "model": ErrorPublic,
            "description": "`OrderTaken` (another fill in flight has it) or `RequestInFlight`",
        },
        422: {
            "model": ErrorPublic,
            "description": "Refused: `NotAFill`, `OrderNotInBook`, or as POST /api/v1/forward",
        },
        **UNAVAILABLE,
    },
)
async def submit_fill(
    body: ForwardCreate, request: Request, response: Response, chain: ChainDep, enqueue: EnqueueDep
) -> ForwardAccepted:
    """Relay a taker's signed forward request of Market.fill / fillBatch over book orders:
    checked like any forward request, and against fills already in flight."""
    action, created = await run_in_threadpool(
        _accept_fill, request.app.state.sessions, body, chain, enqueue
    )
    return forward_accepted(request, response, action, created=created)


def _accept_fill(
    sessions: sessionmaker[Session], body: ForwardCreate, chain: Chain, enqueue: Enqueuer
) -> tuple[Action | OpenRequest, bool]:
    signed = SignedRequest(
        sender=body.sender,
        to=body.to,
        value=body.value,
        gas=body.gas,
        nonce=body.nonce or 0,
        deadline=body.deadline,
        data=bytes.fromhex(body.data[2:]),
        signature=bytes.fromhex(body.signature[2:]),
    )
    with sessions() as session:
        try:
            return matching.accept_fill(
                session, chain, signed, nonce_hint=body.nonce, enqueue=enqueue
            )
        except BadSignature as exc:
            raise MarketRejected(
                f"the signature does not recover: {exc}", code="InvalidSignature"
            ) from exc
