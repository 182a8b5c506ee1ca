"""Read models of the secondary market, folded from Market's events.

OrderFilled becomes a trade row (``market_fills``, which also carries each order's
filled total), OrderCancelled a cancelled order hash, NoncesCancelled a maker's nonce
floor. Each handler depends on its own event only, so a replay after a reorg and the
live path agree; the book (``market_orders``, off-chain) reads these to say what the
chain did with an order.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from backend.db.models import ChainEvent, MarketCancelRow, MarketFillRow, MarketNonceRow

MARKET = "Market"


def _filled(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    session.add(
        MarketFillRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            tx_hash=ev.tx_hash,
            order_hash=str(a["orderHash"]).lower(),
            maker=a["maker"],
            taker=a["taker"],
            asset=a["asset"],
            token_id=str(a["tokenId"]),
            maker_sells=bool(a["makerSells"]),
            amount=int(a["amount"]),
            quote=int(a["quote"]),
            maker_fee=int(a["makerFee"]),
            taker_fee=int(a["takerFee"]),
            filled_total=int(a["filledTotal"]),
            block_timestamp=ev.block_timestamp,
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
