"""The projection of ONE node in plain Python ints, straight from ``formulas``.

Slow on purpose and written as the engine's docstring reads, month by month: it is
what the vectorised engine (``backend.risk.engine``) is tested against on random and
boundary fleets. If the two disagree, this one is the specification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.risk import formulas as F
from backend.risk.engine import Params
from backend.risk.fleet import HOURS_PER_MONTH, Fleet
from backend.risk.formulas import BPS, MONTH_SECONDS
from backend.risk.scenarios import PPM, Scenario


@dataclass
class NodeProjection:
    dscr: list[int] = field(default_factory=list)  # formulas.INFINITE: no service
    ltv: list[int] = field(default_factory=list)
    value: list[int] = field(default_factory=list)
    outstanding: list[int] = field(default_factory=list)
    net: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    covenant: list[bool] = field(default_factory=list)
    first_breach: int = 0
    first_default: int = 0
    bond_used: int = 0
    reserve_used: int = 0
    claim: int = 0
    recovery: int = 0
    waterfall: dict[str, int] = field(default_factory=dict)


def project_node(fleet: Fleet, i: int, scenario: Scenario, params: Params) -> NodeProjection:
    """Node ``i`` of ``fleet``; every path covers the full horizon (the engine's too)."""
    g = lambda a: int(a[i])  # noqa: E731
    h = params.horizon_months
    life = scenario.economic_life_months or g(fleet.economic_life_months)
    tenor = g(fleet.tenor)
    if scenario.tenor_months and g(fleet.months_since_draw) < tenor:
        tenor = scenario.tenor_months  # re-termed; a pool repaid on its own terms stays repaid
    index = [int(v) for v in scenario.price_index(str(fleet.class_name[i]), h)]
    mult = [int(v) for v in scenario.utilization.multipliers(h)]
    gpus, drawn, rate = g(fleet.gpu_count), g(fleet.drawn), g(fleet.rate_bps)
    since = g(fleet.months_since_draw)
    reserve, bond, insurance = g(fleet.reserve), g(fleet.bond), g(fleet.insurance)
    out = NodeProjection()
    insurance_at = value_at = 0
    for m in range(1, h + 1):
        t = params.start_time + m * MONTH_SECONDS
        value = F.depreciated_value(
            g(fleet.acquisition_cost), g(fleet.residual_value_bps), life, g(fleet.acquired_at), t
        )
        principal, interest = F.debt_service_due(drawn, tenor, rate, MONTH_SECONDS, 0, since + m)
        due = principal + interest
        outstanding = F.debt_outstanding(drawn, tenor, 0, since + m)
        price = g(fleet.price0) * index[m - 1] // PPM
        util = min(g(fleet.utilization0) * mult[m - 1] // BPS, BPS)
        gross = gpus * HOURS_PER_MONTH * price * util // BPS
        net = max(
            gross - gross * params.fee_bps // BPS - gpus * g(fleet.opex_per_gpu_month),
            0,
        )
        out.value.append(value)
        out.outstanding.append(outstanding)
        out.net.append(net)
        out.due.append(due)
        lo = max(0, m - params.dscr_window_months)
        dscr = F.dscr_bps(sum(out.net[lo:]), sum(out.due[lo:]))
        ltv = F.ltv_bps(outstanding, value)
        epochs = sum(1 for d in out.due[lo:] if d > 0)
        flag = F.covenant_breached(dscr, ltv, epochs, params.covenant_dscr_bps, params.max_ltv_bps)
        out.dscr.append(dscr)
        out.ltv.append(ltv)
        out.covenant.append(flag)
        if out.first_default:
            continue  # paths go on (as in the engine); the cash state stopped
        if flag and not out.first_breach:
            out.first_breach = m
        insurance += gross * params.insurance_bps // BPS
        gap = max(due - net, 0)
        use_r = min(reserve, gap)
        use_b = min(bond, gap - use_r)
        reserve -= use_r
        bond -= use_b
        unpaid = gap - use_r - use_b
        if unpaid > 0:
            out.first_default = m
            out.claim = outstanding + unpaid
            value_at, insurance_at = value, insurance
    out.bond_used = g(fleet.bond) - bond
    out.reserve_used = g(fleet.reserve) - reserve
    tiers = dict.fromkeys(("operator_bond", "stakers", "insurance_reserve", "holders"), 0)
    if out.first_default:
        out.recovery = value_at * params.recovery_bps // BPS
        loss = max(out.claim - out.recovery, 0)
        stakers = min(loss, out.claim * g(fleet.staked_bps) // BPS)
        from_insurance = min(loss - stakers, insurance_at)
        tiers = {
            "operator_bond": out.bond_used,
            "stakers": stakers,
            "insurance_reserve": from_insurance,
            "holders": loss - stakers - from_insurance,
        }
    out.waterfall = tiers
    return out
