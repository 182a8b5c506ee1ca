"""VWAP, last and time-weighted price of a series of GPU-hour trades, in exact integers.

Pure: no database, no chain, so the arithmetic is tested on its own. A trade is what the
chain recorded: ``gpu_hours`` GPU-hours for ``paid`` stablecoin base units (6 decimals;
a primary sale's ``cost``, a fill's ``quote``; the market's fees are not part of the
price). Every price is in stablecoin base units per GPU-hour, floored once, at the end,
from the exact rational (``Fraction``) it stands for:

- **VWAP** = floor(sum paid / sum GPU-hours).
- **last** = floor(paid / GPU-hours) of the newest trade, in chain order (block, log index).
- **TWAP** (time-weighted) = floor( sum_i p_i x (t_{i+1} - t_i) / (until - t_1) ), where
  p_i = paid_i / gpu_hours_i holds from trade i's block time until the next trade's
  (the newest holds until ``until``). Trades in the same second hold for no time but the
  last of them. With no time elapsed (``until`` == the first trade's time) it is the
  price in effect then: ``last``.

A series without trades has every price ``None`` (unknown, never zero). A trade of zero
GPU-hours cannot happen on-chain (CapacityToken and Market refuse a zero amount); one
would have no price, so it is left out rather than divided by.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from typing import Literal

Source = Literal["primary", "secondary"]
SOURCES: tuple[str, ...] = ("primary", "secondary", "combined")


@dataclass(frozen=True)
class Trade:
    block_number: int
    log_index: int
    timestamp: int  # unix seconds (the block's)
    gpu_hours: int
    paid: int  # stablecoin base units
    source: Source

    @property
    def order(self) -> tuple[int, int]:
        return self.block_number, self.log_index


@dataclass(frozen=True)
class PriceStats:
    """One series' figures; prices in stablecoin base units per GPU-hour."""

    trades: int
    gpu_hours: int
    volume: int  # stablecoin base units paid
    vwap: int | None
    last: int | None
    first_at: int | None
    last_at: int | None
    twap: int | None
    twap_until: int | None  # the end of the TWAP's span (its start is first_at)


EMPTY = PriceStats(0, 0, 0, None, None, None, None, None, None)


def price_stats(trades: Iterable[Trade], until: int) -> PriceStats:
    """The series' figures, its TWAP running to ``until`` (never before its newest trade)."""
    series = sorted((t for t in trades if t.gpu_hours > 0), key=lambda t: t.order)
    if not series:
        return EMPTY
    hours = sum(t.gpu_hours for t in series)
    volume = sum(t.paid for t in series)
    newest = series[-1]
    end = max(until, newest.timestamp)
    return PriceStats(
        trades=len(series),
        gpu_hours=hours,
        volume=volume,
        vwap=volume // hours,
        last=newest.paid // newest.gpu_hours,
        first_at=series[0].timestamp,
        last_at=newest.timestamp,
        twap=time_weighted(series, end),
        twap_until=end,
    )


def time_weighted(series: Sequence[Trade], until: int) -> int:
    """floor(TWAP) of trades in chain order (non-empty, until >= the newest's time)."""
    span = until - series[0].timestamp
    if span <= 0:
        return series[-1].paid // series[-1].gpu_hours
    # sum_i paid_i x held_i / hours_i, exactly: the integer numerators summed per distinct
    # denominator first (few: trades come in a handful of sizes), then as fractions.
    held_by_hours: dict[int, int] = defaultdict(int)
    for trade, after in zip(series, [*series[1:], None], strict=True):
        held_until = after.timestamp if after is not None else until
        held_by_hours[trade.gpu_hours] += trade.paid * (held_until - trade.timestamp)
    weighted = sum((Fraction(n, h) for h, n in held_by_hours.items()), Fraction(0))
    return floor(weighted / span)
