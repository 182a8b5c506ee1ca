"""Projections as JSON-ready dicts (the API's body, the CLI's --json, the benchmark's file).

Ratios are bps ints; an infinite ratio (no debt service, or debt against no value) is
``None``. Month paths are lists whose index 0 is month 1; a node's paths end at its
default month. Amounts are stablecoin base units (6 decimals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.risk import vector as V
from backend.risk.aggregate import by_class
from backend.risk.engine import Projection
from backend.risk.fleet import NO_MARK
from backend.risk.scenarios import Scenario


def _ratio(xs: Any) -> list[int | None]:
    return [None if v == V.INF else int(v) for v in np.asarray(xs)]


def _ints(xs: Any) -> list[int]:
    return np.asarray(xs).tolist()


def scenario_info(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name,
        "description": s.description,
        "annual_price_decline_bps": s.annual_price_decline_bps,
        "price_index_classes": sorted(s.price_index_ppm),
        "utilization": {
            "start_bps": s.utilization.start_bps,
            "end_bps": s.utilization.end_bps,
            "over_months": s.utilization.over_months,
        },
        "economic_life_months": s.economic_life_months,
        "tenor_months": s.tenor_months,
    }


def _aggregate_json(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in a.items():
        if k in ("dscr_bps", "ltv_bps"):
            out[k] = _ratio(v)
        elif isinstance(v, np.ndarray):
            out[k] = _ints(v)
        else:
            out[k] = v
    return out


def node_rows(p: Projection, include_paths: bool) -> list[dict[str, Any]]:
    """Each node's outcome (vectorised per field, then zipped: 10,000 nodes stay cheap)."""
    f = p.fleet
    h = p.params.horizon_months
    ends = np.where(p.first_default > 0, p.first_default, h)
    serviced = p.active & (p.due > 0)
    min_dscr = np.where(serviced, p.dscr, V.INF).min(axis=1)
    max_ltv = np.where(p.active, p.ltv, -1).max(axis=1)
    cols = {
        "node_id": f.node_id.tolist(),
        "class_name": f.class_name.tolist(),
        "operator": f.operator.tolist(),
        "has_pool": (f.drawn > 0).tolist(),
        "first_breach_month": p.first_breach.tolist(),
        "first_dscr_breach_month": p.first_dscr_breach.tolist(),
        "first_default_month": p.first_default.tolist(),
        "min_dscr_bps": np.where(serviced.any(axis=1), min_dscr, -1).tolist(),
        "max_ltv_bps": max_ltv.tolist(),
        "sweep_months": p.sweep_periods.tolist(),
        "cures": p.cures.tolist(),
        "swept": p.swept.tolist(),
        "arrears": p.arrears.tolist(),
        "claim_at_default": p.claim.tolist(),
        "recovery_at_default": p.recovery.tolist(),
        "total_loss": p.total_loss.tolist(),
    }
    # None for "never" / "no service" / "infinite", decided per column, not per row.
    for k in ("first_breach_month", "first_dscr_breach_month", "first_default_month"):
        cols[k] = [v or None for v in cols[k]]
    cols["min_dscr_bps"] = [None if v == -1 else v for v in cols["min_dscr_bps"]]
    inf = int(V.INF)
    cols["max_ltv_bps"] = [None if v == inf else v for v in cols["max_ltv_bps"]]
    w = p.waterfall
    marked = p.params.collateral == "marked"
    cols["mark_price_per_gpu_hour"] = [
        None if v == NO_MARK or not marked else v for v in f.mark_price0.tolist()
    ]
    cols["waterfall"] = [
        {"operator_bond": a, "stakers": b, "insurance_reserve": c, "holders": d}
        for a, b, c, d in zip(
            w["operator_bond"].tolist(),
            w["stakers"].tolist(),
            w["insurance_reserve"].tolist(),
            w["holders"].tolist(),
            strict=True,
        )
    ]
    # A dict literal per row: twice as fast as dict(zip(...)) over 10,000 nodes x 8 runs.
    rows = [
        {
            "node_id": v0,
            "class_name": v1,
            "operator": v2,
            "has_pool": v3,
            "first_breach_month": v4,
            "first_dscr_breach_month": v5,
            "first_default_month": v6,
            "min_dscr_bps": v7,
            "max_ltv_bps": v8,
            "sweep_months": v9,
            "cures": v10,
            "swept": v11,
            "arrears": v12,
            "claim_at_default": v13,
            "recovery_at_default": v14,
            "total_loss": v15,
            "waterfall": v16,
            "mark_price_per_gpu_hour": v17,
        }
        for v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16, v17 in zip(
            cols["node_id"],
            cols["class_name"],
            cols["operator"],
            cols["has_pool"],
            cols["first_breach_month"],
            cols["first_dscr_breach_month"],
            cols["first_default_month"],
            cols["min_dscr_bps"],
            cols["max_ltv_bps"],
            cols["sweep_months"],
            cols["cures"],
            cols["swept"],
            cols["arrears"],
            cols["claim_at_default"],
            cols["recovery_at_default"],
            cols["total_loss"],
            cols["waterfall"],
            cols["mark_price_per_gpu_hour"],
            strict=True,
        )
    ]
    if not include_paths:
        return rows
    for i, row in enumerate(rows):
        end = int(ends[i])
        row["paths"] = {
            "dscr_bps": _ratio(p.dscr[i, :end]),
            "ltv_bps": _ratio(p.ltv[i, :end]),
            "value": _ints(p.value[i, :end]),
            "outstanding": _ints(p.outstanding[i, :end]),
            "net_revenue": _ints(p.net[i, :end]),
            "debt_service": _ints(p.due[i, :end]),
            "utilization_bps": _ints(p.utilization[i, :end]),
            "price_per_gpu_hour": _ints(p.price[i, :end]),
            "operator_margin": _ints(p.operator_margin[i, :end]),
        }
    return rows


def projection_json(p: Projection, include_nodes: bool = True, include_paths: bool = False) -> dict:
    """Platform and per-class aggregates, and (optionally) every node's outcome/paths."""
    platform, classes = by_class(p)
    out: dict[str, Any] = {
        "scenario": scenario_info(p.scenario),
        "platform": _aggregate_json(platform),
        "by_class": {c: _aggregate_json(a) for c, a in classes.items()},
    }
    if include_nodes:
        out["nodes"] = node_rows(p, include_paths)
    return out
