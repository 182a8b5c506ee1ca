"""Read models of the secondary market, folded from Market's events.

OrderFilled becomes a trade row (``market_fills``, which also carries each order's
filled total, and for GPU-hours the token's class and delivery window: the price index
groups secondary trades by them), OrderCancelled a cancelled order hash,
NoncesCancelled a maker's nonce floor. The book (``market_orders``, off-chain) reads
these to say what the chain did with an order.

A trade is flagged (``wash_flag``) when it moves nothing between owners: a self-trade
(maker and taker the same address; the Market refuses one, so this only guards the
index) or a wash trade, the same two addresses trading one instrument back and forth
within WASH_WINDOW_SECONDS (A sells to B, then B sells to A: a price and a volume
that nobody else paid). Both legs of such a round trip are flagged. A flag reads only
earlier fills, which a replay (after a reorg, or a rebuild) folds first, in chain
order: the live path and a replay agree. Addresses compare as the decoder writes them
(checksummed).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from backend.db.models import ChainEvent, MarketCancelRow, MarketFillRow, MarketNonceRow
from backend.services.indexing.event_decoding import token_parts

MARKET = "Market"
SELF_TRADE = "self_trade"
WASH_TRADE = "wash_trade"
# How close in time two opposite trades of one pair must be to count as a round trip.
WASH_WINDOW_SECONDS = 3_600


def _wash_flag(session: Session, ev: ChainEvent) -> str | None:
    """The new fill's flag; a wash trade's earlier legs get theirs here too."""
    a = ev.args
    maker, taker = str(a["maker"]), str(a["taker"])
    if maker.lower() == taker.lower():
        return SELF_TRADE
    seller, buyer = (maker, taker) if a["makerSells"] else (taker, maker)
    # Earlier fills of this instrument in which the buyer sold to the seller.
    reversed_legs = session.scalars(
        select(MarketFillRow).where(
            MarketFillRow.asset == a["asset"],
            MarketFillRow.token_id == str(a["tokenId"]),
            MarketFillRow.block_timestamp >= ev.block_timestamp - WASH_WINDOW_SECONDS,
            or_(
                and_(
                    MarketFillRow.maker == buyer,
                    MarketFillRow.taker == seller,
                    MarketFillRow.maker_sells.is_(True),
                ),
                and_(
                    MarketFillRow.maker == seller,
                    MarketFillRow.taker == buyer,
                    MarketFillRow.maker_sells.is_(False),
                ),
            ),
        )
    ).all()
    if not reversed_legs:
        return None
    for leg in reversed_legs:
        if leg.wash_flag is None:
            leg.wash_flag = WASH_TRADE
    return WASH_TRADE


def _filled(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    flag = _wash_flag(session, ev)
    # A pool's shares trade as token id 0 (Market refuses any other); every other id the
    # Market fills is a CapacityToken id, whose class is never 0 (decodeTokenId).
    token_id = int(a["tokenId"])
    class_id, window_start = token_parts(token_id) if token_id != 0 else (None, None)
    session.add(
        MarketFillRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            tx_hash=ev.tx_hash,
            order_hash=str(a["orderHash"]).lower(),
            maker=a["maker"],
            taker=a["taker"],
            asset=a["asset"],
            token_id=str(token_id),
            class_id=class_id,
            window_start=window_start,
            maker_sells=bool(a["makerSells"]),
            amount=int(a["amount"]),
            quote=int(a["quote"]),
            maker_fee=int(a["makerFee"]),
            taker_fee=int(a["takerFee"]),
            filled_total=int(a["filledTotal"]),
            block_timestamp=ev.block_timestamp,
            wash_flag=flag,
        )
    )


def _cancelled(session: Session, ev: ChainEvent) -> None:
    session.merge(
        MarketCancelRow(
            order_hash=str(ev.args["orderHash"]).lower(),
            maker=ev.args["maker"],
            block_number=ev.block_number,
        )
    )


def _nonces_cancelled(session: Session, ev: ChainEvent) -> None:
    # cancelUpTo only ever raises the floor (MarketNonceNotIncreasing): the latest wins.
    session.merge(
        MarketNonceRow(
            maker=ev.args["maker"],
            min_valid_nonce=int(ev.args["minValidNonce"]),
            block_number=ev.block_number,
        )
    )


HANDLERS: dict[tuple[str, str], Callable[[Session, ChainEvent], None]] = {
    (MARKET, "OrderFilled"): _filled,
    (MARKET, "OrderCancelled"): _cancelled,
    (MARKET, "NoncesCancelled"): _nonces_cancelled,
}
