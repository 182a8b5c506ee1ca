"""``python -m backend.risk`` as a person runs it (a subprocess, its real output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backend.risk.engine import Params
from backend.risk.fleet import Fleet, synthetic_fleet
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED, class_decline
from backend.risk.schemas import NodeIn
from tests.backend.backend_helpers import ROOT

START = 1_764_547_200


def risk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.risk", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unknown_class_in_decline_names_the_known_classes() -> None:
    out = risk("run", "--synthetic", "20", "--decline", "H1OO-SXM-80GB=4000")
    assert out.returncode != 0
    assert "unknown GPU class 'H1OO-SXM-80GB'" in out.stdout + out.stderr
    assert "known classes: A100-SXM-80GB, H100-SXM-80GB, L40S-48GB, RTX-4090-24GB" in (
        out.stdout + out.stderr
    )


def test_lists_named_scenarios() -> None:
    out = risk("scenarios")
    assert out.returncode == 0, out.stderr
    for name in ("base", "deflation_40", "life_18", "slow_productivity", "refuted_productivity"):
        assert name in out.stdout


def test_h100_decline_answers_which_pools_breach_and_what_stakers_lose(tmp_path: Path) -> None:
    out_file = tmp_path / "run.json"
    out = risk(
        "run",
        "--synthetic",
        "300",
        "--seed",
        "4",
        "--decline",
        "H100-SXM-80GB=4000",
        "--class",
        "H100-SXM-80GB",
        "--json",
        str(out_file),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    written = json.loads(out_file.read_text())
    # the same seed and start give the same numbers in this process: deterministic
    fleet = synthetic_fleet(300, 4, START)
    expected = run_scenarios(fleet, [class_decline("H100-SXM-80GB", 4000, 60)], Params(START))
    assert written == {"start_time": START, "results": expected}
    nodes = expected[0]["nodes"]
    breaching = [
        n
        for n in nodes
        if n["has_pool"] and n["first_dscr_breach_month"] and n["class_name"] == "H100-SXM-80GB"
    ]
    assert breaching, "a 40%/yr H100 price fall breaches some H100 pools"
    lost = sum(n["waterfall"]["stakers"] for n in breaching)
    assert f"{len(breaching)} pools breach the DSCR covenant (H100-SXM-80GB)" in out.stdout
    assert f"stakers lose ${lost / 10**6:,.0f} in all" in out.stdout
    assert str(breaching[0]["node_id"]) in out.stdout or len(breaching) > 15


def test_fleet_file_and_bad_input(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    node = {
        "node_id": 9,
        "class_name": "L40S-48GB",
        "gpu_count": 4,
        "acquisition_cost": "36000",  # USD
        "acquired_at": START,
        "debt": {"drawn_assets": "30000", "tenor_months": 24, "rate_bps": 1_500},
    }
    fleet.write_text(json.dumps({"nodes": [node]}))
    out = risk("run", "--fleet", str(fleet), "--start-time", str(START), "--scenario", "life_18")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 nodes (1 with a pool)" in out.stdout and "life_18" in out.stdout

    # Collateral marked to a market of 0.80 USD a GPU-hour: the run the engine makes.
    fleet.write_text(json.dumps({"nodes": [dict(node, mark_price_per_gpu_hour="0.80")]}))
    out_file = tmp_path / "marked.json"
    args = ("--start-time", str(START), "--scenario", "base", "--json", str(out_file))
    out = risk("run", "--fleet", str(fleet), "--collateral", "marked", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    (marked,) = json.loads(out_file.read_text())["results"][0]["nodes"]
    assert marked["mark_price_per_gpu_hour"] == 800_000
    inputs = [NodeIn.model_validate(dict(node, mark_price_per_gpu_hour="0.80")).to_input()]
    expected = run_scenarios(
        Fleet.from_nodes(inputs), [NAMED["base"]], Params(START, collateral="marked")
    )
    assert json.loads(out_file.read_text())["results"] == expected
    bad = risk("run", "--fleet", str(fleet), "--collateral", "market")
    assert bad.returncode == 2 and "collateral 'market'" in bad.stdout

    fleet.write_text(json.dumps([dict(node, gpu_count=0)]))
    bad = risk("run", "--fleet", str(fleet))
    assert bad.returncode == 2 and "not a fleet" in bad.stdout
    # A GPU's cost as a bare number (micro-USD? USD?) is refused, not guessed.
    fleet.write_text(json.dumps([dict(node, acquisition_cost=36_000)]))
    bad = risk("run", "--fleet", str(fleet))
    assert bad.returncode == 2 and "an amount of money is a decimal string" in bad.stdout
    assert risk("run", "--scenario", "nope").returncode == 2
    wrong = risk("run", "--decline", "H100")
    assert wrong.returncode == 2 and "expected CLASS=BPS" in wrong.stdout
