"""The vectorised projection: a fleet through a scenario, period by period, in int64.

A period is one settlement epoch of the node's pool: 30 days by default (``Params.
period_seconds``; a test compresses months into the chain's short epochs). Per node, in
period m (1..horizon, ending at ``start_time + m x period_seconds``), exactly as
EpochSettlement settles an epoch:

- price_m = price0 x index_m // 1e6; utilization_m = min(u0 x multiplier_m // 1e4, 1e4),
  or 0 in a period in which the operator's share of a GPU-hour's price does not pay the
  energy it burns (the node is not rented then: marginal cost, not the books, decides);
  milli-GPU-hours = gpus x period x 1000 x utilization // (3600 x 1e4), as an oracle
  attests; gross = price x milli // 1000 (the settlement's usage bill).
- The deployed split (``backend.risk.terms``): fee, insurance reserve and operator share
  are bps of gross (floored); net = gross - all three (what services the debt). Operating
  cost = energy of the delivered GPU-hours x electricity price x PUE, paid by the operator
  from its share (``operator_margin``; the chain never sees it).
- Debt: pool epoch n = months_since_draw + m; (principal, interest) and the principal
  outstanding after the instalment follow RevenuePool.debtServiceDue/debtOutstanding.
  A scenario's re-term makes the principal outstanding today a new loan over its tenor.
- Cash, as ``_serviceDebt``: owed = due + arrears; paid = min(owed, net, + the operator's
  share while the loan is in cash sweep); the rest carries as arrears.
- value_m on the run's curve (straight line, or the chain's declining balance) at the
  period's end; LTV_m = outstanding_m / value_m; DSCR_m = sum net / sum due over the last
  ``dscr_window_epochs`` epochs, in periods (``Params.periods``: one period with the
  deployment's hourly epochs; only projected ones); covenant flag as RiskModel.
- Loan, as ``_advanceLoan``: a flagged period puts the loan in cash sweep (from the next
  period on); ``cure_epochs`` unflagged epochs in a row (in periods) end it. Default
  (declared by the keeper right after the settlement that meets it): arrears >
  ``default_arrears_bps`` of the drawn principal, or DSCR under ``default_dscr_bps`` (with
  service in the window) for ``default_dscr_epochs`` epochs in a row (in periods). The
  node stops there (paths end at default).
- **Loss waterfall at default** (``_waterfall``): claim = principal outstanding after the
  period, accelerated, + arrears; the pledged bond (``pledge_bps`` of the bond) first, then
  the stakers (up to their shares' value: ``staked_bps`` of the raise), then the insurance
  reserve (EpochSettlement's one reserve, shared by the fleet: the nodes' ``insurance``
  plus every running node's part of gross, drawn by the defaults in order:
  ``shared_reserve``), then the unstaked holders. The four sum to the claim exactly.
  Later recovery from the node's revenue is not projected (the node stops), so the
  holders' figure is the loss booked at default.
  ``recovery`` is only an estimate of selling the collateral (``recovery_bps`` of value).
- **Collateral marked to the market** (``Params.collateral = "marked"``): a node with a
  market price (``NodeInput.mark_price_per_gpu_hour``: its class traded enough) is valued
  at min(book_m, implied_m), ``backend.risk.marking``'s formula at the period's end with
  the market price moved by the scenario's index (mark0 x index_m // 1e6), the period's
  utilization and the run's capital share (1e4 - fee - reserve - operator). Falling
  prices then lower the collateral too, and LTV and recovery follow. Nodes without a
  market price keep their book value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.risk import terms as T
from backend.risk import vector as V
from backend.risk.fleet import MAX_TIME, NO_MARK, USE_DEFAULT, Fleet
from backend.risk.formulas import BPS, MONTH_SECONDS
from backend.risk.scenarios import PPM, Scenario, ScenarioError

I64 = NDArray[np.int64]
WATERFALL_TIERS = ("operator_bond", "stakers", "insurance_reserve", "holders")
CURVES = ("straight_line", "declining_balance")
COLLATERAL = ("book", "marked")
# Above every book value (<= fleet.MAX_AMOUNT): a market-implied value capped here marks
# to the same min(book, implied), and residual + cap stays inside int64.
_IMPLIED_CAP = 2**62
PERFORMING, CASH_SWEEP = 0, 1


@dataclass(frozen=True)
class Params:
    """Run-wide terms (not the world: that is the scenario). Defaults are the deployed
    protocol's (``backend.risk.terms``).

    The covenant window and the loan's runs are counted in the chain's epochs
    (``epoch_seconds`` long), as EpochSettlement and PoolLoans count them, and projected
    onto periods by ``periods``: a period holds period_seconds / epoch_seconds epochs of
    the same price and utilization, so a run of k epochs is complete within the
    ceil(k x epoch_seconds / period_seconds)-th period of the condition (at least one).
    With the deployment's hourly epochs and 30-day periods, the 720-epoch (30-day) DSCR
    window, the 720-epoch default run and the 168-epoch (7-day) cure each take one period
    (so do the demo's 24 / 6 / 3); with periods one epoch long (the anvil test) they are
    counts of periods.
    """

    start_time: int
    horizon_months: int = 60
    period_seconds: int = MONTH_SECONDS
    protocol_fee_bps: int = T.PROTOCOL_FEE_BPS
    reserve_bps: int = T.RESERVE_BPS
    operator_bps: int = T.OPERATOR_BPS
    covenant_dscr_bps: int = T.COVENANT_DSCR_BPS
    max_ltv_bps: int = T.MAX_LTV_BPS
    dscr_window_epochs: int = T.DSCR_WINDOW_EPOCHS
    pledge_bps: int = T.PLEDGE_BPS
    default_arrears_bps: int = T.DEFAULT_ARREARS_BPS
    default_dscr_bps: int = T.DEFAULT_DSCR_BPS
    default_dscr_epochs: int = T.DEFAULT_DSCR_EPOCHS
    cure_epochs: int = T.CURE_EPOCHS
    curve: str = "straight_line"
    electricity_price_per_kwh: int = T.ELECTRICITY_PRICE_PER_KWH
    pue_bps: int = T.PUE_BPS
    recovery_bps: int = 6_000
    collateral: str = "book"  # or "marked": see the module's docstring
    epoch_seconds: int = T.EPOCH_SECONDS  # the chain's epoch: what the runs are counted in
    # EpochSettlement's reserve at the start (reserveHeld), beside the nodes' insurance.
    reserve_held: int = 0

    def periods(self, epochs: int) -> int:
        """Periods a run of ``epochs`` chain epochs takes: ceil(epochs x epoch_seconds /
        period_seconds), at least one."""
        return max(1, -(-epochs * self.epoch_seconds // self.period_seconds))

    @property
    def window_periods(self) -> int:
        """The DSCR window (``dscr_window_epochs``) in periods."""
        return self.periods(self.dscr_window_epochs)

    @property
    def cure_periods(self) -> int:
        return self.periods(self.cure_epochs)

    @property
    def default_dscr_periods(self) -> int:
        return self.periods(self.default_dscr_epochs)

    @property
    def capital_share_bps(self) -> int:
        """What is left of a GPU-hour's gross for the capital: the split's net."""
        return BPS - self.protocol_fee_bps - self.reserve_bps - self.operator_bps

    def validate(self) -> None:
        if not 0 <= self.start_time <= MAX_TIME:
            raise ScenarioError(f"start_time={self.start_time} must be in [0, {MAX_TIME}]")
        if not 1 <= self.period_seconds <= MONTH_SECONDS:
            raise ScenarioError(f"period_seconds must be in [1, {MONTH_SECONDS}]")
        for name in ("covenant_dscr_bps", "max_ltv_bps", "default_dscr_bps"):
            if not 0 <= getattr(self, name) <= 100 * BPS:
                raise ScenarioError(f"{name} must be in [0, {100 * BPS}]")
        for name in (
            "protocol_fee_bps",
            "reserve_bps",
            "operator_bps",
            "pledge_bps",
            "default_arrears_bps",
            "recovery_bps",
        ):
            if not 0 <= getattr(self, name) <= BPS:
                raise ScenarioError(f"{name} must be in [0, {BPS}]")
        split = self.protocol_fee_bps + self.reserve_bps + self.operator_bps
        if split > BPS:
            raise ScenarioError(
                f"protocol_fee_bps + reserve_bps + operator_bps = {split} exceeds {BPS}"
            )
        if not 1 <= self.epoch_seconds <= MONTH_SECONDS:
            raise ScenarioError(f"epoch_seconds must be in [1, {MONTH_SECONDS}]")
        for name in ("dscr_window_epochs", "default_dscr_epochs", "cure_epochs"):
            if not 1 <= getattr(self, name) <= 720:
                raise ScenarioError(f"{name} must be in [1, 720]")
        if self.curve not in CURVES:
            raise ScenarioError(f"curve {self.curve!r}: known curves are {', '.join(CURVES)}")
        if self.collateral not in COLLATERAL:
            raise ScenarioError(f"collateral {self.collateral!r}: one of {', '.join(COLLATERAL)}")
        if not 0 <= self.electricity_price_per_kwh <= 10**7:
            raise ScenarioError("electricity_price_per_kwh must be in [0, 10000000]")
        if not 0 <= self.reserve_held <= 2**62:
            raise ScenarioError(f"reserve_held must be in [0, {2**62}]")
        if not BPS <= self.pue_bps <= 3 * BPS:
            raise ScenarioError(f"pue_bps must be in [{BPS}, {3 * BPS}]")


@dataclass
class Projection:
    """One scenario's result. Period arrays are (nodes, horizon); period numbers 1-based."""

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
    active: NDArray[np.bool_]  # the node is still running in that period (default's incl.)
    operator_margin: I64  # operator share kept (after any sweep) less the energy bill
    first_breach: I64  # 0: never (also the period the loan entered cash sweep)
    first_dscr_breach: I64  # 0: never
    first_default: I64  # 0: never
    sweep_periods: I64  # periods settled under a cash sweep (before default)
    cures: I64  # times a cash sweep was cured
    swept: I64  # operator share that went to debt service under a sweep
    arrears: I64  # at default, or at the horizon
    claim: I64  # at default (0 otherwise)
    recovery: I64  # estimate: collateral sold at recovery_bps of its value at default
    waterfall: dict[str, I64]  # tier -> amount per node (0 without default)

    @property
    def total_loss(self) -> I64:
        return sum(self.waterfall.values(), np.zeros(len(self.fleet), dtype=np.int64))


def trailing_sum(x: I64, window: int) -> I64:
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


def _resolved(per_node: I64, default: int) -> I64:
    return np.where(per_node == USE_DEFAULT, default, per_node)


def collateral_values(fleet: Fleet, life: I64, t: I64, curve: str) -> I64:
    """(nodes, periods) value at times ``t`` on ``curve``, as RiskModel.value."""
    if curve == "declining_balance":
        return V.declining_balance_value(
            fleet.acquisition_cost, fleet.residual_value_bps, life, fleet.acquired_at, t
        )
    return V.depreciated_value(
        fleet.acquisition_cost[:, None],
        fleet.residual_value_bps[:, None],
        life[:, None],
        fleet.acquired_at[:, None],
        t[None, :],
    )


def marked_values(
    fleet: Fleet, book: I64, life: I64, t: I64, index: I64, utilization: I64, params: Params
) -> I64:
    """(nodes, periods) collateral marked to the market: min(book, implied) for the nodes
    with a market price (``backend.risk.marking``, floored in the same places), book for
    the others."""
    rows = np.flatnonzero(fleet.mark_price0 != NO_MARK)
    if rows.size == 0:
        return book
    col = lambda a: a[rows][:, None]  # noqa: E731 - marked nodes, broadcast over periods
    end = col(fleet.acquired_at) + col(life) * MONTH_SECONDS
    remaining = np.maximum(end - t[None, :], 0)
    milli = V.mul_div(
        col(fleet.gpu_count) * remaining, 1000 * utilization[rows], 3600 * BPS, "sellable hours"
    )
    price = V.mul_div(col(fleet.mark_price0), index[rows], PPM, "market price")
    earned = V.mul_div(
        milli, price * params.capital_share_bps, 1000 * BPS, "implied value", saturate=True
    )
    residual = V.mul_div(
        col(fleet.acquisition_cost), col(fleet.residual_value_bps), BPS, "residual value"
    )
    out = book.copy()
    out[rows] = np.minimum(book[rows], residual + np.minimum(earned, _IMPLIED_CAP))
    return out


def loan_terms(fleet: Fleet, scenario: Scenario) -> tuple[I64, I64, I64]:
    """(principal, tenor, periods since the draw) of each node's loan under ``scenario``.

    A re-term makes the principal still outstanding today a new loan over the scenario's
    tenor, from now: what was repaid stays repaid (a pool already repaid stays repaid).
    """
    drawn, tenor, since = fleet.drawn, fleet.tenor, fleet.months_since_draw
    if scenario.tenor_months is None:
        return drawn, tenor, since
    left = V.debt_outstanding(drawn, tenor, 0, since)
    live = left > 0
    return (
        np.where(live, left, drawn),
        np.where(live, scenario.tenor_months, tenor),
        np.where(live, 0, since),
    )


def _settle_loans(
    loans: I64,
    due: I64,
    net: I64,
    operator_share: I64,
    covenant: NDArray[np.bool_],
    low_dscr: NDArray[np.bool_],
    threshold: I64,
    params: Params,
) -> tuple[I64, I64, I64, I64, I64, I64]:
    """EpochSettlement's loan, one settlement per period, for the nodes ``loans`` (rows of
    the (nodes, periods) inputs): (first default, first sweep, periods swept, cures,
    arrears, swept (periods, loans)), one entry per loan.

    Per period, as ``_serviceDebt`` then ``_advanceLoan`` then ``_defaultDue``: pay
    due + arrears from net (and the operator's share under a sweep); a flagged period
    sweeps from the next one on; ``cure_periods`` clean ones in a row end the sweep; the
    default stops the node (its arrears and counters freeze). Periods are rows of the
    transposed inputs (gathered and transposed in one copy), so each step reads contiguous
    memory; the loans that defaulted are dropped from them as they go.
    """
    n, h = len(loans), due.shape[1]
    inputs = [x.T[:, loans] for x in (due, net, operator_share, covenant, low_dscr)]
    first_default, first_sweep, sweep_periods, cures, arrears_out = (
        np.zeros(n, dtype=np.int64) for _ in range(5)
    )
    swept_t = np.zeros((h, n), dtype=np.int64)
    # The loans still running: columns of the inputs, positions in the outputs (``at``).
    # Once a quarter of them has defaulted they are dropped (their counters written out
    # first), so a world in which most loans default early costs less, not more.
    at = np.arange(n)
    limit = threshold
    arrears = np.zeros(n, dtype=np.int64)
    sweep = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    low_run, clean_run, entered_at, swept_n, cured_n = (
        np.zeros(n, dtype=np.int64) for _ in range(5)
    )
    first = 0  # the inputs' row 0 is period ``first`` (0-based)
    dead = 0

    def write_out() -> None:
        arrears_out[at] = arrears
        first_sweep[at] = entered_at
        sweep_periods[at] = swept_n
        cures[at] = cured_n

    for j in range(h):
        due_t, net_t, share_t, flag_t, low_t = (x[j - first] for x in inputs)
        owed = due_t + arrears
        paid = np.minimum(owed, net_t + share_t * sweep)
        arrears = np.where(alive, owed - paid, arrears)
        swept_t[j, at] = np.maximum(paid - net_t, 0) * alive
        swept_n += sweep & alive
        low_run = (low_run + 1) * low_t
        clean_run = (clean_run + 1) * ~flag_t
        cured = sweep & ~flag_t & (clean_run >= params.cure_periods)
        cured_n += cured & alive
        entered = alive & flag_t & ~sweep & (entered_at == 0)
        entered_at[entered] = j + 1
        sweep = (sweep | flag_t) & ~cured
        newly = alive & ((arrears > limit) | (low_run >= params.default_dscr_periods))
        if newly.any():
            first_default[at[newly]] = j + 1
            alive &= ~newly
            dead += int(newly.sum())
            if 4 * dead >= len(at) and j + 1 < h:
                write_out()
                keep = alive
                at, limit, arrears, sweep = at[keep], limit[keep], arrears[keep], sweep[keep]
                low_run, clean_run, entered_at = low_run[keep], clean_run[keep], entered_at[keep]
                swept_n, cured_n = swept_n[keep], cured_n[keep]
                alive = np.ones(len(at), dtype=bool)
                inputs = [x[j + 1 - first :, keep] for x in inputs]
                first, dead = j + 1, 0
    write_out()
    return first_default, first_sweep, sweep_periods, cures, arrears_out, swept_t


def _column_sums(x: I64) -> list[int]:
    """Per period, the sum over the nodes, exact (Python ints past int64)."""
    try:
        return [int(v) for v in V.exact_sum(x, axis=0, what="reserve paid in")]
    except V.EngineRangeError:
        return [sum(int(v) for v in c) for c in x.T]


def shared_reserve(first_default: I64, need: I64, inflow: list[int], initial: int) -> I64:
    """The reserve tier of each default (``PoolLoans._waterfall``): EpochSettlement keeps
    ONE insurance reserve behind every node, so defaults draw on the same pot. It starts
    at ``initial`` (reserveHeld and the nodes' ``insurance``) and takes ``inflow[j]``
    (the running nodes' reserve part of period j+1's gross); a period's defaults come
    after its settlements, in node order, and each takes min(``need``: what the bond and
    the stakers left of its claim, what the reserve holds). Greedy, so the total covered
    after the k-th default is C_k = min(C_{k-1} + need_k, A_k) (A_k: all paid in by its
    period), i.e. S_k + min(0, min_{i<=k} (A_i - S_i)) with S the running sum of need:
    one pass, exact (Python ints: the fleet's sums may pass int64)."""
    cover = np.zeros(len(first_default), dtype=np.int64)
    rows = np.flatnonzero(first_default > 0)
    if rows.size == 0:
        return cover
    order = rows[np.lexsort((rows, first_default[rows]))]
    paid_in = np.cumsum(np.array([initial, *inflow], dtype=object))
    a = paid_in[first_default[order]]  # paid in up to the end of each default's period
    s = np.cumsum(need[order].astype(object))
    lowest = np.minimum.accumulate(a - s)
    covered = s + np.minimum(lowest, 0)
    cover[order] = np.diff(covered, prepend=0).astype(np.int64)
    return cover


def _once(shared: dict[object, Any] | None, key: object, make: Callable[[], Any]) -> Any:
    """``make()``, or what it made before under ``key`` in ``shared`` (read-only arrays)."""
    if shared is None:
        return make()
    if key not in shared:
        made = make()
        for a in made if isinstance(made, tuple) else (made,):
            a.setflags(write=False)
        shared[key] = made
    return shared[key]


def project(
    fleet: Fleet, scenario: Scenario, params: Params, shared: dict[object, Any] | None = None
) -> Projection:
    """Project every node of ``fleet`` through ``scenario`` (deterministic, integer).

    ``shared``: one dict passed to every projection of the same fleet and params (as
    run_scenarios does): what does not depend on the world — collateral values for a given
    life, the debt schedule for a given tenor — is then computed once, not per scenario.
    """
    params.validate()
    h = params.horizon_months
    scenario.validate(h)
    col = lambda a: a[:, None]  # noqa: E731 - (nodes,) -> (nodes, 1) for broadcasting
    periods = np.arange(1, h + 1, dtype=np.int64)
    t = params.start_time + periods * params.period_seconds

    life = fleet.economic_life_months
    if scenario.economic_life_months is not None:
        life = np.full_like(life, scenario.economic_life_months)
    value = _once(
        shared,
        ("value", scenario.economic_life_months),
        lambda: collateral_values(fleet, life, t, params.curve),
    )
    w = params.window_periods

    def schedule() -> tuple[I64, ...]:
        drawn, tenor, since = loan_terms(fleet, scenario)
        epoch = col(since) + periods[None, :]
        principal, interest = V.debt_service_due(
            col(drawn), col(tenor), col(fleet.rate_bps), params.period_seconds, 0, epoch
        )
        due = principal + interest
        outstanding = V.debt_outstanding(col(drawn), col(tenor), 0, epoch)
        service_epochs = trailing_sum((due > 0).astype(np.int64), w)
        return drawn, due, outstanding, trailing_sum(due, w), service_epochs

    drawn, due, outstanding, window_due, service_epochs = _once(
        shared, ("debt", scenario.tenor_months), schedule
    )

    index = price_index_matrix(fleet, scenario, h)
    price = V.mul_div(col(fleet.price0), index, PPM, "price")
    energy_cost = V.mul_div(
        fleet.energy_wh_per_gpu_hour
        * _resolved(fleet.electricity_price_per_kwh, params.electricity_price_per_kwh),
        _resolved(fleet.pue_bps, params.pue_bps),
        1000 * BPS,
        "energy cost",
    )
    # Rented only while the operator's share of a GPU-hour pays for the energy it burns.
    rented = price * params.operator_bps >= col(energy_cost) * BPS
    mult = scenario.utilization.multipliers(h)
    utilization = np.where(
        rented, np.minimum(col(fleet.utilization0) * mult[None, :] // BPS, BPS), 0
    )
    milli = V.mul_div(
        col(fleet.gpu_count * params.period_seconds * 1000), utilization, 3600 * BPS, "GPU-hours"
    )
    gross = V.mul_div(price, milli, 1000, "gross revenue")
    fee = V.mul_div(gross, params.protocol_fee_bps, BPS, "fee")
    reserve_in = V.mul_div(gross, params.reserve_bps, BPS, "reserve")
    operator_share = V.mul_div(gross, params.operator_bps, BPS, "operator share")
    net = gross - fee - reserve_in - operator_share
    opex = V.mul_div(milli, col(energy_cost), 1000, "energy bill")

    dscr = V.dscr_bps(trailing_sum(net, w), window_due)
    if params.collateral == "marked":  # depends on the world's prices: never shared
        value = marked_values(fleet, value, life, t, index, utilization, params)
        ltv = V.ltv_bps(outstanding, value)
    else:
        ltv = _once(
            shared,
            ("ltv", scenario.economic_life_months, scenario.tenor_months),
            lambda: V.ltv_bps(outstanding, value),
        )
    covenant = V.covenant_breached(
        dscr, ltv, service_epochs, params.covenant_dscr_bps, params.max_ltv_bps
    )
    dscr_breach = (service_epochs > 0) & (dscr < params.covenant_dscr_bps)
    low_dscr = (service_epochs > 0) & (dscr < params.default_dscr_bps)

    # The loan, period by period (state carries), vectorised over the nodes with a loan.
    n = len(fleet)
    has_loan = drawn > 0
    loans = np.flatnonzero(has_loan)
    threshold = V.mul_div(drawn[loans], params.default_arrears_bps, BPS, "arrears threshold")
    book = _settle_loans(loans, due, net, operator_share, covenant, low_dscr, threshold, params)
    first_default, first_sweep, sweep_periods, cures, arrears = (
        np.zeros(n, dtype=np.int64) for _ in range(5)
    )
    swept = np.zeros((n, h), dtype=np.int64)
    first_default[loans], first_sweep[loans], sweep_periods[loans] = book[:3]
    cures[loans], arrears[loans] = book[3:5]
    swept.T[:, loans] = book[5]
    swept_total = V.exact_sum(swept, axis=1, what="swept")
    defaulted = first_default > 0
    at = np.maximum(first_default - 1, 0)[:, None]  # the default's period (column)
    rows = np.arange(n)
    claim = np.where(defaulted, outstanding[rows, at[:, 0]] + arrears, 0)
    value_at = np.where(defaulted, value[rows, at[:, 0]], 0)
    active = ~col(defaulted) | (periods[None, :] <= col(first_default))

    pledged = V.mul_div(fleet.bond, params.pledge_bps, BPS, "pledge")
    staked_value = V.mul_div(fleet.drawn, fleet.staked_bps, BPS, "staked value")
    bond_loss = np.where(defaulted, np.minimum(pledged, claim), 0)
    rest = claim - bond_loss
    stakers = np.minimum(rest, staked_value)
    from_reserve = shared_reserve(
        first_default,
        rest - stakers,
        _column_sums(reserve_in * active),
        params.reserve_held + int(fleet.insurance.sum(dtype=object)),
    )
    waterfall = {
        "operator_bond": bond_loss,
        "stakers": stakers,
        "insurance_reserve": from_reserve,
        "holders": rest - stakers - from_reserve,
    }
    recovery = np.where(defaulted, V.mul_div(value_at, params.recovery_bps, BPS, "recovery"), 0)
    # Without a loan the node's net is the operator's too (no stakers, no debt).
    kept = np.where(col(has_loan), operator_share - swept, operator_share + net)
    operator_margin = np.where(active, kept - opex, 0)

    first_dscr_breach = np.where(
        (dscr_breach & active & col(has_loan)).any(axis=1),
        (dscr_breach & active & col(has_loan)).argmax(axis=1) + 1,
        0,
    ).astype(np.int64)
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
        operator_margin=operator_margin,
        first_breach=first_sweep,
        first_dscr_breach=first_dscr_breach,
        first_default=first_default,
        sweep_periods=sweep_periods,
        cures=cures,
        swept=swept_total,
        arrears=arrears,
        claim=claim,
        recovery=recovery,
        waterfall=waterfall,
    )
