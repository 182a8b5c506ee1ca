"""Collateral marked to the market: the lower of book value and what GPU-hour prices imply.

Book value is the depreciation schedule the chain values collateral by (RiskModel.value:
straight line from cost to the residual over the class's economic life, by default).
That schedule is itself an assumption about earnings: a straight line loses the same
amount every hour, so it says the node earns the same every hour of its remaining life
and is then worth its residual. The market-implied value keeps that assumption and
replaces the earnings by what the node's hours sell for on the market today:

    implied = residual + floor( sellable_milli x price x capital_bps / (1,000 x 10^4) )

    remaining_s    = max(0, acquired_at + life_months x 2,592,000 - t)       [seconds]
    sellable_milli = floor(gpu_count x remaining_s x 1000 x utilization_bps
                           / (3,600 x 10^4))                            [milli GPU-hours]
                     (formulas.milli_gpu_hours: the hours an oracle would attest)
    price          = the class's market price per GPU-hour (the VWAP of its trades in
                     the lookback, wash trades excluded)      [stablecoin base units / h]
    capital_bps    = the share of a GPU-hour's price that reaches the capital: gross
                     less the protocol fee, the insurance reserve and the operator's
                     share, which pays power and hosting (deployed: 10^4 - 500 - 300 -
                     3,000 = 6,200)                                             [bps]
    residual       = cost x residual_value_bps / 10^4                [base units]

All amounts are stablecoin base units (6 decimals); every division floors, in the order
written (the vectorised engine, ``backend.risk.engine``, floors in the same places).
Like the book schedule it is undiscounted, and it declines the same way: linearly, as
the remaining hours run out, to the residual at the end of life. It is not a resale
price of used hardware (there is no such market on-chain); it is what the collateral
earns at today's prices.

**Marked value** = min(book, implied) when the class traded enough (``MarkRule``: a
minimum number of trades and volume in a lookback), else book: a mark only ever lowers a
value. Without enough trades there is no market price to mark to: the book value stands
and the answer says so (``basis``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.risk import formulas as F
from backend.risk import terms as T
from backend.risk.formulas import BPS, MONTH_SECONDS

# The deployed split: what is left of a GPU-hour's price for the capital (debt, stakers).
CAPITAL_SHARE_BPS = BPS - T.PROTOCOL_FEE_BPS - T.RESERVE_BPS - T.OPERATOR_BPS

Basis = Literal["book", "market"]


def remaining_life_seconds(acquired_at: int, economic_life_months: int, t: int) -> int:
    """Seconds of economic life left at ``t`` (0 once it is over)."""
    return max(0, acquired_at + economic_life_months * MONTH_SECONDS - t)


def market_implied_value(
    *,
    acquisition_cost: int,
    residual_value_bps: int,
    economic_life_months: int,
    acquired_at: int,
    t: int,
    gpu_count: int,
    price_per_gpu_hour: int,
    utilization_bps: int,
    capital_share_bps: int = CAPITAL_SHARE_BPS,
) -> int:
    """The node's residual plus its remaining sellable GPU-hours at ``price_per_gpu_hour``,
    the capital's share of them (see the module's formula); stablecoin base units."""
    remaining = remaining_life_seconds(acquired_at, economic_life_months, t)
    milli = F.milli_gpu_hours(gpu_count, remaining, utilization_bps)
    earned = milli * price_per_gpu_hour * capital_share_bps // (1000 * BPS)
    return F.residual_value(acquisition_cost, residual_value_bps) + earned


@dataclass(frozen=True)
class Mark:
    book: int
    implied: int | None  # None: no market price to mark to (not enough trades)
    marked: int
    basis: Basis  # which of the two the marked value is


def mark(book: int, implied: int | None) -> Mark:
    """The lower of book and implied; book alone when there is no implied value. A tie is
    the book's (the market confirms it, it does not lower it)."""
    if implied is None or implied >= book:
        return Mark(book, implied, book, "book")
    return Mark(book, implied, implied, "market")
