"""Orders into the book: every check a fill would make, and the maker's limits.

An order is accepted only when it could fill now: signed by its maker in the one form
the chain accepts, not expired, not cancelled, for a listed instrument whose window has
not started, funded (balance and approval), and not crossing the book (a taker takes
instead). Each order alone being funded is not enough: a maker could rest ten orders
for the same five GPU-hours, and every taker after the first would find it unfunded.
So the maker's open orders together are capped:

- the sells of one instrument (asset and token id: one balance) by what the maker holds
  of it and, for pool shares, by the Market's allowance;
- the bids of every instrument (they all pay in the stablecoin) by the maker's
  stablecoin and the Market's allowance, each bid counted at its quote and maker fee;
- and at most ``max_open`` open orders per maker, whatever they are.

What an open order commits is what the index has not seen fill yet (fills in flight
included). A fill mined in the last seconds, before the indexer reached it, has left
the balance and still counts as committed: the check errs on the side of refusing for
those seconds, never of letting the book promise more than the maker has.

The sums are read and the order written under a per-maker lock (PostgreSQL: an
advisory lock; SQLite: its write lock), so two orders placed at once cannot both fit
in the same funds. The chain is read before the lock: nothing waits on the node while
holding it.
"""

from __future__ import annotations

import hashlib

from eth_utils import to_checksum_address
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.models import MarketOrderRow
from backend.services.chain import Chain
from backend.services.market.book import (
    MIN_EXPIRY_MARGIN,
    Funding,
    MarketRejected,
    chain_time,
    check_instrument,
    funding_problem,
    live_orders,
    maker_funding,
    market_contract,
    order_hash,
    order_of,
    order_views,
    price_of,
    price_text,
)
from gpucap.signing import MarketOrder, non_canonical_reason, recover_order_signer

# Open orders one maker may rest at once (GPUCAP_MARKET_MAX_OPEN_ORDERS_PER_MAKER).
DEFAULT_MAX_OPEN_ORDERS = 100
OPEN = ("open", "partially_filled")


