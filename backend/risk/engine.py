"""The vectorised projection: a fleet through a scenario, month by month, in int64.

What one month m (1..horizon, ending at ``start_time + m x 30 days``) means per node:

- price_m = price0 x index_m // 1e6 (the scenario's path for the node's class);
  utilization_m = min(u0 x multiplier_m // 10_000, 10_000).
- gross_m = gpus x 720 h x price_m x utilization_m // 10_000; the settlement takes
  ``fee_bps`` of it (of which ``insurance_bps`` goes to the pool's insurance reserve);
  opex (per GPU-month, paid rented or not) comes out too; net_m = max(0, what is left).
  A negative month is the operator's own loss, not the pool's: net floors at 0 because
  the on-chain DSCR takes revenue as a uint.
- Debt: pool epoch n = months_since_draw + m; (principal, interest) and the outstanding
  principal after the instalment follow RevenuePool.debtServiceDue/debtOutstanding with
  one-month epochs (``formulas.debt_service_due``).
- value_m = straight-line depreciated value at the month's end (the scenario may override
  the class's economic life); LTV_m = outstanding_m vs value_m.
- DSCR_m over the trailing ``dscr_window_months`` (shorter in the first months: only the
  projected months count) = sum net / sum service; covenant flag as on-chain.
- Cash: the month's shortfall (service - net, if positive) is paid from the operator's
  debt-service reserve, then from the operator's bond. **Default** is the first month in
  which service is still short after both; the node stops there (paths end at default).
  Surplus months pay out (to the operator and stakers) and are not retained.
- **Loss waterfall at default**: the pool's claim is the principal outstanding plus the
  month's unpaid service; the collateral is sold at ``recovery_bps`` of its depreciated
  value. The total loss = what the bond paid in shortfalls + (claim - recovery, if
  positive), absorbed in order: operator bond (all of it, by the default definition) →
  stakers (up to their staked share of the claim) → the pool's insurance reserve → the
  remaining (unstaked) holders. The four amounts sum to the total loss exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.risk import vector as V
from backend.risk.fleet import HOURS_PER_MONTH, MAX_TIME, Fleet
from backend.risk.formulas import BPS, MONTH_SECONDS
from backend.risk.scenarios import PPM, Scenario, ScenarioError

I64 = NDArray[np.int64]
WATERFALL_TIERS = ("operator_bond", "stakers", "insurance_reserve", "holders")


@dataclass(frozen=True)
class Params:
    """Run-wide terms (not the world: that is the scenario). Defaults are the protocol's."""

    start_time: int
    horizon_months: int = 60
    covenant_dscr_bps: int = 12_500
    max_ltv_bps: int = 8_000
    dscr_window_months: int = 3
    fee_bps: int = 1_000
    insurance_bps: int = 200
    recovery_bps: int = 6_000

    def validate(self) -> None:
        if not 0 <= self.start_time <= MAX_TIME:
            raise ScenarioError(f"start_time={self.start_time} must be in [0, {MAX_TIME}]")
        for name in ("covenant_dscr_bps", "max_ltv_bps"):
            if not 0 <= getattr(self, name) <= 100 * BPS:
                raise ScenarioError(f"{name} must be in [0, {100 * BPS}]")
        for name in ("fee_bps", "insurance_bps", "recovery_bps"):
            if not 0 <= getattr(self, name) <= BPS:
                raise ScenarioError(f"{name} must be in [0, {BPS}]")
        if self.insurance_bps > self.fee_bps:
            raise ScenarioError("insurance_bps is part of fee_bps and cannot exceed it")
        if not 1 <= self.dscr_window_months <= 24:
            raise ScenarioError("dscr_window_months must be in [1, 24]")


@dataclass
class Projection:
    """One scenario's result. Month arrays are (nodes, horizon); month numbers 1-based."""

    scenario: Scenario
    params: Params
    fleet: Fleet
    price: I64
    utilization: I64
    gross: I64
    net: I64
    due: I64
    outstanding: I64
    value: I64
    dscr: I64  # vector.INF: no service in the window
    ltv: I64  # vector.INF: debt against no value
    covenant: NDArray[np.bool_]
    dscr_breach: NDArray[np.bool_]  # the DSCR half of the covenant alone
    active: NDArray[np.bool_]  # the node is still running in that month (default month incl.)
    first_breach: I64  # 0: never
    first_dscr_breach: I64  # 0: never
    first_default: I64  # 0: never
    bond_used: I64
    reserve_used: I64
    claim: I64  # at default (0 otherwise)
    recovery: I64
    waterfall: dict[str, I64]  # tier -> amount per node (0 without default)

    @property
    def total_loss(self) -> I64:
        return sum(self.waterfall.values(), np.zeros(len(self.fleet), dtype=np.int64))


