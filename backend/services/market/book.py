"""The market's off-chain order book: signed orders in, what the chain did with them out.

An order is accepted only when it could fill now: signed by its maker in the one form
the chain accepts, not expired, not cancelled, for a listed instrument whose window has
not started, and funded (balance and approval). Accepted orders are rows of
``market_orders``; their state (filled amount, cancellation, nonce floor) is never
written here but read from the indexer's projections of Market's events, and the
amounts that relayed fills still in flight will take are read from those fills' own
forward actions. So the book follows the chain and the relayer without a second copy
of either, and a reorg that undoes a fill puts its amount back on the book.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_account.messages import _hash_eip191_message
from eth_utils import to_checksum_address
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from web3.exceptions import ContractLogicError

from backend.db.models import (
    OPEN_STATUSES,
    Action,
    ActionKind,
    ActionStatus,
    IndexedBlock,
    IndexerState,
    MarketCancelRow,
    MarketFillRow,
    MarketNonceRow,
    MarketOrderRow,
)
from backend.services.chain import Chain
from backend.services.errors import ServiceError
from gpucap.deployment import ManifestError, read_abi
from gpucap.signing import MarketOrder, non_canonical_reason, recover_order_signer

log = logging.getLogger(__name__)

MARKET = "Market"
CAPACITY = "CapacityToken"
SETTLEMENT = "EpochSettlement"
POOL_ABI_FILE = "RevenuePool.json"
BPS = 10_000
# Seconds an order must stay valid after acceptance: time for a taker to find it.
MIN_EXPIRY_MARGIN = 30
FILL_FUNCTIONS = ("fill", "fillBatch")


class MarketRejected(ServiceError):
    """An order or fill the market refuses (422 unless ``status`` says otherwise)."""

    def __init__(self, reason: str, *, code: str, status: int = 422) -> None:
        super().__init__(reason, code=code)
        self.status = status


# ------------------------------------------------------------------ orders


def market_contract(chain: Chain) -> Any:
    if MARKET not in chain.deployment.contracts:
        raise ManifestError(f"{MARKET} is not in the manifest {chain.deployment.path}")
    return chain.contract(MARKET)


def order_hash(order: MarketOrder, *, market: str, chain_id: int) -> str:
    """Market.hashOrder(order): the EIP-712 digest the maker signed."""
    return "0x" + _hash_eip191_message(order.typed_data(market, chain_id)).hex()


def order_of(row: MarketOrderRow) -> MarketOrder:
    return MarketOrder(
        maker=row.maker,
        asset=row.asset,
        token_id=int(row.token_id),
        sell=row.sell,
        amount=row.amount,
        quote_amount=row.quote_amount,
        nonce=row.nonce,
        expiry=row.expiry,
    )


def price_of(amount: int, quote_amount: int) -> Fraction:
    """Stablecoin base units per asset base unit (exact)."""
    return Fraction(quote_amount, amount)


def price_text(price: Fraction) -> str:
    """A price as a plain decimal string, to 36 decimals (what a limit price may carry:
    a pool share's base unit is 1e-18 of a share), rounded half-even."""
    with localcontext() as ctx:
        ctx.prec = 120
        value = (Decimal(price.numerator) / Decimal(price.denominator)).quantize(
            Decimal(1).scaleb(-36)
        )
        return format(value.normalize(), "f")


def fill_quote(order: MarketOrder, fill_amount: int) -> int:
    """What ``fill_amount`` units cost, rounded in the maker's favour (Market._record)."""
    product = fill_amount * order.quote_amount
    if order.sell:
        return -(-product // order.amount)
    return product // order.amount


def accept_order(
    session: Session, chain: Chain, order: MarketOrder, signature: bytes
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
    if (shortfall := funding_problem(chain, order, order.amount)) is not None:
        raise MarketRejected(shortfall[1], code=shortfall[0])
    existing = session.scalar(select(MarketOrderRow).where(MarketOrderRow.order_hash == digest))
    if existing is not None:
        if existing.dropped is not None:
            existing.dropped = None
            session.commit()
        return existing, False
    _refuse_crossing(session, chain, order, now)
    row = MarketOrderRow(
        order_hash=digest,
        maker=to_checksum_address(order.maker),
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


def chain_time(chain: Chain) -> int:
    return int(chain.call("reading latest block", lambda: chain.latest_block())["timestamp"])


def check_instrument(chain: Chain, asset: str, token_id: int, now: int) -> None:
    """The asset trades on the market: a capacity id whose window has not started, or a
    listed pool's shares (token id 0). The contract's own rule (Market._requireTradable)."""
    market, capacity = market_contract(chain), chain.contract(CAPACITY)
    if asset.lower() == capacity.address.lower():
        try:
            _, window_start = chain.call(
                "decoding token id", lambda: capacity.functions.decodeTokenId(token_id).call()
            )
        except ContractLogicError as exc:
            raise MarketRejected(
                f"{token_id} is not a capacity token id (class x window)", code="InvalidTokenId"
            ) from exc
        if now >= window_start:
            raise MarketRejected(
                f"token {token_id}'s window started at {window_start} (chain time {now})",
                code="WindowStarted",
            )
        return
    if not chain.call(
        "reading pool listing",
        lambda: market.functions.isPoolListed(to_checksum_address(asset)).call(),
    ):
        raise MarketRejected(
            f"{asset} is neither the capacity token nor a listed pool", code="AssetNotListed"
        )
    if token_id != 0:
        raise MarketRejected(f"pool shares have token id 0, not {token_id}", code="InvalidTokenId")


@lru_cache(maxsize=4)
def _pool_abi(path: Path) -> list[dict[str, Any]]:
    return read_abi(path)


def _share_token(chain: Chain, asset: str) -> Any:
    settlement = chain.deployment.contracts[SETTLEMENT]
    abi = _pool_abi(settlement.abi_path.parent / POOL_ABI_FILE)
    return chain.w3.eth.contract(address=to_checksum_address(asset), abi=abi)


def funding_problem(chain: Chain, order: MarketOrder, units: int) -> tuple[str, str] | None:
    """(code, reason) if the maker cannot deliver ``units`` of ``order`` now, else None:
    the seller's asset and approval, or the buyer's stablecoin and allowance for the
    quote and its fee (Market._fill)."""
    market, capacity = market_contract(chain), chain.contract(CAPACITY)
    maker = to_checksum_address(order.maker)
    if order.sell:
        what = f"{units} of token {order.token_id}"
        if order.asset.lower() == capacity.address.lower():
            held, approved = chain.call(
                "reading maker's capacity",
                lambda: (
                    capacity.functions.balanceOf(maker, order.token_id).call(),
                    capacity.functions.isApprovedForAll(maker, market.address).call(),
                ),
            )
        else:
            shares = _share_token(chain, order.asset)
            held, allowance = chain.call(
                "reading maker's shares",
                lambda: (
                    shares.functions.balanceOf(maker).call(),
                    shares.functions.allowance(maker, market.address).call(),
                ),
            )
            approved = allowance >= units
        need = units
    else:
        quote = fill_quote(order, units)
        maker_bps, _ = chain.call("reading fees", lambda: market.functions.fees().call())
        # A buying maker sends the selling taker the quote less the taker's fee, and both
        # fees to the fee recipient (Market._fill): the quote and its own fee in all.
        need = quote + quote * maker_bps // BPS
        what = f"{need} stablecoin units (quote and maker fee)"
        coin = chain.stablecoin
        held, allowance = chain.call(
            "reading maker's stablecoin",
            lambda: (
                coin.functions.balanceOf(maker).call(),
                coin.functions.allowance(maker, market.address).call(),
            ),
        )
        approved = allowance >= need
    if held < need:
        return "MakerBalanceTooLow", f"{maker} holds {held}, the order needs {what}"
    if not approved:
        return (
            "MakerNotApproved",
            f"{maker} has not approved the market {market.address} for {what}",
        )
    return None


# ------------------------------------------------------------------ state


@dataclass(frozen=True)
class OrderView:
    """An order as the chain (through the indexer) and the relayer see it."""

    row: MarketOrderRow
    filled: int
    status: str  # open | partially_filled | filled | cancelled | expired
    in_flight: int  # units relayed fills not yet indexed will take

    @property
    def remaining(self) -> int:
        if self.status in ("filled", "cancelled", "expired"):
            return 0
        return max(0, self.row.amount - self.filled - self.in_flight)

    @property
    def price(self) -> Fraction:
        return price_of(self.row.amount, self.row.quote_amount)


def indexed_time(session: Session) -> int | None:
    """The newest indexed block's timestamp: the chain time the index has seen."""
    return session.scalar(select(IndexedBlock.timestamp).order_by(IndexedBlock.number.desc()))


def order_views(
    session: Session, chain: Chain, rows: Sequence[MarketOrderRow], now: int
) -> list[OrderView]:
    hashes = [r.order_hash for r in rows]
    filled: dict[str, int] = {}
    for h, total in session.execute(
        select(MarketFillRow.order_hash, MarketFillRow.filled_total).where(
            MarketFillRow.order_hash.in_(hashes)
        )
    ):
        filled[h] = max(filled.get(h, 0), int(total))
    cancelled = set(
        session.scalars(
            select(MarketCancelRow.order_hash).where(MarketCancelRow.order_hash.in_(hashes))
        )
    )
    makers = {r.maker for r in rows}
    floors = {
        m: int(n)
        for m, n in session.execute(
            select(MarketNonceRow.maker, MarketNonceRow.min_valid_nonce).where(
                MarketNonceRow.maker.in_(makers)
            )
        )
    }
    flying = in_flight(session, chain) if rows else {}
    views = []
    for r in rows:
        done = filled.get(r.order_hash, 0)
        # The precedence of Market.orderStatus.
        if done >= r.amount:
            status = "filled"
        elif r.order_hash in cancelled or r.nonce < floors.get(r.maker, 0):
            status = "cancelled"
        elif now >= r.expiry:
            status = "expired"
        else:
            status = "partially_filled" if done else "open"
        views.append(OrderView(r, done, status, flying.get(r.order_hash, 0)))
    return views


def in_flight(session: Session, chain: Chain) -> dict[str, int]:
    """Units per order hash that relayed fills will take and the index does not show yet:
    fills whose forward action is open, or mined in a block the indexer has not reached."""
    next_block = session.scalar(select(func.max(IndexerState.next_block))) or 0
    rows = session.execute(
        select(Action.params).where(
            Action.kind == ActionKind.FORWARD.value,
            or_(
                Action.status.in_(OPEN_STATUSES),
                (Action.status == ActionStatus.CONFIRMED.value)
                & (Action.block_number >= next_block),
            ),
        )
    ).scalars()
    taken: dict[str, int] = {}
    for params in rows:
        if params.get("contract") != MARKET or params.get("function") not in FILL_FUNCTIONS:
            continue
        for order, _, amount in decode_fills(chain, bytes.fromhex(params["data"][2:])):
            digest = order_hash(
                order, market=params["to"], chain_id=chain.deployment.chain_id
            ).lower()
            taken[digest] = taken.get(digest, 0) + amount
    return taken


def decode_fills(chain: Chain, data: bytes) -> list[tuple[MarketOrder, bytes, int]]:
    """(order, signature, fill amount) of Market.fill / fillBatch calldata."""
    market = market_contract(chain)
    fn, args = market.decode_function_input(data)
    if fn.fn_name == "fill":
        items: Iterable[Any] = [(args["order"], args["signature"], args["fillAmount"])]
    elif fn.fn_name == "fillBatch":
        items = [tuple(f.values()) if isinstance(f, dict) else f for f in args["fills"]]
    else:
        raise MarketRejected(f"Market.{fn.fn_name} is not a fill", code="NotAFill")
    out = []
    for order, signature, amount in items:
        fields = tuple(order.values()) if isinstance(order, dict) else tuple(order)
        out.append((MarketOrder(*fields), bytes(signature), int(amount)))
    return out


# ------------------------------------------------------------------ the book


def live_orders(
    session: Session, chain: Chain, asset: str, token_id: str, now: int
) -> list[OrderView]:
    """Orders a taker can take now, best first per side (price, then time)."""
    rows = session.scalars(
        select(MarketOrderRow)
        .where(
            func.lower(MarketOrderRow.asset) == asset.lower(),
            MarketOrderRow.token_id == token_id,
            MarketOrderRow.dropped.is_(None),
        )
        .order_by(MarketOrderRow.id)
    ).all()
    live = [v for v in order_views(session, chain, rows, now) if v.remaining > 0]
    asks = sorted((v for v in live if v.row.sell), key=lambda v: (v.price, v.row.id))
    bids = sorted((v for v in live if not v.row.sell), key=lambda v: (-v.price, v.row.id))
    return asks + bids


@dataclass(frozen=True)
class Level:
    price: Fraction
    amount: int
    orders: int


def depth(views: Iterable[OrderView], *, sell: bool) -> list[Level]:
    """Remaining units per price level of one side, best first."""
    levels: dict[Fraction, list[int]] = {}
    for v in views:
        if v.row.sell != sell:
            continue
        level = levels.setdefault(v.price, [0, 0])
        level[0] += v.remaining
        level[1] += 1
    ordered = sorted(levels.items(), key=lambda kv: kv[0], reverse=not sell)
    return [Level(price, amount, count) for price, (amount, count) in ordered]


def drop(session: Session, row: MarketOrderRow, why: str) -> None:
    """Take an order off the book (it may still fill on-chain; the book stops offering it)."""
    log.info("market: order %s dropped from the book: %s", row.order_hash, why)
    row.dropped = why
    session.commit()
