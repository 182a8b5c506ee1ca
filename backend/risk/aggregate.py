"""A projection summed over groups of nodes (the platform, each GPU class, a pool set).

Why its own module: the API returns the platform and every class for every scenario, so
the sums run once per projection for all groups together (nodes sorted by group, one
``reduceat`` per quantity), and the platform is the sum of its classes, rather than one
pass per group over a copied selection. DSCR and LTV are ratios of sums over the nodes
still running (not averages of ratios), so a large failing node weighs as much as its
debt. Every sum is exact or refused (int64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.risk import vector as V
from backend.risk.engine import Projection, trailing_sum

I64 = NDArray[np.int64]
_SAFE = float(2**62)
# Quantities that add up across groups: (n,) or (n, months) per node -> per group.
_PATHS = ("net_revenue", "debt_service", "outstanding", "value", "breaching", "operator_margin")
_COUNTS = ("nodes", "nodes_breaching", "nodes_breaching_dscr", "nodes_defaulting", "nodes_cured")


def _group_sums(x: NDArray[Any], order: I64, bounds: I64, what: str) -> I64:
    """Per group (rows ``order[bounds[k]:bounds[k + 1]]``), the sum of ``x``'s rows."""
    if x.size and max(abs(float(x.max())), abs(float(x.min()))) * x.shape[0] >= _SAFE:
        raise V.EngineRangeError(f"{what} exceeds the engine's exact range (int64)")
    out = np.zeros((len(bounds) - 1, *x.shape[1:]), dtype=np.int64)
    filled = np.flatnonzero(bounds[1:] > bounds[:-1])  # reduceat misreads empty segments
    if filled.size:
        out[filled] = np.add.reduceat(x[order], bounds[filled], axis=0, dtype=np.int64)
    return out


def _first(months: I64, order: I64, bounds: I64) -> I64:
    """Per group, the smallest non-zero month (0: none)."""
    never = np.iinfo(np.int64).max
    m = np.where(months > 0, months, never)[order]
    out = np.full(len(bounds) - 1, never, dtype=np.int64)
    filled = np.flatnonzero(bounds[1:] > bounds[:-1])
    if filled.size:
        out[filled] = np.minimum.reduceat(m, bounds[filled])
    return np.where(out == never, 0, out)


def _sums(p: Projection, group: I64, groups: int) -> dict[str, Any]:
    """Every additive quantity per group id 0..groups-1, plus the first months."""
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(groups + 1))
    act = p.active
    fd = p.first_default
    per_node: dict[str, NDArray[Any]] = {
        "net_revenue": np.where(act, p.net, 0),
        "debt_service": np.where(act, p.due, 0),
        "outstanding": np.where(act, p.outstanding, 0),
        "value": np.where(act, p.value, 0),
        "breaching": p.covenant & act,
        "operator_margin": p.operator_margin,
        "nodes": np.ones(len(fd), dtype=np.int64),
        "nodes_breaching": p.first_breach > 0,
        "nodes_breaching_dscr": p.first_dscr_breach > 0,
        "nodes_defaulting": fd > 0,
        "nodes_cured": p.cures > 0,
        **{f"loss:{k}": v for k, v in p.waterfall.items()},
    }
    sums = {k: _group_sums(v, order, bounds, k) for k, v in per_node.items()}
    defaults = np.zeros((groups, p.params.horizon_months), dtype=np.int64)
    hit = fd > 0
    np.add.at(defaults, (group[hit], fd[hit] - 1), 1)
    sums["defaults"] = defaults
    sums["first_breach"] = _first(p.first_breach, order, bounds)
    sums["first_default"] = _first(fd, order, bounds)
    return sums


def _total(sums: dict[str, Any]) -> dict[str, Any]:
    """The groups' sums as one group (they partition the nodes)."""
    out = {k: V.exact_sum(v, axis=0, what=k)[None] for k, v in sums.items()}
    for k in ("first_breach", "first_default"):
        hit = sums[k][sums[k] > 0]
        out[k] = np.array([hit.min() if hit.size else 0], dtype=np.int64)
    return out


def _finish(sums: dict[str, Any], window: int) -> list[dict[str, object]]:
    net, due = sums["net_revenue"], sums["debt_service"]
    dscr = V.dscr_bps(trailing_sum(net, window), trailing_sum(due, window))
    ltv = V.ltv_bps(sums["outstanding"], sums["value"])
    cumulative = np.cumsum(sums["defaults"], axis=1)
    tiers = [k for k in sums if k.startswith("loss:")]
    result = []
    for k in range(net.shape[0]):
        waterfall = {t.removeprefix("loss:"): int(sums[t][k]) for t in tiers}
        row: dict[str, object] = {key: sums[key][k] for key in _PATHS}
        row.update({key: int(sums[key][k]) for key in _COUNTS})
        row.update(
            {
                "dscr_bps": dscr[k],
                "ltv_bps": ltv[k],
                "defaults_cumulative": cumulative[k],
                "first_breach_month": int(sums["first_breach"][k]) or None,
                "first_default_month": int(sums["first_default"][k]) or None,
                "waterfall": waterfall,
                "total_loss": sum(waterfall.values()),
            }
        )
        result.append(row)
    return result


def aggregate(p: Projection, mask: NDArray[np.bool_] | None = None) -> dict[str, object]:
    """Paths and totals over the masked nodes (default: all): a pool set or the platform."""
    w = p.params.window_periods
    if mask is None:
        return _finish(_sums(p, np.zeros(len(p.fleet), dtype=np.int64), 1), w)[0]
    return _finish(_sums(p, mask.astype(np.int64), 2), w)[1]


def by_class(p: Projection) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """(platform, {class: aggregate}) in one pass over the nodes."""
    classes, group = np.unique(p.fleet.class_name, return_inverse=True)
    sums = _sums(p, group.astype(np.int64), len(classes))
    w = p.params.window_periods
    per_class = _finish(sums, w)
    platform = _finish(_total(sums), w)[0]
    return platform, {str(c): a for c, a in zip(classes, per_class, strict=True)}
