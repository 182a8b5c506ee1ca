"""Matching a taker against the book, and relaying the taker's fill exactly once.

A taker asks for N units of an instrument at a limit price; ``match`` walks the other
side of the book best price first, then oldest first, skips the taker's own orders
(Market refuses self-trades) and orders whose maker can no longer deliver (dropped
from the book), and answers the Market call that takes them: ``fill`` for one order,
``fillBatch`` for several. The taker signs that call as an ERC-2771 forward request;
``accept_fill`` checks it is a fill of orders in the book that are still free (not
taken by another fill in flight), validates it as every forward request is (signature,
nonce, deadline, the simulated call) and stores it as one forward action, relayed by
the worker in its batches like a buy. The forwarder's nonce makes the fill happen at
most once; the action's idempotency key makes the same signed request one action.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from eth_abi.exceptions import DecodingError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.db.models import Action, ActionKind, MarketOrderRow, utcnow
from backend.services.chain import Chain
from backend.services.market.book import (
    FILL_FUNCTIONS,
    MarketRejected,
    OrderView,
    chain_time,
    decode_fills,
    drop,
    encode_fills,
    fill_quote,
    funding_problem,
    live_orders,
    market_contract,
    order_hash,
    order_of,
    order_views,
    remember_fill_amounts,
)
from backend.services.relaying import forward
from backend.services.relaying.actions import create_action, unmark_enqueued
from backend.services.relaying.forward import OpenRequest
from gpucap.signing import SignedRequest


@dataclass(frozen=True)
class MatchedFill:
    view: OrderView
    amount: int
    quote: int


@dataclass(frozen=True)
class Match:
    fills: list[MatchedFill]
    to: str  # the market
    data: str  # 0x calldata of Market.fill or fillBatch
    function: str

    @property
    def amount(self) -> int:
        return sum(f.amount for f in self.fills)

    @property
    def quote(self) -> int:
        return sum(f.quote for f in self.fills)


def match(
    session: Session,
    chain: Chain,
    *,
    taker: str,
    asset: str,
    token_id: int,
    buy: bool,
    amount: int,
    limit_price: Fraction,
    now: int,
) -> Match:
    """The fills that take up to ``amount`` units at ``limit_price`` or better (a buy
    takes sell orders priced at or under it, a sell takes buy orders at or over it)."""
    book = live_orders(session, chain, asset, str(token_id), now)
    left = amount
    fills: list[MatchedFill] = []
    for view in book:
        if view.row.sell != buy:
            continue
        if (view.price > limit_price) if buy else (view.price < limit_price):
            break  # sorted best first: nothing further crosses
        if view.row.maker.lower() == taker.lower():
            continue
        take = min(view.remaining, left)
        order = order_of(view.row)
        quote = fill_quote(order, take)
        if quote == 0:
            continue  # Market refuses a fill that costs nothing (MarketZeroQuote)
        if (problem := funding_problem(chain, order, take)) is not None:
            drop(session, view.row, problem[0])
            continue
        fills.append(MatchedFill(view, take, quote))
        left -= take
        if left == 0:
            break
    if not fills:
        raise MarketRejected(
            f"no {'sell' if buy else 'buy'} order of {asset} id {token_id} at "
            f"{'or under' if buy else 'or over'} the limit price",
            code="NoMatch",
            status=409,
        )
    function, data = encode_fills(
        chain, [(order_of(f.view.row), _sig(f.view), f.amount) for f in fills]
    )
    return Match(fills, market_contract(chain).address, data, function)


def _sig(view: OrderView) -> bytes:
    return bytes.fromhex(view.row.signature[2:])


def accept_fill(
    session: Session, chain: Chain, signed: SignedRequest, *, nonce_hint: int | None, enqueue: Any
) -> tuple[Action | OpenRequest, bool]:
    """The taker's signed forward request of Market.fill/fillBatch, as a forward action."""
    market = market_contract(chain)
    if signed.to.lower() != market.address.lower():
        raise MarketRejected(f"a fill calls the market {market.address}", code="NotAFill")
    try:
        fills = decode_fills(chain, signed.data)
    except (ValueError, OverflowError, DecodingError) as exc:  # short or garbled arguments
        raise MarketRejected(f"data is not a Market call: {exc}", code="NotAFill") from exc
    open_action = forward.open_request_of(session, signed.sender)
    if open_action is not None:
        if open_action.params.get("signature") == "0x" + signed.signature.hex():
            return open_action, False  # the same request again: its action
        raise MarketRejected(
            f"{signed.sender} has a request in flight (action {open_action.id}); "
            "sign the next one after it completes",
            code="RequestInFlight",
            status=409,
        )
    now = chain_time(chain)  # read once: nothing below the lock waits on the node
    hashes = _hashes(chain, fills)  # EIP-712 hashing: once, not per check
    remember_fill_amounts(
        chain, market.address, signed.data, [(h, f[2]) for h, f in zip(hashes, fills, strict=True)]
    )
    _check_free(session, chain, fills, hashes, now)  # before the chain's checks: cheap
    params, identity = forward.validate_with_identity(
        chain, signed, nonce_hint=nonce_hint, book_checked=True
    )
    if params.function not in FILL_FUNCTIONS:
        raise MarketRejected(f"Market.{params.function} is not a fill", code="NotAFill")
    # What is free, again, under a write lock on the orders that create_action's commit
    # releases: a second taker's fill of the same units waits here, then sees this one
    # in flight (on SQLite the statement takes the database's write lock, on PostgreSQL
    # the rows'). The chain was read before, outside the lock.
    session.commit()
    session.execute(
        update(MarketOrderRow)
        .where(MarketOrderRow.order_hash.in_(hashes))
        .values(dropped=MarketOrderRow.dropped)
    )
    _check_free(session, chain, fills, hashes, now)
    action, created = create_action(
        session,
        kind=ActionKind.FORWARD,
        idempotency_key=params.idempotency_key,
        params=params.as_params(),
        chain=identity,
        enqueued_at=utcnow(),
        likely_new=True,
    )
    if created and not enqueue(action.id, batched=True):
        unmark_enqueued(session, action.id)
    return action, created


def _check_free(
    session: Session, chain: Chain, fills: list[Any], hashes: list[str], now: int
) -> None:
    """Every order is in the book and what it has left (net of fills in flight) covers
    its fill: two takers of one order never both get a fill relayed. ``hashes``: the
    fills' order hashes (_hashes)."""
    wanted: dict[str, int] = {}
    for digest, (_, _, amount) in zip(hashes, fills, strict=True):
        wanted[digest] = wanted.get(digest, 0) + amount
    rows = session.scalars(
        select(MarketOrderRow).where(MarketOrderRow.order_hash.in_(list(wanted)))
    ).all()
    missing = set(wanted) - {r.order_hash for r in rows}
    if missing:
        raise MarketRejected(
            f"order(s) {', '.join(sorted(missing))} are not in the book", code="OrderNotInBook"
        )
    for view in order_views(session, chain, rows, now):
        need = wanted[view.row.order_hash]
        if view.remaining < need:
            raise MarketRejected(
                f"order {view.row.order_hash} is {view.status} with {view.remaining} free "
                f"({view.in_flight} taken by fills in flight); the fill wants {need}",
                code="OrderTaken",
                status=409,
            )


def _hashes(chain: Chain, fills: list[Any]) -> list[str]:
    market = market_contract(chain).address
    return [
        order_hash(order, market=market, chain_id=chain.deployment.chain_id)
        for order, _, _ in fills
    ]
