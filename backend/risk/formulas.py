"""Scalar reference formulas, in Python ints, exactly as the on-chain RiskModel and RevenuePool.

Why a scalar copy beside the numpy engine: the on-chain contracts are the source of truth
for every number a covenant or a raise cap acts on, and numpy's fixed-width integers can
silently wrap. These functions use unbounded Python ints and the same floor divisions as
Solidity, so (1) a test can hold them against the deployed RiskModel/RevenuePool, and (2)
the vectorised engine (``backend.risk.vector``) is tested against them on random and
boundary inputs. Whoever changes a formula here changes it on-chain too (and vice versa).

Conventions (the shared formula sheet): amounts in stablecoin base units (6 decimals),
ratios in bps (10_000 = 100%), a month is 30 days, all divisions floor.
"""

from __future__ import annotations

BPS = 10_000
MONTH_SECONDS = 2_592_000  # 30 days: the formula sheet's month
YEAR_SECONDS = 365 * 86_400  # RevenuePool's YEAR_SECONDS (interest accrual)
UINT256_MAX = 2**256 - 1
# "Infinite" LTV (no collateral value left) and DSCR (no debt service to cover): the
# on-chain RiskModel returns type(uint256).max; the scalar reference returns the same.
INFINITE = UINT256_MAX


def economic_life_seconds(economic_life_months: int) -> int:
    return economic_life_months * MONTH_SECONDS


def residual_value(acquisition_cost: int, residual_value_bps: int) -> int:
    return acquisition_cost * residual_value_bps // BPS


def depreciated_value(
    acquisition_cost: int,
    residual_value_bps: int,
    economic_life_months: int,
    acquired_at: int,
    t: int,
) -> int:
    """Straight-line value at time ``t``: cost minus the floored depreciation term.

    The subtraction term floors, so the value rounds up and never drops below the residual.
    A zero life would divide by zero on-chain too (NodeRegistry rejects such a class).
    """
    life = economic_life_seconds(economic_life_months)
    residual = residual_value(acquisition_cost, residual_value_bps)
    age = max(0, t - acquired_at)
    return acquisition_cost - (acquisition_cost - residual) * min(age, life) // life


def ltv_bps(outstanding_debt: int, value: int) -> int:
    """Loan-to-value in bps; no debt is 0 even at value 0, no value with debt is INFINITE."""
    if outstanding_debt == 0:
        return 0
    if value == 0:
        return INFINITE
    return outstanding_debt * BPS // value


def dscr_bps(net_revenue: int, debt_service: int) -> int:
    """Debt-service coverage in bps over a window; no service due is INFINITE."""
    if debt_service == 0:
        return INFINITE
    return net_revenue * BPS // debt_service


def covenant_breached(
    dscr: int,
    ltv: int,
    service_epochs: int,
    covenant_dscr_bps: int,
    max_ltv_bps: int,
) -> bool:
    """Flagged: DSCR under the covenant with at least one epoch of service, or LTV over max."""
    return (service_epochs > 0 and dscr < covenant_dscr_bps) or ltv > max_ltv_bps


def raise_cap(value_at_raise: int, max_ltv_bps: int) -> int:
    """The most a pool may raise against a node worth ``value_at_raise``."""
    return max_ltv_bps * value_at_raise // BPS


def debt_service_due(
    drawn_assets: int,
    tenor_epochs: int,
    rate_bps: int,
    epoch_length_seconds: int,
    draw_epoch: int,
    epoch: int,
) -> tuple[int, int]:
    """(principal, interest) due in ``epoch``: RevenuePool.debtServiceDue, line for line.

    Equal instalments ``drawn // tenor`` from the epoch after the draw; the last one takes
    the rest. Interest is ``mulDiv(outstandingBefore, rate x epochLength, BPS x YEAR)``.
    ``drawn_assets == 0`` stands for "not drawn" (the pool returns zeros then as well).
    """
    if drawn_assets == 0 or epoch <= draw_epoch or epoch > draw_epoch + tenor_epochs:
        return (0, 0)
    n = epoch - draw_epoch
    per_epoch = drawn_assets // tenor_epochs
    outstanding_before = drawn_assets - per_epoch * (n - 1)
    principal = outstanding_before if n == tenor_epochs else per_epoch
    interest = outstanding_before * (rate_bps * epoch_length_seconds) // (BPS * YEAR_SECONDS)
    return (principal, interest)


def debt_outstanding(drawn_assets: int, tenor_epochs: int, draw_epoch: int, epoch: int) -> int:
    """Principal still owed after ``epoch``'s instalment: RevenuePool.debtOutstanding."""
    if drawn_assets == 0:
        return 0
    if epoch <= draw_epoch:
        return drawn_assets
    n = epoch - draw_epoch
    if n >= tenor_epochs:
        return 0
    return drawn_assets - (drawn_assets // tenor_epochs) * n


def declining_balance_value(
    acquisition_cost: int,
    residual_value_bps: int,
    economic_life_months: int,
    acquired_at: int,
    t: int,
) -> int:
    """RiskModel.decliningBalanceValue, line for line: per whole month of age v ← v x (L - 2)
    // L from the cost, never below the residual; the residual from age >= life on."""
    residual = residual_value(acquisition_cost, residual_value_bps)
    age = max(0, t - acquired_at)
    if economic_life_months == 0 or age >= economic_life_months * MONTH_SECONDS:
        return residual
    keep = max(economic_life_months - 2, 0)
    v = acquisition_cost
    for _ in range(age // MONTH_SECONDS):
        if v <= residual:
            break
        v = v * keep // economic_life_months
    return max(v, residual)


def collateral_value(curve: str, *args: int) -> int:
    """The value on ``curve`` ("straight_line" or "declining_balance"): RiskModel.value."""
    if curve == "declining_balance":
        return declining_balance_value(*args)
    return depreciated_value(*args)


def milli_gpu_hours(gpu_count: int, period_seconds: int, utilization_bps: int) -> int:
    """GPU-hours a node delivers in a period at a utilization, in the leaf's milli units."""
    return gpu_count * period_seconds * 1000 * utilization_bps // (3600 * BPS)


def energy_cost_per_gpu_hour(energy_wh: int, price_per_kwh: int, pue_bps: int) -> int:
    """Operating cost of one delivered GPU-hour: energy (Wh at the GPU) x PUE x price."""
    return energy_wh * price_per_kwh * pue_bps // (1000 * BPS)
