"""Projections as JSON-ready dicts (the API's body, the CLI's --json, the benchmark's file).

Ratios are bps ints; an infinite ratio (no debt service, or debt against no value) is
``None``. Month paths are lists whose index 0 is month 1; a node's paths end at its
default month. Amounts are stablecoin base units (6 decimals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.risk import vector as V
from backend.risk.engine import Projection, aggregate
from backend.risk.scenarios import Scenario


def _ratio(xs: Any) -> list[int | None]:
    return [None if v == V.INF else int(v) for v in np.asarray(xs)]


def _ints(xs: Any) -> list[int]:
    return [int(v) for v in np.asarray(xs)]


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


def _aggregate_json(p: Projection, mask: Any = None) -> dict[str, Any]:
    a = aggregate(p, mask)
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
    f = p.fleet
    rows = []
    for i in range(len(f)):
        end = int(p.first_default[i]) or p.params.horizon_months
        has_debt = bool(f.drawn[i] > 0)
        dscr, ltv = p.dscr[i, :end], p.ltv[i, :end]
        serviced = p.due[i, :end] > 0
        row: dict[str, Any] = {
            "node_id": int(f.node_id[i]),
            "class_name": str(f.class_name[i]),
            "operator": str(f.operator[i]),
            "has_pool": has_debt,
            "first_breach_month": int(p.first_breach[i]) or None,
            "first_default_month": int(p.first_default[i]) or None,
            "min_dscr_bps": int(dscr[serviced].min()) if serviced.any() else None,
            "max_ltv_bps": None if (m := int(ltv.max())) == V.INF else m,
            "bond_used": int(p.bond_used[i]),
            "reserve_used": int(p.reserve_used[i]),
            "claim_at_default": int(p.claim[i]),
            "recovery_at_default": int(p.recovery[i]),
            "waterfall": {k: int(v[i]) for k, v in p.waterfall.items()},
            "total_loss": int(p.total_loss[i]),
        }
        if include_paths:
            row["paths"] = {
                "dscr_bps": _ratio(dscr),
                "ltv_bps": _ratio(ltv),
                "value": _ints(p.value[i, :end]),
                "outstanding": _ints(p.outstanding[i, :end]),
                "net_revenue": _ints(p.net[i, :end]),
                "debt_service": _ints(p.due[i, :end]),
                "utilization_bps": _ints(p.utilization[i, :end]),
                "price_per_gpu_hour": _ints(p.price[i, :end]),
            }
        rows.append(row)
    return rows


def projection_json(p: Projection, include_nodes: bool = True, include_paths: bool = False) -> dict:
    """Platform and per-class aggregates, and (optionally) every node's outcome/paths."""
    classes = sorted({str(c) for c in p.fleet.class_name})
    out: dict[str, Any] = {
        "scenario": scenario_info(p.scenario),
        "platform": _aggregate_json(p),
        "by_class": {c: _aggregate_json(p, p.fleet.class_name == c) for c in classes},
    }
    if include_nodes:
        out["nodes"] = node_rows(p, include_paths)
    return out