def accept_order(
    session: Session,
    chain: Chain,
    order: MarketOrder,
    signature: bytes,
    *,
    max_open: int = DEFAULT_MAX_OPEN_ORDERS,
) -> tuple[MarketOrderRow, bool]:
    """Check ``order`` fully and store it; (row, created). The same order again is its row
    (re-checked and put back on the book if it was dropped for want of funds)."""
    if (problem := non_canonical_reason(signature)) is not None:
        raise MarketRejected(problem, code="NonCanonicalSignature")
    market = market_contract(chain)
    chain_id = chain.deployment.chain_id
    if order.amount == 0 or order.quote_amount == 0:
        raise MarketRejected("amount and quote_amount must both be above zero", code="ZeroAmount")
    signer = recover_order_signer(order, signature, market=market.address, chain_id=chain_id)
    if signer.lower() != order.maker.lower():
        raise MarketRejected(
            f"the signature is not {order.maker}'s for this order in market {market.address} "
            f"on chain {chain_id} (recovered {signer})",
            code="InvalidSignature",
        )
    digest = order_hash(order, market=market.address, chain_id=chain_id)
    now = chain_time(chain)
    if order.expiry < now + MIN_EXPIRY_MARGIN:
        raise MarketRejected(
            f"expiry {order.expiry} leaves under {MIN_EXPIRY_MARGIN}s at chain time {now}",
            code="OrderExpired",
        )
    check_instrument(chain, order.asset, order.token_id, now)
    status, _ = chain.call(
        "reading order status", lambda: market.functions.orderStatus(order.as_tuple()).call()
    )
    if status in (2, 3):  # IMarket.Status: Filled, Cancelled
        name = "OrderFilled" if status == 2 else "OrderCancelled"
        raise MarketRejected(f"order {digest} is {name[5:].lower()} on-chain", code=name)
    funding = maker_funding(chain, order)
    if (shortfall := funding_problem(chain, order, order.amount, funding)) is not None:
        raise MarketRejected(shortfall[1], code=shortfall[0])
    existing = session.scalar(select(MarketOrderRow).where(MarketOrderRow.order_hash == digest))
    if existing is not None and existing.dropped is None:
        return existing, False  # in the book already: counted in its maker's limits

    maker = to_checksum_address(order.maker)
    session.commit()  # a fresh transaction: what the lock lets through is read after it
    _lock_maker(session, maker)
    try:
        _check_limits(session, chain, order, funding, now, max_open=max_open)
        if existing is not None:  # dropped for want of funds, posted again once funded
            existing.dropped = None
            session.commit()
            return existing, False
        _refuse_crossing(session, chain, order, now)
    except MarketRejected:
        session.rollback()  # releases the lock
        raise
    row = MarketOrderRow(
        order_hash=digest,
        maker=maker,
        asset=to_checksum_address(order.asset),
        token_id=str(order.token_id),
        sell=order.sell,
        amount=order.amount,
        quote_amount=order.quote_amount,
        nonce=order.nonce,
        expiry=order.expiry,
        signature="0x" + signature.hex(),
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same order, accepted by a concurrent request
        session.rollback()
        found = session.scalar(select(MarketOrderRow).where(MarketOrderRow.order_hash == digest))
        if found is None:
            raise
        return found, False
    return row, True


def _lock_maker(session: Session, maker: str) -> None:
    """Hold the maker's orders until the transaction ends: PostgreSQL locks a key of its
    own per maker (a first order has no rows to lock yet); SQLite's write lock, which a
    write statement takes even when it matches no row, holds the whole database."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"gpucap:market:maker:{maker.lower()}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
        return
    session.execute(
        update(MarketOrderRow)
        .where(MarketOrderRow.maker == maker)
        .values(dropped=MarketOrderRow.dropped)
    )


def _check_limits(
    session: Session,
    chain: Chain,
    order: MarketOrder,
    funding: Funding,
    now: int,
    *,
    max_open: int,
) -> None:
    """The maker's open orders, with this one, within its count cap and its funds."""
    maker = to_checksum_address(order.maker)
    rows = session.scalars(
        select(MarketOrderRow).where(
            MarketOrderRow.maker == maker,
            MarketOrderRow.dropped.is_(None),
            MarketOrderRow.expiry > now,
        )
    ).all()
    live = [v for v in order_views(session, chain, rows, now) if v.status in OPEN]
    if len(live) >= max_open:
        raise MarketRejected(
            f"{maker} has {len(live)} open orders in the book, the most one maker may rest; "
            "cancel some or wait for fills",
            code="TooManyOpenOrders",
        )
    instrument = (to_checksum_address(order.asset), str(order.token_id))
    if order.sell:
        same = [v for v in live if v.row.sell and (v.row.asset, v.row.token_id) == instrument]
        what = f"units of {instrument[0]} id {instrument[1]}"
    else:
        same = [v for v in live if not v.row.sell]  # every bid pays in the stablecoin
        what = "stablecoin units (quotes and maker fees of its bids)"
    committed = sum(funding.need(order_of(v.row), v.row.amount - v.filled) for v in same)
    need = funding.need(order, order.amount)
    total = committed + need
    told = (
        f"its {len(same)} open {'sell' if order.sell else 'buy'} order(s) still need "
        f"{committed} {what}, this one {need}"
    )
    if total > funding.held:
        raise MarketRejected(
            f"{maker} holds {funding.held}; {told} ({total} in all)",
            code="OpenOrdersExceedBalance",
        )
    if funding.allowance is not None and total > funding.allowance:
        raise MarketRejected(
            f"the market may spend {funding.allowance} of {maker}'s; {told} ({total} in all)",
            code="OpenOrdersExceedAllowance",
        )


def _refuse_crossing(session: Session, chain: Chain, order: MarketOrder, now: int) -> None:
    """A resting order never crosses the book: a taker takes what it crosses instead."""
    opposite = [
        e
        for e in live_orders(session, chain, order.asset, str(order.token_id), now)
        if e.row.sell != order.sell
    ]
    price = price_of(order.amount, order.quote_amount)
    crossed = [e for e in opposite if (e.price >= price if order.sell else e.price <= price)]
    if crossed:
        best = crossed[0].price
        raise MarketRejected(
            f"the order crosses the book (best {'bid' if order.sell else 'ask'} {price_text(best)} "
            "per unit): take those orders with POST /api/v1/market/match instead",
            code="OrderCrossesBook",
            status=409,
        )
