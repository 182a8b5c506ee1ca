"""The market's off-chain order book: what the chain did with the orders in it.

Orders come in through ``placing.py`` (every check a fill would make, and the maker's
limits). Accepted orders are rows of ``market_orders``; their state (filled amount,
cancellation, nonce floor) is never written here but read from the indexer's
projections of Market's events, and the amounts that relayed fills still in flight will
take are read from those fills' own forward actions. So the book follows the chain and
the relayer without a second copy of either, and a reorg that undoes a fill puts its
amount back on the book.
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

from eth_abi import decode, encode
from eth_account.messages import _hash_eip191_message
from eth_utils import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    to_checksum_address,
)
from hexbytes import HexBytes
from sqlalchemy import bindparam, func, select, union_all
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
from backend.services.chain import Chain, result_of
from backend.services.errors import ServiceError
from backend.services.market.rawcall import (
    ALLOWANCE,
    APPROVED_FOR_ALL,
    BALANCE_OF,
    BALANCE_OF_ID,
    DECODE_TOKEN_ID,
    FEES,
    IS_POOL_LISTED,
    LATEST_BLOCK,
)
from backend.services.revert import rpc_revert
from gpucap.deployment import ManifestError, read_abi
from gpucap.signing import MarketOrder

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


# The market's reads of the chain: raw eth_calls in one JSON-RPC batch a request (why:
# rawcall.py).
def _read(chain: Chain, what: str, requests: Sequence[Any]) -> list[dict[str, Any]]:
    """The node's answers to ``requests`` (one batch); a failed call raises as web3's."""
    answers = chain.batch(what, requests)
    for answer in answers:
        if "error" in answer and (revert := rpc_revert(answer["error"])) is not None:
            raise ContractLogicError(f"{what}: execution reverted", data=revert.data)
    return answers


def _ints(answer: dict[str, Any], what: str, count: int = 1) -> tuple[int, ...]:
    """``count`` static words (uintN, bool) of an eth_call's answer."""
    return tuple(decode(["uint256"] * count, HexBytes(result_of(answer, what))))


def _block_time(answer: dict[str, Any]) -> int:
    return int(result_of(answer, "reading latest block")["timestamp"], 16)


def chain_time(chain: Chain) -> int:
    (block,) = _read(chain, "reading latest block", [LATEST_BLOCK])
    return _block_time(block)


def instrument_time(chain: Chain, asset: str, token_id: int) -> int:
    """The chain time (latest block) once ``check_instrument`` passes at it; one round
    trip for both (a taker's match)."""
    capacity = chain.contract(CAPACITY).address
    if asset.lower() != capacity.lower() or token_id >= 2**256:
        now = chain_time(chain)
        check_instrument(chain, asset, token_id, now)
        return now
    answers = chain.batch(
        "decoding token id",
        [LATEST_BLOCK, DECODE_TOKEN_ID.call(capacity, token_id)],
    )
    now = _block_time(answers[0])
    _check_window(answers[1], token_id, now)
    return now


def _check_window(answer: dict[str, Any], token_id: int, now: int) -> None:
    """CapacityToken.decodeTokenId's answer: a capacity id whose window has not started."""
    if "error" in answer and rpc_revert(answer["error"]) is not None:
        raise MarketRejected(
            f"{token_id} is not a capacity token id (class x window)", code="InvalidTokenId"
        )
    _, window_start = _ints(answer, "decoding token id", 2)
    if now >= window_start:
        raise MarketRejected(
            f"token {token_id}'s window started at {window_start} (chain time {now})",
            code="WindowStarted",
        )


def check_instrument(chain: Chain, asset: str, token_id: int, now: int) -> None:
    """The asset trades on the market: a capacity id whose window has not started, or a
    listed pool's shares (token id 0). The contract's own rule (Market._requireTradable)."""
    market, capacity = market_contract(chain).address, chain.contract(CAPACITY).address
    if asset.lower() == capacity.lower():
        if token_id >= 2**256:
            raise MarketRejected(
                f"{token_id} is not a capacity token id (class x window)", code="InvalidTokenId"
            )
        (answer,) = chain.batch("decoding token id", [DECODE_TOKEN_ID.call(capacity, token_id)])
        _check_window(answer, token_id, now)
        return
    (listed,) = _read(
        chain,
        "reading pool listing",
        [IS_POOL_LISTED.call(market, to_checksum_address(asset))],
    )
    if not _ints(listed, "reading pool listing")[0]:
        raise MarketRejected(
            f"{asset} is neither the capacity token nor a listed pool", code="AssetNotListed"
        )
    if token_id != 0:
        raise MarketRejected(f"pool shares have token id 0, not {token_id}", code="InvalidTokenId")


def _share_token(chain: Chain, asset: str) -> Any:
    settlement = chain.deployment.contracts[SETTLEMENT]
    return chain.contract_at(asset, settlement.abi_path.parent / POOL_ABI_FILE)


