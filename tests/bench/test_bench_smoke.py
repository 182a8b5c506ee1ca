"""`python -m bench --smoke`: the whole benchmark harness at a tiny size, in its own process.

Proves every figure's code path runs against real parts (anvil, Redis, API,
worker, load generator, oracle pipeline) and that results.json holds each
figure. No timing is asserted: only that the harness measured something, and
the invariants that hold at any size (exact gas is positive, the Merkle root
is cheaper per node than per-node reports, every relayed action and matched
fill completed, a settlement covering more epochs costs less per node-epoch).
Figures 3-4 run on both back ends (tests/support/backends.py);
where no PostgreSQL or redis-server answers, the bench must say so instead.
Figure 8 runs on the embedded back end alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpucap import devchain
from tests.support.backends import servers_unreachable


def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=devchain.REPO_ROOT,
        env=devchain.env_with_toolchain(),
        capture_output=True,
        text=True,
        timeout=480,  # two back ends' stacks, figure 8: a guard against a hang, not a speed check
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

    _check_stack_figures(r["backend"], roles={"anvil", "api", "worker", "redis"})
    assert r["backend"]["back_end"]["name"] == "embedded"
    assert "SQLite" in r["backend"]["back_end"]["database"]
    servers = r["backend_servers"]
    why = servers_unreachable()
    if why is not None:
        assert servers == {"back_end": {"name": "servers"}, "skipped": why}
        assert f"not measured: {why}" in run.stdout
    else:
        # Where the servers' own processes work for this stack alone (PostgreSQL's
        # process per connection), their CPU is counted; the shared redis-server's is not.
        _check_stack_figures(servers, roles={"anvil", "api", "worker", "postgres"})
        assert "PostgreSQL" in servers["back_end"]["database"]
        assert servers["back_end"]["cpu_not_counted"] == ["redis-server"]
        assert "redis" not in servers["relayed"]["cpu_s"]
        assert "[servers] PostgreSQL" in run.stdout
        assert "market_fills" not in servers  # figure 8: the embedded back end's child only

    # Figure 8: the book's orders placed, each fill matched, signed, relayed and indexed,
    # and as many raw Market.fill transactions mined.
    fills = r["market_fills"]
    assert fills["figure"] == 8 and fills["fills"] == 2, fills
    assert "market_fills" not in r["backend"]  # moved to its own key
    assert fills["relayed"]["orders"]["orders"] == 2, fills["relayed"]["orders"]
    assert fills["relayed"]["completed"] == 2, fills["relayed"]["errors"]
    assert fills["relayed"]["gas_per_fill"] > 21_000 // 2
    assert fills["raw"]["failed"] == 0 and fills["raw"]["transactions"] == 2, fills["raw"]
    assert fills["relayed_to_raw_ratio"] > 0
    assert "8. matched market fills/s" in run.stdout

    # Figure 9 (#20): one settlement's gas does not grow with the epochs it covers, so its
    # share per node-epoch falls; a range proof reads two leaves, leaf by leaf all of them.
    g9 = r["gas_settlement"]
    assert "error" not in g9, g9
    settle = [g9["settle"][str(n)] for n in (1, 2, 3)]
    assert [x["gas_per_node_epoch_1_node"] for x in settle] == sorted(
        (x["gas_per_node_epoch_1_node"] for x in settle), reverse=True
    )
    assert all(x["gas_per_node_epoch_batch"] < x["gas_per_node_epoch_1_node"] for x in settle)
    proofs = g9["delivery_proof"]
    assert proofs["3"]["proveDeliveryRange_gas"] < proofs["3"]["proveDelivery_gas"]
    assert set(g9["totals"]) == {"4", "8"} and g9["goal_met"] is None  # not at 1,000 nodes
    assert "9. settlement and delivery proofs over ranges" in run.stdout
    assert r["oracle"]["nodes"] == 20 and "error" not in r["oracle"]
    assert "1. gas per operation" in run.stdout


def test_bench_without_servers_says_so_in_one_line(tmp_path: Path) -> None:
    """Figures 3-4 on PostgreSQL + redis-server where no PostgreSQL answers: one line
    on stderr, the reason in results.json and the table, and nothing measured."""
    out = tmp_path / "results.json"
    nobody = f"postgresql+psycopg://postgres@127.0.0.1:{devchain.free_port()}/postgres"
    env = {**devchain.env_with_toolchain(), "GPUCAP_TEST_POSTGRES_URL": nobody}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--stack-only", "--back-ends", "servers"]
        + ["--out", str(out)],
        cwd=devchain.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [x for x in run.stderr.splitlines() if "not measured" in x]
    assert line.startswith("[bench] figures 3-4 on PostgreSQL + redis-server not measured: ")
    assert nobody in line
    servers = json.loads(out.read_text())["backend_servers"]
    assert servers["skipped"] == line.split("not measured: ", 1)[1]
    assert set(servers) == {"back_end", "skipped"}
    assert f"[servers] not measured: {servers['skipped']}" in run.stdout


def _check_stack_figures(backend: dict, roles: set[str]) -> None:
    """Figures 3-4 of one back end: every raw and relayed transaction went through, the
    CPU of each part of the stack was found by role, every read answered 200."""
    assert "error" not in backend, backend
    for baseline in ("raw", "raw_same_action"):
        raw = backend[baseline]
        assert raw["failed"] == 0 and raw["transactions"] > 0, (baseline, raw)
        assert raw["gas_per_tx"] > 21_000, (baseline, raw)
        # Every part of the stack is found by role (a few transactions may cost 0.00 s).
        assert roles | {"load generator"} <= set(raw["cpu_s"]), raw["cpu_s"]
    assert backend["relayed_to_raw_same_action_ratio"] > 0
    relayed = backend["relayed"]
    assert relayed["completed"] == relayed["actions"], relayed["errors"]
    # Gas from the executeBatch receipts; CPU from the processes that did the work.
    assert relayed["gas_per_action"] > 21_000 // relayed["actions"]
    # Each accepted action is in one block's count, and the last record of progress has
    # them all finished.
    assert sum(relayed["actions_per_block"]) == relayed["accepted"]
    assert relayed["timeline"][-1][1:] == [relayed["accepted"]] * 3
    assert roles | {"load generator"} <= set(relayed["cpu_s"]), relayed["cpu_s"]
    assert "other" not in relayed["cpu_s"], relayed["cpu_s"]
    for reads in backend["reads"]:
        assert reads["errors"] == 0 and reads["requests"] > 0
    for sweep in backend["read_sweeps"]:  # the open-loop runs: paced, every answer a 200
        (paced,) = sweep["runs"]
        assert paced["mode"] == "open" and paced["offered_per_s"] == 50
        assert paced["errors"] == 0 and paced["requests"] > 0
