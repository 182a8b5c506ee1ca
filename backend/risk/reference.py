"""The projection of ONE node in plain Python ints, straight from ``formulas``.

Slow on purpose and written as the engine's docstring (and EpochSettlement's settlement)
reads, period by period: it is what the vectorised engine (``backend.risk.engine``) is
tested against on random and boundary fleets. If the two disagree, this one is the
specification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.risk import formulas as F
from backend.risk import marking as M
from backend.risk.engine import CASH_SWEEP, PERFORMING, Params
from backend.risk.fleet import NO_MARK, USE_DEFAULT, Fleet
from backend.risk.formulas import BPS
from backend.risk.scenarios import PPM, Scenario


@dataclass
class NodeProjection:
    dscr: list[int] = field(default_factory=list)  # formulas.INFINITE: no service
    ltv: list[int] = field(default_factory=list)
    value: list[int] = field(default_factory=list)
    outstanding: list[int] = field(default_factory=list)
    net: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    utilization: list[int] = field(default_factory=list)
    covenant: list[bool] = field(default_factory=list)
    operator_margin: list[int] = field(default_factory=list)
    first_breach: int = 0
    first_default: int = 0
    sweep_periods: int = 0
    cures: int = 0
    swept: int = 0
    arrears: int = 0
    claim: int = 0
    recovery: int = 0
    waterfall: dict[str, int] = field(default_factory=dict)
    reserve_in: list[int] = field(default_factory=list)  # paid into the reserve, per period


def project_node(fleet: Fleet, i: int, scenario: Scenario, params: Params) -> NodeProjection:
    """Node ``i`` of ``fleet``; every path covers the full horizon (the engine's too)."""
    g = lambda a: int(a[i])  # noqa: E731
    h = params.horizon_months
    life = scenario.economic_life_months or g(fleet.economic_life_months)
    drawn, tenor, since = g(fleet.drawn), g(fleet.tenor), g(fleet.months_since_draw)
    left = F.debt_outstanding(drawn, tenor, 0, since)
    if scenario.tenor_months and left > 0:
        # Re-termed: what is still owed today is a new loan over the new tenor.
        drawn, tenor, since = left, scenario.tenor_months, 0
    index = [int(v) for v in scenario.price_index(str(fleet.class_name[i]), h)]
    mult = [int(v) for v in scenario.utilization.multipliers(h)]
    gpus, rate = g(fleet.gpu_count), g(fleet.rate_bps)
    kwh = g(fleet.electricity_price_per_kwh)
    pue = g(fleet.pue_bps)
    energy_cost = F.energy_cost_per_gpu_hour(
        g(fleet.energy_wh_per_gpu_hour),
        params.electricity_price_per_kwh if kwh == USE_DEFAULT else kwh,
        params.pue_bps if pue == USE_DEFAULT else pue,
    )
    has_loan = drawn > 0
    threshold = drawn * params.default_arrears_bps // BPS
    arrears = low_run = clean_run = 0
    state = PERFORMING
    out = NodeProjection()
    value_at = 0
    for m in range(1, h + 1):
        t = params.start_time + m * params.period_seconds
        value = F.collateral_value(
            params.curve,
            g(fleet.acquisition_cost),
            g(fleet.residual_value_bps),
            life,
            g(fleet.acquired_at),
            t,
        )
        principal, interest = F.debt_service_due(
            drawn, tenor, rate, params.period_seconds, 0, since + m
        )
        due = principal + interest
        outstanding = F.debt_outstanding(drawn, tenor, 0, since + m)
        price = g(fleet.price0) * index[m - 1] // PPM
        util = min(g(fleet.utilization0) * mult[m - 1] // BPS, BPS)
        if price * params.operator_bps < energy_cost * BPS:
            util = 0  # not worth renting: the operator's share does not pay the power
        mark = g(fleet.mark_price0)
        if params.collateral == "marked" and mark != NO_MARK:
            implied = M.market_implied_value(
                acquisition_cost=g(fleet.acquisition_cost),
                residual_value_bps=g(fleet.residual_value_bps),
                economic_life_months=life,
                acquired_at=g(fleet.acquired_at),
                t=t,
                gpu_count=gpus,
                price_per_gpu_hour=mark * index[m - 1] // PPM,
                utilization_bps=util,
                capital_share_bps=params.capital_share_bps,
            )
            value = M.mark(value, implied).marked
        milli = F.milli_gpu_hours(gpus, params.period_seconds, util)
        gross = price * milli // 1000
        fee = gross * params.protocol_fee_bps // BPS
        reserve_in = gross * params.reserve_bps // BPS
        operator_share = gross * params.operator_bps // BPS
        net = gross - fee - reserve_in - operator_share
        opex = milli * energy_cost // 1000
        out.value.append(value)
        out.outstanding.append(outstanding)
        out.net.append(net)
        out.due.append(due)
        out.utilization.append(util)
        lo = max(0, m - params.window_periods)
        dscr = F.dscr_bps(sum(out.net[lo:]), sum(out.due[lo:]))
        ltv = F.ltv_bps(outstanding, value)
        epochs = sum(1 for d in out.due[lo:] if d > 0)
        flag = F.covenant_breached(dscr, ltv, epochs, params.covenant_dscr_bps, params.max_ltv_bps)
        out.dscr.append(dscr)
        out.ltv.append(ltv)
        out.covenant.append(flag)
        if out.first_default:
            out.operator_margin.append(0)
            out.reserve_in.append(0)  # the node stopped: nothing paid in
            continue  # paths go on (as in the engine); the loan stopped
        out.reserve_in.append(reserve_in)
        if not has_loan:
            out.operator_margin.append(operator_share + net - opex)
            continue
        # EpochSettlement._serviceDebt: the operator's share joins net under a sweep.
        owed = due + arrears
        available = net + (operator_share if state == CASH_SWEEP else 0)
        paid = min(owed, available)
        arrears = owed - paid
        swept = max(paid - net, 0)
        out.swept += swept
        out.sweep_periods += state == CASH_SWEEP
        out.operator_margin.append(operator_share - swept - opex)
        # EpochSettlement._advanceLoan.
        low_run = low_run + 1 if epochs > 0 and dscr < params.default_dscr_bps else 0
        clean_run = 0 if flag else clean_run + 1
        if flag:
            if state != CASH_SWEEP and not out.first_breach:
                out.first_breach = m
            state = CASH_SWEEP
        elif state == CASH_SWEEP and clean_run >= params.cure_periods:
            state = PERFORMING
            out.cures += 1
        # PoolLoans._defaultDue, declared by the keeper right after the settlement.
        if arrears > threshold or low_run >= params.default_dscr_periods:
            out.first_default = m
            out.claim = outstanding + arrears
            value_at = value
    out.arrears = arrears
    tiers = dict.fromkeys(("operator_bond", "stakers", "insurance_reserve", "holders"), 0)
    if out.first_default:
        out.recovery = value_at * params.recovery_bps // BPS
        # EpochSettlement._waterfall.
        bond = min(g(fleet.bond) * params.pledge_bps // BPS, out.claim)
        rest = out.claim - bond
        stakers = min(rest, g(fleet.drawn) * g(fleet.staked_bps) // BPS)
        # The reserve's part is the fleet's to allocate (project_fleet): none yet.
        tiers = {
            "operator_bond": bond,
            "stakers": stakers,
            "insurance_reserve": 0,
            "holders": rest - stakers,
        }
    out.waterfall = tiers
    return out


def project_fleet(fleet: Fleet, scenario: Scenario, params: Params) -> list[NodeProjection]:
    """Every node of ``fleet``, then the reserve tier, one default at a time as
    PoolLoans._waterfall takes it from EpochSettlement's one reserve: it starts at
    ``Params.reserve_held`` plus the fleet's ``insurance`` and takes every running
    node's part of each period's gross; the defaults of a period come after the period's
    settlements, in node order, and each takes what the reserve holds, up to what the
    bond and the stakers left of its claim."""
    nodes = [project_node(fleet, i, scenario, params) for i in range(len(fleet))]
    reserve = params.reserve_held + sum(int(v) for v in fleet.insurance)
    for m in range(1, params.horizon_months + 1):
        reserve += sum(n.reserve_in[m - 1] for n in nodes)
        for n in nodes:
            if n.first_default == m:
                need = n.waterfall["holders"]
                cover = min(need, reserve)
                reserve -= cover
                n.waterfall["insurance_reserve"] = cover
                n.waterfall["holders"] = need - cover
    return nodes
