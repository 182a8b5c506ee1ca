"""GPU-hour trades from the index, folded into prices: per class and delivery window (the
price index) and per class over a lookback (the market price collateral is marked to).

Two sources, kept apart and then combined:

- **primary**: CapacityToken sales (``sales``: an operator's offer bought at its ask);
- **secondary**: Market fills of capacity tokens (``market_fills`` with a class), except
  those the indexer flagged as a self-trade or a wash trade (``market_index``): they moved
  nothing between independent owners, so their price and volume are nobody's. They are
  counted apart, as ``excluded``;
- **combined**: both series merged in chain order.

The clock is the index's: the newest indexed block's time (``as_of``), so an answer is
consistent with the rows it was computed from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, tuple_, union
from sqlalchemy.orm import Session

from backend.db.models import IndexedBlock, MarketFillRow, SaleRow
from backend.services.pricing.stats import PriceStats, Trade, price_stats

MarkSource = Literal["primary", "secondary", "combined"]


@dataclass(frozen=True)
class Excluded:
    """Secondary trades left out of every price: flagged self-trades and wash trades."""

    trades: int = 0
    gpu_hours: int = 0
    volume: int = 0

    def plus(self, gpu_hours: int, volume: int) -> Excluded:
        return Excluded(self.trades + 1, self.gpu_hours + gpu_hours, self.volume + volume)


@dataclass(frozen=True)
class PricePoint:
    class_id: int
    window_start: int
    primary: PriceStats
    secondary: PriceStats
    combined: PriceStats
    excluded: Excluded


@dataclass
class _Series:
    primary: list[Trade]
    secondary: list[Trade]
    excluded: Excluded

    @classmethod
    def empty(cls) -> _Series:
        return cls([], [], Excluded())


def indexed_time(session: Session) -> int | None:
    """The newest indexed block's timestamp (None before the indexer's first run)."""
    return session.scalar(select(IndexedBlock.timestamp).order_by(IndexedBlock.number.desc()))


def price_points(
    session: Session,
    *,
    as_of: int,
    class_id: int | None = None,
    window_start: int | None = None,
    limit: int = 100,
) -> list[PricePoint]:
    """Per (class, window) that traded, by class then newest window first: each source's
    VWAP, last and TWAP (running to the window's start, or ``as_of`` if earlier)."""
    sale_keys = select(SaleRow.class_id, SaleRow.window_start)
    fill_keys = select(MarketFillRow.class_id, MarketFillRow.window_start).where(
        MarketFillRow.class_id.is_not(None)
    )
    if class_id is not None:
        sale_keys = sale_keys.where(SaleRow.class_id == class_id)
        fill_keys = fill_keys.where(MarketFillRow.class_id == class_id)
    if window_start is not None:
        sale_keys = sale_keys.where(SaleRow.window_start == window_start)
        fill_keys = fill_keys.where(MarketFillRow.window_start == window_start)
    keys_q = union(sale_keys, fill_keys).subquery()
    keys: list[tuple[int, int]] = [
        (int(c), int(w))
        for c, w in session.execute(
            select(keys_q.c.class_id, keys_q.c.window_start)
            .order_by(keys_q.c.class_id, keys_q.c.window_start.desc())
            .limit(limit)
        ).all()
    ]
    if not keys:
        return []
    series = _fold(
        _sales(session, tuple_(SaleRow.class_id, SaleRow.window_start).in_(keys)),
        _fills(session, tuple_(MarketFillRow.class_id, MarketFillRow.window_start).in_(keys)),
    )
    points = []
    for key in keys:
        s = series.get(key, _Series.empty())
        until = min(as_of, key[1])
        points.append(
            PricePoint(
                class_id=key[0],
                window_start=key[1],
                primary=price_stats(s.primary, until),
                secondary=price_stats(s.secondary, until),
                combined=price_stats([*s.primary, *s.secondary], until),
                excluded=s.excluded,
            )
        )
    return points


@dataclass(frozen=True)
class MarkRule:
    """When a GPU class has traded enough for its price to mark collateral: at least
    ``min_trades`` trades worth at least ``min_volume`` stablecoin base units in the last
    ``lookback_seconds`` (wash trades never count), from ``source``."""

    lookback_seconds: int
    min_trades: int
    min_volume: int
    source: MarkSource = "combined"


@dataclass(frozen=True)
class ClassPrice:
    """A class's trades from the rule's source in [since, until], and whether they are
    enough (``MarkRule``); ``stats.vwap`` is the market price then."""

    class_id: int
    stats: PriceStats
    excluded: Excluded
    since: int
    until: int
    enough: bool


def class_prices(
    session: Session, class_ids: Iterable[int], rule: MarkRule, as_of: int
) -> dict[int, ClassPrice]:
    """Each class's trades over the rule's lookback ending ``as_of``, all windows together."""
    ids = sorted(set(class_ids))
    since = as_of - rule.lookback_seconds
    series = _fold(
        _sales(
            session,
            SaleRow.class_id.in_(ids),
            SaleRow.block_timestamp >= since,
            SaleRow.block_timestamp <= as_of,
        ),
        _fills(
            session,
            MarketFillRow.class_id.in_(ids),
            MarketFillRow.block_timestamp >= since,
            MarketFillRow.block_timestamp <= as_of,
        ),
        by_class=True,
    )
    out = {}
    for class_id in ids:
        s = series.get((class_id, 0), _Series.empty())
        chosen = {
            "primary": s.primary,
            "secondary": s.secondary,
            "combined": [*s.primary, *s.secondary],
        }[rule.source]
        stats = price_stats(chosen, as_of)
        out[class_id] = ClassPrice(
            class_id=class_id,
            stats=stats,
            excluded=s.excluded,
            since=since,
            until=as_of,
            enough=stats.trades >= rule.min_trades and stats.volume >= rule.min_volume,
        )
    return out


_Row = tuple[int, int, int, int, int, int, int, str | None]


def _sales(session: Session, *where: object) -> list[_Row]:
    rows = session.execute(
        select(
            SaleRow.class_id,
            SaleRow.window_start,
            SaleRow.block_number,
            SaleRow.log_index,
            SaleRow.block_timestamp,
            SaleRow.amount,
            SaleRow.cost,
        ).where(*where)  # type: ignore[arg-type]
    ).all()
    return [(*r, None) for r in rows]  # type: ignore[list-item]


def _fills(session: Session, *where: object) -> list[_Row]:
    rows = session.execute(
        select(
            MarketFillRow.class_id,
            MarketFillRow.window_start,
            MarketFillRow.block_number,
            MarketFillRow.log_index,
            MarketFillRow.block_timestamp,
            MarketFillRow.amount,
            MarketFillRow.quote,
            MarketFillRow.wash_flag,
        ).where(*where)  # type: ignore[arg-type]
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _fold(
    sales: list[_Row], fills: list[_Row], *, by_class: bool = False
) -> dict[tuple[int, int], _Series]:
    """Rows into series keyed by (class, window), or (class, 0) with ``by_class``."""
    out: dict[tuple[int, int], _Series] = defaultdict(_Series.empty)
    for rows, source in ((sales, "primary"), (fills, "secondary")):
        for class_id, window, block, log_index, timestamp, amount, paid, flag in rows:
            s = out[(int(class_id), 0 if by_class else int(window))]
            if flag is not None:
                s.excluded = s.excluded.plus(int(amount), int(paid))
                continue
            trade = Trade(block, log_index, timestamp, int(amount), int(paid), source)  # type: ignore[arg-type]
            (s.primary if source == "primary" else s.secondary).append(trade)
    return out
