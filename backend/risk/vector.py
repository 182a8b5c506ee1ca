"""The formulas of ``backend.risk.formulas`` over numpy int64 arrays, exact or refusing.

Why not floats: a covenant flips at one bps, and the on-chain RiskModel floors every
division; floats would disagree with it at exactly the boundaries people care about.
Why not Python ints everywhere: 10,000 nodes x 60 months x every scenario must run in
seconds. So products go through :func:`mul_div`, which splits ``a*b//c`` into
``(a//c)*b + (a%c)*b//c`` (exact) and recomputes the rare elements whose terms would not
fit in int64 with Python ints. A *result* that does not fit in int64 raises
:class:`EngineRangeError` instead of wrapping.

``INF`` (int64 max) stands for the on-chain ``type(uint256).max`` ("infinite" LTV/DSCR).
A finite LTV/DSCR beyond int64 (a ratio above 9.2e14x: debt of $1bn against one unit of
value) saturates at ``INF - 1``; every other quantity is exact or refused.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from backend.risk.formulas import BPS, MONTH_SECONDS, YEAR_SECONDS

I64 = NDArray[np.int64]
INF = np.int64(np.iinfo(np.int64).max)
# Products below this are exact in int64 (with margin for float64's rounding in the check).
_SAFE = float(2**62)


class EngineRangeError(ValueError):
    """An input is outside the range the engine computes exactly (the message says which)."""


def _i64(x: object) -> I64:
    return np.asarray(x, dtype=np.int64)


def _shaped(x: I64, shape: tuple[int, ...]) -> I64:
    """``x`` as a writable array of ``shape`` (a copy only if it must be broadcast)."""
    return x if x.shape == shape else np.broadcast_to(x, shape).copy()


def mul_div(a: object, b: object, c: object, what: str = "value", saturate: bool = False) -> I64:
    """Exact ``floor(a * b / c)`` for non-negative int64 arrays (broadcast), ``c > 0``.

    ``saturate``: a result beyond int64 becomes ``INF - 1`` instead of raising (ratios only:
    an LTV or DSCR above 9.2e14x is reported as that, every covenant reads it the same).
    """
    a0, b0, c0 = _i64(a), _i64(b), _i64(c)
    shape = np.broadcast_shapes(a0.shape, b0.shape, c0.shape)
    if 0 in shape:
        return np.zeros(shape, dtype=np.int64)
    b_max = float(b0.max())
    if float(a0.max()) * b_max < _SAFE:  # the common case: the product fits
        return _shaped((a0 * b0) // c0, shape)
    # Split on a's own shape (often one value per node, not per node-month): cheap.
    q, r = np.divmod(a0, c0)
    with np.errstate(over="ignore"):
        out = _shaped(q * b0 + (r * b0) // c0, shape)
    if float(q.max()) * b_max < _SAFE and float(r.max()) * b_max < _SAFE:
        return out  # no term overflowed anywhere
    a_, b_, c_ = np.broadcast_arrays(a0, b0, c0)
    qb, rb = np.broadcast_to(q, shape), np.broadcast_to(r, shape)
    bf = b_.astype(np.float64)
    big = (qb.astype(np.float64) * bf >= _SAFE) | (rb.astype(np.float64) * bf >= _SAFE)
    if big.any():
        exact = (a_[big].astype(object) * b_[big].astype(object)) // c_[big].astype(object)
        if saturate:
            exact = [min(v, int(INF) - 1) for v in exact]
        elif any(v >= int(INF) for v in exact):
            raise EngineRangeError(f"{what} exceeds the engine's exact range (int64)")
        out[big] = np.array(exact, dtype=np.int64)
    return out


def exact_sum(x: I64, axis: int, what: str = "sum") -> I64:
    """Sum that refuses to wrap (the float sum bounds the int sum from above)."""
    if x.size == 0:
        return x.sum(axis=axis, dtype=np.int64)
    bound = max(abs(float(x.max())), abs(float(x.min()))) * x.shape[axis]
    if bound >= _SAFE and np.abs(x.astype(np.float64)).sum(axis=axis).max() >= _SAFE:
        raise EngineRangeError(f"{what} exceeds the engine's exact range (int64)")
    return x.sum(axis=axis, dtype=np.int64)


def depreciated_value(
    acquisition_cost: object,
    residual_value_bps: object,
    economic_life_months: object,
    acquired_at: object,
    t: object,
) -> I64:
    cost = _i64(acquisition_cost)
    life = _i64(economic_life_months) * MONTH_SECONDS
    residual = mul_div(cost, residual_value_bps, BPS, "residual value")
    age = np.maximum(_i64(t) - _i64(acquired_at), 0)
    return cost - mul_div(cost - residual, np.minimum(age, life), life, "depreciation")


def ltv_bps(outstanding_debt: object, value: object) -> I64:
    debt, val = np.broadcast_arrays(_i64(outstanding_debt), _i64(value))
    out = mul_div(debt, BPS, np.maximum(val, 1), "LTV", saturate=True)
    out = np.where(val == 0, INF, out)
    return np.where(debt == 0, 0, out).astype(np.int64)


def dscr_bps(net_revenue: object, debt_service: object) -> I64:
    rev, svc = np.broadcast_arrays(_i64(net_revenue), _i64(debt_service))
    out = mul_div(rev, BPS, np.maximum(svc, 1), "DSCR", saturate=True)
    return np.where(svc == 0, INF, out).astype(np.int64)


def covenant_breached(
    dscr: object, ltv: object, service_epochs: object, covenant_dscr_bps: object, max_ltv: object
) -> NDArray[np.bool_]:
    return ((_i64(service_epochs) > 0) & (_i64(dscr) < _i64(covenant_dscr_bps))) | (
        _i64(ltv) > _i64(max_ltv)
    )


def raise_cap(value_at_raise: object, max_ltv_bps: object) -> I64:
    return mul_div(max_ltv_bps, value_at_raise, BPS, "raise cap")


def debt_service_due(
    drawn_assets: object,
    tenor_epochs: object,
    rate_bps: object,
    epoch_length_seconds: object,
    draw_epoch: object,
    epoch: object,
) -> tuple[I64, I64]:
    drawn, tenor, d0 = _i64(drawn_assets), _i64(tenor_epochs), _i64(draw_epoch)
    e = _i64(epoch)
    # Reduce rate*length / (BPS*YEAR) first: floor(a*p/q) == floor(a*(p/g)/(q/g)) exactly.
    # On the unbroadcast terms (one per node, not per node-epoch): gcd is not cheap.
    p = _i64(rate_bps) * _i64(epoch_length_seconds)
    q = np.int64(BPS * YEAR_SECONDS)
    g = np.maximum(np.gcd(p, q), 1)
    active = (drawn > 0) & (e > d0) & (e <= d0 + tenor)
    n = np.where(active, e - d0, 1)
    per_epoch = drawn // tenor
    before = drawn - per_epoch * (n - 1)
    principal = np.where(n == tenor, before, per_epoch)
    interest = mul_div(before, p // g, q // g, "interest")
    return np.where(active, principal, 0), np.where(active, interest, 0)


def debt_outstanding(
    drawn_assets: object, tenor_epochs: object, draw_epoch: object, epoch: object
) -> I64:
    drawn, tenor, d0, e = np.broadcast_arrays(
        _i64(drawn_assets), _i64(tenor_epochs), _i64(draw_epoch), _i64(epoch)
    )
    n = e - d0
    out = drawn - (drawn // tenor) * np.maximum(n, 0)
    out = np.where(n >= tenor, 0, out)
    return np.where(n <= 0, drawn, out).astype(np.int64)


def declining_balance_value(
    acquisition_cost: I64,
    residual_value_bps: I64,
    economic_life_months: I64,
    acquired_at: I64,
    t: I64,
) -> I64:
    """RiskModel.decliningBalanceValue for nodes (1-d) x times (1-d, non-decreasing).

    The chain steps v ← v x (L - 2) // L once per whole month of age; floors compound, so
    there is no closed form. Each node's value is stepped forward as the times advance: as
    many numpy steps as the oldest node's age in months (<= its life), then about one per
    time. Values stay below cost x L (<= 1e15 x 1200), inside int64.
    """
    cost, life = _i64(acquisition_cost), _i64(economic_life_months)
    residual = mul_div(cost, residual_value_bps, BPS, "residual value")
    keep = np.maximum(life - 2, 0)
    life_s = life * MONTH_SECONDS
    acq = _i64(acquired_at)
    v = cost.copy()
    stepped = np.zeros_like(cost)  # months of age v has been stepped through
    out = np.empty((cost.shape[0], len(t)), dtype=np.int64)
    for j, tj in enumerate(_i64(t)):
        age = np.maximum(tj - acq, 0)
        target = np.minimum(age // MONTH_SECONDS, life)
        while True:
            step = (stepped < target) & (v > residual)
            if not step.any():
                break
            v = np.where(step, v * keep // np.maximum(life, 1), v)
            stepped += step
        stepped = np.maximum(stepped, target)  # nodes already at the residual stop stepping
        out[:, j] = np.where((life == 0) | (age >= life_s), residual, np.maximum(v, residual))
    return out