@dataclass(frozen=True)
class Funding:
    """What a maker holds for one side of an order, and what the market may take of it,
    read from the chain now: the asset of a sell, the stablecoin of a buy."""

    held: int
    # ERC-20 allowance to the Market; None: the CapacityToken's approval is all or nothing.
    allowance: int | None
    approved_for_all: bool  # CapacityToken.isApprovedForAll (sells of GPU-hours only)
    maker_fee_bps: int  # what a buying maker pays on top of its quote (0 for a sell)

    def need(self, order: MarketOrder, units: int) -> int:
        """What filling ``units`` of ``order`` takes from the maker (Market._fill): the
        asset units of a sell; the quote and the maker's own fee of a buy (a buying maker
        sends the selling taker the quote less the taker's fee, and both fees to the fee
        recipient)."""
        if order.sell:
            return units
        quote = fill_quote(order, units)
        return quote + quote * self.maker_fee_bps // BPS

    def approved(self, amount: int) -> bool:
        return self.approved_for_all if self.allowance is None else self.allowance >= amount


def maker_funding(chain: Chain, order: MarketOrder) -> Funding:
    """The maker's balance and approval for ``order``'s side, read from the chain."""
    market, capacity = market_contract(chain).address, chain.contract(CAPACITY).address
    maker = to_checksum_address(order.maker)
    if order.sell and order.asset.lower() == capacity.lower():
        what = "reading maker's capacity"
        held, approved = _read(
            chain,
            what,
            [
                BALANCE_OF_ID.call(capacity, maker, order.token_id),
                APPROVED_FOR_ALL.call(capacity, maker, market),
            ],
        )
        return Funding(_ints(held, what)[0], None, bool(_ints(approved, what)[0]), 0)
    if order.sell:
        what, token = "reading maker's shares", to_checksum_address(order.asset)
        held, allowance = _read(
            chain,
            what,
            [
                BALANCE_OF.call(token, maker),
                ALLOWANCE.call(token, maker, market),
            ],
        )
        return Funding(_ints(held, what)[0], _ints(allowance, what)[0], False, 0)
    what, coin = "reading maker's stablecoin", chain.stablecoin.address
    held, allowance, fees = _read(
        chain,
        what,
        [
            BALANCE_OF.call(coin, maker),
            ALLOWANCE.call(coin, maker, market),
            FEES.call(market),
        ],
    )
    maker_bps, _ = _ints(fees, what, 2)
    return Funding(_ints(held, what)[0], _ints(allowance, what)[0], False, maker_bps)


def funding_problem(
    chain: Chain, order: MarketOrder, units: int, funding: Funding | None = None
) -> tuple[str, str] | None:
    """(code, reason) if the maker cannot deliver ``units`` of ``order`` now, else None:
    the seller's asset and approval, or the buyer's stablecoin and allowance for the
    quote and its fee (Market._fill). ``funding``: as read already (maker_funding)."""
    funding = funding or maker_funding(chain, order)
    maker = to_checksum_address(order.maker)
    need = funding.need(order, units)
    what = (
        f"{need} of token {order.token_id}"
        if order.sell
        else f"{need} stablecoin units (quote and maker fee)"
    )
    if funding.held < need:
        return "MakerBalanceTooLow", f"{maker} holds {funding.held}, the order needs {what}"
    if not funding.approved(need):
        market = market_contract(chain).address
        return "MakerNotApproved", f"{maker} has not approved the market {market} for {what}"
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


# Forward actions whose fills the index may not show yet: each status a range of
# ix_actions_kind_status_block (one OR over them read every confirmed forward action's
# row for its block number: megabytes of signed batches a request; migration 0017).
_IN_FLIGHT = union_all(
    *(
        select(Action.params).where(
            Action.kind == ActionKind.FORWARD.value, Action.status == status
        )
        for status in OPEN_STATUSES
    ),
    select(Action.params).where(
        Action.kind == ActionKind.FORWARD.value,
        Action.status == ActionStatus.CONFIRMED.value,
        Action.block_number >= bindparam("next_block"),
    ),
)


def in_flight(session: Session, chain: Chain) -> dict[str, int]:
    """Units per order hash that relayed fills will take and the index does not show yet:
    fills whose forward action is open, or mined in a block the indexer has not reached."""
    next_block = session.scalar(select(func.max(IndexerState.next_block))) or 0
    rows = session.execute(_IN_FLIGHT, {"next_block": next_block}).scalars()
    taken: dict[str, int] = {}
    for params in rows:
        if params.get("contract") != MARKET or params.get("function") not in FILL_FUNCTIONS:
            continue
        for digest, amount in _fill_amounts(chain, params["to"], params["data"]):
            taken[digest] = taken.get(digest, 0) + amount
    return taken


