"""Named stress scenarios: what each assumes about prices, demand, GPU life and tenors.

A scenario is a world, not a fleet: it says how rental prices move (an annual decline
or a given index path per class), how each node's utilization moves relative to its
attested level, and optionally overrides the GPU classes' economic life or the pools'
tenors. Paths are integer (price index in ppm, utilization multiplier in bps) so the
projection stays integer end to end and every run is bit-for-bit deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from backend.risk.formulas import BPS

PPM = 1_000_000  # price index unit: 1_000_000 = today's price
MAX_HORIZON_MONTHS = 600


class ScenarioError(ValueError):
    """The scenario's parameters are inconsistent; the message says which."""


@dataclass(frozen=True)
class UtilizationPath:
    """Utilization multiplier (bps of the node's attested level), piecewise linear.

    Month m's multiplier is ``start + (end - start) * min(m, over) // over`` (floor), flat
    after ``over`` months; utilization is ``u0 * multiplier // 10_000`` capped at 100%.
    """

    start_bps: int = BPS
    end_bps: int = BPS
    over_months: int = 1

    def multipliers(self, horizon: int) -> NDArray[np.int64]:
        m = np.arange(1, horizon + 1, dtype=np.int64)
        step = (self.end_bps - self.start_bps) * np.minimum(m, self.over_months)
        return self.start_bps + step // self.over_months


@dataclass(frozen=True)
class Scenario:
    """One world to project a fleet through (see :data:`NAMED` for the standard ones).

    ``annual_price_decline_bps``: rental prices fall by this share every 12 months,
    compounding monthly: index(m) = round(1e6 x (1 - d)^(m/12)) ppm. ``price_index_ppm``
    replaces that path for the classes it names (one value per month from month 1).
    ``economic_life_months`` overrides every class's life (collateral value path);
    ``tenor_months`` re-terms every pool's debt: the principal outstanding when the
    projection starts becomes a new loan of that many instalments (RevenuePool's formula,
    drawn today); what was repaid stays repaid, and so does a pool already repaid.
    """

    name: str
    description: str
    annual_price_decline_bps: int = 0
    price_index_ppm: dict[str, tuple[int, ...]] = field(default_factory=dict)
    utilization: UtilizationPath = UtilizationPath()
    economic_life_months: int | None = None
    tenor_months: int | None = None

    def validate(self, horizon: int) -> None:
        if not 1 <= horizon <= MAX_HORIZON_MONTHS:
            raise ScenarioError(f"horizon_months={horizon} must be in [1, {MAX_HORIZON_MONTHS}]")
        if not 0 <= self.annual_price_decline_bps < BPS:
            raise ScenarioError(
                f"{self.name}: annual_price_decline_bps must be in [0, 9999] "
                f"(got {self.annual_price_decline_bps})"
            )
        for cls, path in self.price_index_ppm.items():
            if len(path) < horizon:
                raise ScenarioError(
                    f"{self.name}: price_index_ppm[{cls!r}] has {len(path)} months, "
                    f"the horizon needs {horizon}"
                )
            if any(not 0 <= v <= 100 * PPM for v in path[:horizon]):
                raise ScenarioError(
                    f"{self.name}: price_index_ppm[{cls!r}] values must be in [0, {100 * PPM}] ppm"
                )
        u = self.utilization
        if not (0 <= u.start_bps <= 10 * BPS and 0 <= u.end_bps <= 10 * BPS):
            raise ScenarioError(f"{self.name}: utilization multipliers must be in [0, 100000] bps")
        if not 1 <= u.over_months <= MAX_HORIZON_MONTHS:
            raise ScenarioError(f"{self.name}: utilization over_months must be in [1, 600]")
        for name, v in (
            ("economic_life_months", self.economic_life_months),
            ("tenor_months", self.tenor_months),
        ):
            if v is not None and not 1 <= v <= 1_200:
                raise ScenarioError(f"{self.name}: {name} must be in [1, 1200] (got {v})")

    def price_index(self, class_name: str, horizon: int) -> NDArray[np.int64]:
        """ppm of today's price, months 1..horizon."""
        given = self.price_index_ppm.get(class_name)
        if given is not None:
            return np.array(given[:horizon], dtype=np.int64)
        keep = 1.0 - self.annual_price_decline_bps / BPS
        # Python floats (IEEE-754 pow): the same integers on every run; a month-level
        # path of <= 600 values, so the projection itself stays integer.
        return np.array(
            [round(PPM * keep ** (m / 12)) for m in range(1, horizon + 1)], dtype=np.int64
        )


NAMED: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("base", "Prices and utilization stay at today's attested levels."),
        Scenario(
            "deflation_20",
            "Rental prices fall 20% a year (the low end of the field's 20-40%).",
            annual_price_decline_bps=2_000,
        ),
        Scenario(
            "deflation_40",
            "Rental prices fall 40% a year (the high end of the field's 20-40%).",
            annual_price_decline_bps=4_000,
        ),
        Scenario(
            "life_18",
            "GPUs are worth their residual after 18 months (the credit analysts' fear).",
            economic_life_months=18,
        ),
        Scenario("life_36", "GPUs have a 36-month economic life.", economic_life_months=36),
        Scenario("life_60", "GPUs have a 60-month economic life.", economic_life_months=60),
        Scenario(
            "slow_productivity",
            "AI productivity arrives, but over 15 years while financing runs on 10-year "
            "tenors (seed 003's first stress test): each node's utilization starts at its "
            "attested level today and ramps linearly to 1.5x that (capped at 100%) by "
            "month 180; rental prices fall 20% a year (hardware keeps getting cheaper); "
            "every pool is re-termed: the principal still outstanding is spread over 120 "
            "new monthly instalments (what was repaid stays repaid). Re-terming buys time.",
            annual_price_decline_bps=2_000,
            utilization=UtilizationPath(BPS, 15_000, 180),
            tenor_months=120,
        ),
        Scenario(
            "refuted_productivity",
            "The productivity thesis fails (seed 003's second stress test): demand stalls "
            "at today's level while new supply keeps arriving, so each node's utilization "
            "falls linearly to half its attested level over 24 months and stays there, and "
            "rental prices fall 40% a year for the whole horizon (no floor). No re-term: "
            "there is nothing to buy time for.",
            annual_price_decline_bps=4_000,
            utilization=UtilizationPath(BPS, 5_000, 24),
        ),
    )
}


def class_decline(class_name: str, annual_decline_bps: int, horizon: int) -> Scenario:
    """Only ``class_name``'s rental prices fall (``annual_decline_bps`` a year); every other
    class, utilization, life and tenor stay as today: "what if H100 prices fall 40%/yr"."""
    if not 0 <= annual_decline_bps < BPS:
        raise ScenarioError(f"annual decline must be in [0, 9999] bps (got {annual_decline_bps})")
    path = Scenario("_", "_", annual_price_decline_bps=annual_decline_bps).price_index("", horizon)
    pct = annual_decline_bps / 100
    return Scenario(
        name=f"{class_name}-{annual_decline_bps}bps",
        description=f"{class_name} rental prices fall {pct:g}% a year; everything else as today.",
        price_index_ppm={class_name: tuple(int(v) for v in path)},
    )
