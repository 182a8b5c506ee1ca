"""`python -m bench --smoke`: the whole benchmark harness at a tiny size, in its own process.

Proves every figure's code path runs against real parts (anvil, Redis, API,
worker, load generator, oracle pipeline) and that results.json holds each
figure. No timing is asserted: only that the harness measured something, and
the invariants that hold at any size (exact gas is positive, the Merkle root
is cheaper per node than per-node reports, every relayed action completed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpucap import devchain


def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=devchain.REPO_ROOT,
        env=devchain.env_with_toolchain(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["smoke"] is True
    assert r["machine"]["cores"] >= 1 and r["machine"]["memory_gib"] > 0

    gas = r["gas_operations"]["gas"]
    for op in ("registerNode", "buy (repeat)", "redeem (partial)", "collectProceeds"):
        assert isinstance(gas[op], int) and gas[op] > 21_000, (op, gas.get(op))
    assert r["gas_operations"]["ratios"]

    for size, att in r["gas_attestation"].items():
        assert att["merkle_gas_per_node_epoch"] < att["baseline_gas_per_node_epoch"], size

    backend = r["backend"]
    assert "error" not in backend, backend
    for baseline in ("raw", "raw_same_action"):
        raw = backend[baseline]
        assert raw["failed"] == 0 and raw["transactions"] > 0, (baseline, raw)
        assert raw["gas_per_tx"] > 21_000, (baseline, raw)
        # Every part of the stack is found by role (a few transactions may cost 0.00 s).
        assert {"anvil", "api", "worker", "redis", "load generator"} <= set(raw["cpu_s"])
    assert backend["relayed_to_raw_same_action_ratio"] > 0
    relayed = backend["relayed"]
    assert relayed["completed"] == relayed["actions"], relayed["errors"]
    # Gas from the executeBatch receipts; CPU from the processes that did the work.
    assert relayed["gas_per_action"] > 21_000 // relayed["actions"]
    assert {"anvil", "api", "worker", "redis", "load generator"} <= set(relayed["cpu_s"])
    assert "other" not in relayed["cpu_s"], relayed["cpu_s"]
    for reads in backend["reads"]:
        assert reads["errors"] == 0 and reads["requests"] > 0
    for sweep in backend["read_sweeps"]:  # the open-loop runs: paced, every answer a 200
        (paced,) = sweep["runs"]
        assert paced["mode"] == "open" and paced["offered_per_s"] == 50
        assert paced["errors"] == 0 and paced["requests"] > 0

    assert r["oracle"]["nodes"] == 20 and "error" not in r["oracle"]
    assert "1. gas per operation" in run.stdout