# (market, chain id, calldata) -> ((order hash, units), ...) of a fill's calldata. Every
# book read and every fill's checks look at all fills in flight; decoding each one's
# calldata every time (~1.5 ms a fill with web3) made each request cost O(fills in
# flight) milliseconds, under the write lock for a fill's checks: at 50 takers at once
# the API spent seconds of CPU a fill (bench figure 8). Calldata never changes meaning,
# so each process decodes it once.
_FILL_AMOUNTS: dict[tuple[str, int, str], tuple[tuple[str, int], ...]] = {}
_FILL_AMOUNTS_MAX = 20_000  # entries (~a few MB); cleared when full


def _fill_amounts(chain: Chain, market: str, data: str) -> tuple[tuple[str, int], ...]:
    key = (market.lower(), chain.deployment.chain_id, data)
    found = _FILL_AMOUNTS.get(key)
    if found is None:
        found = tuple(
            (order_hash(order, market=market, chain_id=key[1]).lower(), amount)
            for order, _, amount in decode_fills(chain, bytes.fromhex(data[2:]))
        )
        if len(_FILL_AMOUNTS) >= _FILL_AMOUNTS_MAX:
            _FILL_AMOUNTS.clear()
        _FILL_AMOUNTS[key] = found
    return found


@lru_cache(maxsize=8)
def _market_functions(abi_path: Path) -> dict[bytes, tuple[str, list[str]]]:
    """(name, input types) by 4-byte selector of the Market ABI's functions. web3's
    ``decode_function_input`` found the function by hashing every function's signature
    on each call: ~1.5 ms of a fill's acceptance."""
    return {
        function_abi_to_4byte_selector(item): (item["name"], get_abi_input_types(item))
        for item in read_abi(abi_path)
        if item.get("type") == "function"
    }


def encode_fills(chain: Chain, items: Sequence[tuple[MarketOrder, bytes, int]]) -> tuple[str, str]:
    """(function, 0x calldata) of Market.fill for one (order, signature, amount), else
    fillBatch: the inverse of ``decode_fills``, by the same table."""
    if MARKET not in chain.deployment.contracts:
        raise ManifestError(f"{MARKET} is not in the manifest {chain.deployment.path}")
    args = [(o.as_tuple(), sig, amount) for o, sig, amount in items]
    function, values = ("fill", args[0]) if len(args) == 1 else ("fillBatch", (args,))
    functions = _market_functions(chain.deployment.contracts[MARKET].abi_path)
    ((selector, (_, types)),) = [(k, v) for k, v in functions.items() if v[0] == function]
    return function, "0x" + (selector + encode(types, list(values))).hex()


def remember_fill_amounts(
    chain: Chain, market: str, data: bytes, amounts: Sequence[tuple[str, int]]
) -> None:
    """What ``_fill_amounts`` would find for this calldata, from a caller that decoded and
    hashed it already (a fill being accepted): in flight next, not decoded again."""
    key = (market.lower(), chain.deployment.chain_id, "0x" + data.hex())
    if len(_FILL_AMOUNTS) >= _FILL_AMOUNTS_MAX:
        _FILL_AMOUNTS.clear()
    _FILL_AMOUNTS[key] = tuple((digest.lower(), amount) for digest, amount in amounts)


def decode_fills(chain: Chain, data: bytes) -> list[tuple[MarketOrder, bytes, int]]:
    """(order, signature, fill amount) of Market.fill / fillBatch calldata."""
    if MARKET not in chain.deployment.contracts:
        raise ManifestError(f"{MARKET} is not in the manifest {chain.deployment.path}")
    found = _market_functions(chain.deployment.contracts[MARKET].abi_path).get(data[:4])
    if found is None:
        raise ValueError(f"selector 0x{data[:4].hex()} is not a function of {MARKET}")
    name, types = found
    if name not in FILL_FUNCTIONS:
        raise MarketRejected(f"Market.{name} is not a fill", code="NotAFill")
    args = decode(types, data[4:])
    items: Iterable[Any] = [args] if name == "fill" else args[0]
    out = []
    for order, signature, amount in items:
        maker, asset, *rest = order
        fields = (to_checksum_address(maker), to_checksum_address(asset), *rest)
        out.append((MarketOrder(*fields), bytes(signature), int(amount)))
    return out


# ------------------------------------------------------------------ the book


def live_orders(
    session: Session, chain: Chain, asset: str, token_id: str, now: int
) -> list[OrderView]:
    """Orders a taker can take now, best first per side (price, then time)."""
    # Addresses are stored checksummed (placing.accept_order; migration 0014 for older
    # rows) and compared as stored, so the (asset, token_id) index serves the query.
    rows = session.scalars(
        select(MarketOrderRow)
        .where(
            MarketOrderRow.asset == to_checksum_address(asset),
            MarketOrderRow.token_id == token_id,
            MarketOrderRow.dropped.is_(None),
            # An expired order has nothing left to take: not loaded, not looked up (the
            # instrument's history of orders is not read on every match and book read).
            MarketOrderRow.expiry > now,
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