def _trailing(x: I64, window: int) -> I64:
    """Sum over the last ``window`` months (fewer at the start), exact."""
    V.exact_sum(x, axis=1, what="cumulative revenue")  # bounds every prefix sum
    c = np.cumsum(x, axis=1, dtype=np.int64)
    out = c.copy()
    out[:, window:] -= c[:, :-window]
    return out


def price_index_matrix(fleet: Fleet, scenario: Scenario, horizon: int) -> I64:
    idx = np.empty((len(fleet), horizon), dtype=np.int64)
    for name in np.unique(fleet.class_name):
        idx[fleet.class_name == name] = scenario.price_index(str(name), horizon)
    return idx


def project(fleet: Fleet, scenario: Scenario, params: Params) -> Projection:
    """Project every node of ``fleet`` through ``scenario`` (deterministic, integer)."""
    params.validate()
    h = params.horizon_months
    scenario.validate(h)
    col = lambda a: a[:, None]  # noqa: E731 - (nodes,) -> (nodes, 1) for broadcasting
    months = np.arange(1, h + 1, dtype=np.int64)
    t = params.start_time + months * MONTH_SECONDS

    life = fleet.economic_life_months
    if scenario.economic_life_months is not None:
        life = np.full_like(life, scenario.economic_life_months)
    tenor = fleet.tenor
    if scenario.tenor_months is not None:
        # A pool already repaid under its own terms stays repaid.
        tenor = np.where(fleet.months_since_draw < tenor, scenario.tenor_months, tenor)

    value = V.depreciated_value(
        col(fleet.acquisition_cost),
        col(fleet.residual_value_bps),
        col(life),
        col(fleet.acquired_at),
        t[None, :],
    )
    epoch = col(fleet.months_since_draw) + months[None, :]
    principal, interest = V.debt_service_due(
        col(fleet.drawn), col(tenor), col(fleet.rate_bps), MONTH_SECONDS, 0, epoch
    )
    due = principal + interest
    outstanding = V.debt_outstanding(col(fleet.drawn), col(tenor), 0, epoch)

    price = V.mul_div(col(fleet.price0), price_index_matrix(fleet, scenario, h), PPM, "price")
    mult = scenario.utilization.multipliers(h)
    utilization = np.minimum(col(fleet.utilization0) * mult[None, :] // BPS, BPS)
    capacity_value = V.mul_div(col(fleet.gpu_count * HOURS_PER_MONTH), price, 1, "capacity")
    gross = V.mul_div(capacity_value, utilization, BPS, "gross revenue")
    fee = V.mul_div(gross, params.fee_bps, BPS, "fee")
    insurance_in = V.mul_div(gross, params.insurance_bps, BPS, "insurance")
    opex = col(fleet.gpu_count * fleet.opex_per_gpu_month)
    net = np.maximum(gross - fee - opex, 0)

    w = params.dscr_window_months
    dscr = V.dscr_bps(_trailing(net, w), _trailing(due, w))
    service_epochs = _trailing((due > 0).astype(np.int64), w)
    ltv = V.ltv_bps(outstanding, value)
    covenant = V.covenant_breached(
        dscr, ltv, service_epochs, params.covenant_dscr_bps, params.max_ltv_bps
    )

    # Cash, month by month (state carries): vectorised over nodes.
    n = len(fleet)
    reserve, bond, insurance = fleet.reserve.copy(), fleet.bond.copy(), fleet.insurance.copy()
    alive = np.ones(n, dtype=bool)
    first_default = np.zeros(n, dtype=np.int64)
    claim = np.zeros(n, dtype=np.int64)
    value_at = np.zeros(n, dtype=np.int64)
    insurance_at = np.zeros(n, dtype=np.int64)
    for j in range(h):
        insurance = np.where(alive, insurance + insurance_in[:, j], insurance)
        gap = np.where(alive, np.maximum(due[:, j] - net[:, j], 0), 0)
        use_r = np.minimum(reserve, gap)
        use_b = np.minimum(bond, gap - use_r)
        unpaid = gap - use_r - use_b
        reserve -= use_r
        bond -= use_b
        newly = alive & (unpaid > 0)
        if newly.any():
            first_default[newly] = j + 1
            claim[newly] = outstanding[newly, j] + unpaid[newly]
            value_at[newly] = value[newly, j]
            insurance_at[newly] = insurance[newly]
            alive &= ~newly
    defaulted = first_default > 0
    active = ~col(defaulted) | (months[None, :] <= col(first_default))

    recovery = np.where(defaulted, V.mul_div(value_at, params.recovery_bps, BPS, "recovery"), 0)
    bond_used = fleet.bond - bond
    default_loss = np.maximum(claim - recovery, 0)
    stakers = np.minimum(default_loss, V.mul_div(claim, fleet.staked_bps, BPS, "stake"))
    from_insurance = np.minimum(default_loss - stakers, insurance_at)
    holders = default_loss - stakers - from_insurance
    waterfall = {
        "operator_bond": np.where(defaulted, bond_used, 0),
        "stakers": stakers,
        "insurance_reserve": from_insurance,
        "holders": holders,
    }

    dscr_breach = (service_epochs > 0) & (dscr < params.covenant_dscr_bps)
    first_breach, first_dscr_breach = (
        np.where(f.any(axis=1), f.argmax(axis=1) + 1, 0).astype(np.int64)
        for f in (covenant & active, dscr_breach & active)
    )
    return Projection(
        scenario=scenario,
        params=params,
        fleet=fleet,
        price=price,
        utilization=utilization,
        gross=gross,
        net=net,
        due=due,
        outstanding=outstanding,
        value=value,
        dscr=dscr,
        ltv=ltv,
        covenant=covenant,
        dscr_breach=dscr_breach,
        active=active,
        first_breach=first_breach,
        first_dscr_breach=first_dscr_breach,
        first_default=first_default,
        bond_used=bond_used,
        reserve_used=fleet.reserve - reserve,
        claim=claim,
        recovery=recovery,
        waterfall=waterfall,
    )


def aggregate(p: Projection, mask: NDArray[np.bool_] | None = None) -> dict[str, object]:
    """Month paths and totals over the masked nodes (default: all): a pool set or platform.

    DSCR and LTV are ratios of sums over the nodes still running (not averages of ratios),
    so a large failing node weighs as much as its debt.
    """
    sel = np.ones(len(p.fleet), dtype=bool) if mask is None else mask
    act = p.active[sel]
    net = V.exact_sum(np.where(act, p.net[sel], 0), axis=0, what="aggregate revenue")
    due = V.exact_sum(np.where(act, p.due[sel], 0), axis=0, what="aggregate service")
    out = V.exact_sum(np.where(act, p.outstanding[sel], 0), axis=0, what="aggregate debt")
    val = V.exact_sum(np.where(act, p.value[sel], 0), axis=0, what="aggregate value")
    w = p.params.dscr_window_months
    dscr = V.dscr_bps(_trailing(net[None, :], w)[0], _trailing(due[None, :], w)[0])
    months = np.arange(1, p.params.horizon_months + 1)
    fd, fb = p.first_default[sel], p.first_breach[sel]
    return {
        "nodes": int(sel.sum()),
        "net_revenue": net,
        "debt_service": due,
        "outstanding": out,
        "value": val,
        "dscr_bps": dscr,
        "ltv_bps": V.ltv_bps(out, val),
        "breaching": (p.covenant[sel] & act).sum(axis=0),
        "defaults_cumulative": ((fd > 0)[:, None] & (fd[:, None] <= months[None, :])).sum(axis=0),
        "first_breach_month": int(fb[fb > 0].min()) if (fb > 0).any() else None,
        "first_default_month": int(fd[fd > 0].min()) if (fd > 0).any() else None,
        "nodes_breaching": int((fb > 0).sum()),
        "nodes_breaching_dscr": int((p.first_dscr_breach[sel] > 0).sum()),
        "nodes_defaulting": int((fd > 0).sum()),
        "waterfall": {k: int(v[sel].sum()) for k, v in p.waterfall.items()},
        "total_loss": int(p.total_loss[sel].sum()),
    }
