"""How long the stress engine takes for N nodes x H months x every named scenario.

    .venv/bin/python -m bench.risk_stress [--nodes 1000,10000] [--months 60] [--repeat 3]
    .venv/bin/python -m bench.risk_stress --compare 10000   # the README's comparison

``--compare N``: the fleet-level outcome per named scenario on the seeded N-node fleet
(pools swept, cured, defaulted, first default, loss per class) into
bench/risk_scenarios.json and the README's chart bench/risk_scenarios.svg (drawn here
by hand: the project has no plotting library).

``make bench`` (bench/__main__.py) runs it too, at 10,000 nodes, into bench/results.json.

Per fleet size: building the seeded synthetic fleet (validation included), projecting it
through every named scenario (the integer engine alone), and the same plus the JSON
summaries the API returns (aggregates per platform and class, every node's outcome).
Best of ``--repeat`` runs. A benchmark, not a test: it asserts nothing about time; it
prints what this machine does and writes bench/risk_stress.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.risk.aggregate import aggregate
from backend.risk.engine import Params, project
from backend.risk.fleet import synthetic_fleet
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED

START = 1_764_547_200
OUT = Path(__file__).with_name("risk_stress.json")
COMPARE_JSON = Path(__file__).with_name("risk_scenarios.json")
COMPARE_SVG = Path(__file__).with_name("risk_scenarios.svg")
TIERS = (
    ("operator_bond", "pledged bond", "#4c72b0"),
    ("stakers", "stakers", "#dd8452"),
    ("insurance_reserve", "insurance reserve", "#55a868"),
    ("holders", "unstaked holders", "#c44e52"),
)


def _best(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best (wall, CPU) seconds of ``repeat`` runs. CPU time says what the work costs when
    the machine is shared (other processes stretch the wall time, not the CPU time)."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def run(nodes: int, months: int, repeat: int) -> dict[str, float | int]:
    scenarios = list(NAMED.values())
    params = Params(start_time=START, horizon_months=months)
    t0 = time.perf_counter()
    fleet = synthetic_fleet(nodes, seed=0, start_time=START)
    fleet_s = time.perf_counter() - t0

    def engine_only() -> None:
        shared: dict[object, Any] = {}  # as run_scenarios shares what no scenario changes
        for s in scenarios:  # one projection alive at a time, as run_scenarios holds them
            project(fleet, s, params, shared)

    engine_s, engine_cpu_s = _best(engine_only, repeat)
    full_s, full_cpu_s = _best(lambda: run_scenarios(fleet, scenarios, params), repeat)
    return {
        "nodes": nodes,
        "months": months,
        "scenarios": len(scenarios),
        "cells": nodes * months * len(scenarios),
        "fleet_s": round(fleet_s, 4),
        "engine_s": round(engine_s, 4),
        "engine_with_summaries_s": round(full_s, 4),
        "engine_cpu_s": round(engine_cpu_s, 4),
        "engine_with_summaries_cpu_s": round(full_cpu_s, 4),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def compare(nodes: int, months: int) -> dict[str, Any]:
    """Every named scenario over the seeded fleet: the platform's outcome, per scenario."""
    fleet = synthetic_fleet(nodes, seed=0, start_time=START)
    params = Params(start_time=START, horizon_months=months)
    rows = []
    for s in NAMED.values():
        a = aggregate(project(fleet, s, params))
        rows.append(
            {
                "scenario": s.name,
                "pools_swept": a["nodes_breaching"],
                "pools_cured": a["nodes_cured"],
                "defaults": a["nodes_defaulting"],
                "first_default_month": a["first_default_month"],
                "losses": a["waterfall"],
                "total_loss": a["total_loss"],
            }
        )
    return {
        "fleet": {"nodes": nodes, "seed": 0, "start_time": START, "months": months},
        "pools": int((fleet.drawn > 0).sum()),
        "drawn": int(fleet.drawn.sum()),
        "scenarios": rows,
    }


def svg(result: dict[str, Any]) -> str:
    """Stacked bars: each scenario's loss by class (USD millions), defaults on top."""
    rows = result["scenarios"]
    width, height, left, top, bottom = 760, 390, 70, 40, 115
    plot_h = height - top - bottom
    peak = max(r["total_loss"] for r in rows) / 1e12 or 1.0
    step = 10 ** max(0, len(str(int(peak))) - 1)
    scale_max = (int(peak // step) + 1) * step
    bar_w, gap = 60, (width - left - 20 - 60 * len(rows)) / len(rows)
    y = lambda musd: top + plot_h - plot_h * musd / scale_max  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">Losses by class at default, USD millions; '
        f"defaults above each bar ({result['pools']:,} pools of "
        f"{result['fleet']['nodes']:,} nodes, {result['fleet']['months']} months)</text>",
    ]
    for k in range(0, 5):
        v = scale_max * k / 4
        out.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
        )
    for i, r in enumerate(rows):
        x = left + gap / 2 + i * (bar_w + gap)
        base = 0.0
        for key, _, color in TIERS:
            musd = r["losses"][key] / 1e12
            out.append(
                f'<rect x="{x:.1f}" y="{y(base + musd):.1f}" width="{bar_w}" '
                f'height="{y(base) - y(base + musd):.1f}" fill="{color}"/>'
            )
            base += musd
        out.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y(base) - 5:.1f}" text-anchor="middle">'
            f"{r['defaults']:,}</text>"
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
            f'transform="rotate(25 {x + bar_w / 2:.1f} {top + plot_h + 14})">'
            f"{r['scenario']}</text>"
        )
    for j, (_, label, color) in enumerate(TIERS):
        lx = left + j * 160
        out.append(
            f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{color}"/>'
            f'<text x="{lx + 16}" y="{height - 12}">{label}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1000,10000")
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", type=int, default=0, help="fleet size for the comparison")
    args = ap.parse_args()
    if args.compare:
        result = compare(args.compare, args.months)
        COMPARE_JSON.write_text(json.dumps(result, indent=2) + "\n")
        COMPARE_SVG.write_text(svg(result))
        for r in result["scenarios"]:
            w = r["losses"]
            print(
                f"{r['scenario']:<22} swept {r['pools_swept']:>5} cured {r['pools_cured']:>5} "
                f"defaults {r['defaults']:>5} first {r['first_default_month']} | "
                + " ".join(f"{k} {w[k] / 1e12:.2f}M" for k, _, _ in TIERS)
            )
        print(f"written {COMPARE_JSON} and {COMPARE_SVG}")
        return
    rows = [run(int(n), args.months, args.repeat) for n in args.nodes.split(",")]
    print(
        f"{'nodes':>7} {'months':>6} {'scen':>4} {'fleet s':>8} {'engine s':>9} {'+json s':>8}"
        f" {'+json cpu s':>12} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>7} {r['months']:>6} {r['scenarios']:>4} {r['fleet_s']:>8.3f} "
            f"{r['engine_s']:>9.3f} {r['engine_with_summaries_s']:>8.3f} "
            f"{r['engine_with_summaries_cpu_s']:>12.3f} {r['load_avg_1m']:>5}"
        )
    OUT.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "cpus": os.cpu_count(),
                },
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
