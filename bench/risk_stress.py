"""How long the stress engine takes for N nodes x H months x every named scenario.

    .venv/bin/python -m bench.risk_stress [--nodes 1000,10000] [--months 60] [--repeat 3]

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

import numpy as np

from backend.risk.engine import Params, project
from backend.risk.fleet import synthetic_fleet
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED

START = 1_764_547_200
OUT = Path(__file__).with_name("risk_stress.json")


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(nodes: int, months: int, repeat: int) -> dict[str, float | int]:
    scenarios = list(NAMED.values())
    params = Params(start_time=START, horizon_months=months)
    t0 = time.perf_counter()
    fleet = synthetic_fleet(nodes, seed=0, start_time=START)
    fleet_s = time.perf_counter() - t0

    def engine_only() -> None:
        for s in scenarios:  # one projection alive at a time, as run_scenarios holds them
            project(fleet, s, params)

    engine_s = _best(engine_only, repeat)
    full_s = _best(lambda: run_scenarios(fleet, scenarios, params), repeat)
    return {
        "nodes": nodes,
        "months": months,
        "scenarios": len(scenarios),
        "cells": nodes * months * len(scenarios),
        "fleet_s": round(fleet_s, 4),
        "engine_s": round(engine_s, 4),
        "engine_with_summaries_s": round(full_s, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1000,10000")
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = [run(int(n), args.months, args.repeat) for n in args.nodes.split(",")]
    print(f"{'nodes':>7} {'months':>6} {'scen':>4} {'fleet s':>8} {'engine s':>9} {'+json s':>8}")
    for r in rows:
        print(
            f"{r['nodes']:>7} {r['months']:>6} {r['scenarios']:>4} {r['fleet_s']:>8.3f} "
            f"{r['engine_s']:>9.3f} {r['engine_with_summaries_s']:>8.3f}"
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
