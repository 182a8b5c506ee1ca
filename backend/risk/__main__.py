"""``python -m backend.risk``: stress scenarios on a JSON fleet or a seeded synthetic one.

    python -m backend.risk scenarios
    python -m backend.risk run --synthetic 2000 --seed 1 \\
        --decline H100-SXM-80GB=4000 --detail H100-SXM-80GB-4000bps

The last answers "which pools breach their DSCR covenant if H100 rental prices fall 40% a
year, and what do their stakers lose". A fleet file is JSON: a list of nodes or
``{"nodes": [...]}`` in the API's inline node shape (backend/risk/schemas.py NodeIn).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from backend.risk.engine import Params
from backend.risk.fleet import Fleet, synthetic_fleet
from backend.risk.report import scenario_info
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED, Scenario, class_decline
from backend.risk.schemas import NodeIn

cli = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
SYNTHETIC_START = 1_764_547_200  # 2025-12-01T00:00Z: a seeded fleet is reproducible anywhere


def _usd(units: int) -> str:
    return f"${units / 10**6:,.0f}"


def _x(bps: int | None) -> str:
    return "inf" if bps is None else f"{bps / 10_000:.2f}x"


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@cli.command()
def scenarios() -> None:
    """List the named scenarios and what each assumes."""
    table = Table(title="named stress scenarios")
    for col in ("name", "prices/yr", "utilization", "life", "tenor", "meaning"):
        table.add_column(col)
    for s in NAMED.values():
        i = scenario_info(s)
        u = i["utilization"]
        table.add_row(
            s.name,
            f"-{s.annual_price_decline_bps / 100:g}%",
            f"{u['start_bps'] / 100:g}%→{u['end_bps'] / 100:g}% over {u['over_months']}m",
            str(s.economic_life_months or "class"),
            str(s.tenor_months or "pool"),
            s.description,
        )
    console.print(table)


def _load_fleet(path: Path) -> Fleet:
    try:
        raw = json.loads(path.read_text())
        items = raw["nodes"] if isinstance(raw, dict) else raw
        nodes = TypeAdapter(list[NodeIn]).validate_python(items)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = exc.errors()[:3] if isinstance(exc, ValidationError) else exc
        raise _fail(f"{path}: not a fleet ({reason})") from None
    return Fleet.from_nodes([n.to_input() for n in nodes])


@cli.command()
def run(
    fleet_file: Annotated[Path | None, typer.Option("--fleet", help="JSON fleet file")] = None,
    synthetic: Annotated[int, typer.Option(help="seeded synthetic fleet size")] = 1_000,
    seed: int = 0,
    start_time: Annotated[
        int | None, typer.Option(help="unix s; default: 2025-12-01 synthetic, now for a file")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="named scenario (repeat); default all")
    ] = None,
    decline: Annotated[
        list[str] | None,
        typer.Option(help="CLASS=BPS: only CLASS's prices fall BPS a year (repeat)"),
    ] = None,
    detail: Annotated[
        str | None, typer.Option(help="scenario whose breaching pools to list")
    ] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="list only pools of this class")
    ] = None,
    pools: Annotated[int, typer.Option(help="rows in the pools table")] = 15,
    horizon: int = 60,
    covenant_dscr_bps: int = 12_500,
    max_ltv_bps: int = 8_000,
    recovery_bps: int = 6_000,
    curve: Annotated[
        str, typer.Option(help="collateral value: straight_line or declining_balance")
    ] = "straight_line",
    collateral: Annotated[
        str,
        typer.Option(
            help="book, or marked: the lower of book and the market-implied value for nodes "
            "with a mark_price_per_gpu_hour (backend/risk/marking.py)"
        ),
    ] = "book",
    json_out: Annotated[Path | None, typer.Option("--json", help="write results here")] = None,
) -> None:
    """Project the fleet through the scenarios; print a summary and the breaching pools."""
    try:
        if fleet_file is not None:
            fleet = _load_fleet(fleet_file)
            start = start_time if start_time is not None else int(time.time()) // 3600 * 3600
        else:
            start = start_time if start_time is not None else SYNTHETIC_START
            fleet = synthetic_fleet(synthetic, seed, start)
        chosen: list[Scenario] = []
        for name in scenario or ([] if decline else list(NAMED)):
            if name not in NAMED:
                raise _fail(f"unknown scenario {name!r}; named: {', '.join(NAMED)}")
            chosen.append(NAMED[name])
        for d in decline or []:
            cls, _, bps = d.partition("=")
            if not bps.isdigit():
                raise _fail(f"--decline {d!r}: expected CLASS=BPS, e.g. H100-SXM-80GB=4000")
            chosen.append(class_decline(cls, int(bps), horizon))
        params = Params(
            start_time=start,
            horizon_months=horizon,
            covenant_dscr_bps=covenant_dscr_bps,
            max_ltv_bps=max_ltv_bps,
            recovery_bps=recovery_bps,
            curve=curve,
            collateral=collateral,
        )
        t0 = time.perf_counter()
        results = run_scenarios(fleet, chosen, params)
        elapsed = time.perf_counter() - t0
    except ValueError as exc:
        raise _fail(str(exc)) from None

    console.print(
        f"{len(fleet)} nodes ({int((fleet.drawn > 0).sum())} with a pool), start {start}, "
        f"{horizon} months, {len(chosen)} scenarios in {elapsed:.2f}s"
    )
    summary = Table(title="scenarios (platform)")
    for col in (
        "scenario",
        "pools swept",
        "of which DSCR",
        "first sweep",
        "cured",
        "defaults",
        "first default",
        "bond seized",
        "stakers lose",
        "reserve pays",
        "holders lose",
    ):
        summary.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        a = r["platform"]
        w = a["waterfall"]
        summary.add_row(
            r["scenario"]["name"],
            str(a["nodes_breaching"]),
            str(a["nodes_breaching_dscr"]),
            str(a["first_breach_month"] or "-"),
            str(a["nodes_cured"]),
            str(a["nodes_defaulting"]),
            str(a["first_default_month"] or "-"),
            _usd(w["operator_bond"]),
            _usd(w["stakers"]),
            _usd(w["insurance_reserve"]),
            _usd(w["holders"]),
        )
    console.print(summary)

    target = detail or (chosen[-1].name if decline else None)
    if target is not None:
        by_name = {r["scenario"]["name"]: r for r in results}
        if target not in by_name:
            raise _fail(f"--detail {target!r} is not among the scenarios run")
        _pools_table(by_name[target], class_name, pools)
    if json_out is not None:
        json_out.write_text(json.dumps({"start_time": start, "results": results}))
        console.print(f"results written to {json_out}")


def _pools_table(result: dict[str, Any], class_name: str | None, limit: int) -> None:
    rows = [
        n
        for n in result["nodes"]
        if n["has_pool"]
        and n["first_dscr_breach_month"]
        and (class_name is None or n["class_name"] == class_name)
    ]
    rows.sort(key=lambda n: (-n["waterfall"]["stakers"], n["first_dscr_breach_month"]))
    lost = sum(n["waterfall"]["stakers"] for n in rows)
    table = Table(
        title=f"{result['scenario']['name']}: {len(rows)} pools breach the DSCR covenant"
        f"{' (' + class_name + ')' if class_name else ''}; stakers lose {_usd(lost)} in all"
    )
    for col in (
        "pool (node)",
        "class",
        "DSCR breach",
        "min DSCR",
        "max LTV",
        "default",
        "stakers lose",
        "holders lose",
    ):
        table.add_column(col, justify="right")
    for n in rows[:limit]:
        ltv = n["max_ltv_bps"]
        table.add_row(
            str(n["node_id"]),
            n["class_name"],
            f"month {n['first_dscr_breach_month']}",
            _x(n["min_dscr_bps"]),
            "inf" if ltv is None else f"{ltv / 100:.0f}%",
            f"month {n['first_default_month']}" if n["first_default_month"] else "-",
            _usd(n["waterfall"]["stakers"]),
            _usd(n["waterfall"]["holders"]),
        )
    console.print(table)


if __name__ == "__main__":
    cli()
