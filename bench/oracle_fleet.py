"""How long one oracle step takes off-chain for a simulated fleet of N nodes.

    .venv/bin/python -m bench.oracle_fleet [--nodes 100,1000,10000] [--samples 12]

Per fleet size: simulating the epoch's raw samples, aggregating them into
leaves (with the nonsense checks), building the Merkle tree and report, and
rendering the proofs document (one proof per node). A benchmark, not a test:
it asserts nothing about time; it prints what this machine does.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from gpucap.attestation import build_commitment
from oracle.aggregation import Rejection, aggregate
from oracle.collectors.simulated import SimulatedFleet, synthetic_nodes
from oracle.proofs import proofs_document
from oracle.reporter import build_leaf
from oracle.telemetry import EpochWindow


def run(count: int, samples: int) -> dict[str, float]:
    """Timings only (what this script prints)."""
    result = build(count, samples)
    result.pop("commitment")
    return result


def build(count: int, samples: int) -> dict[str, Any]:
    """Timings plus the epoch's commitment (so `python -m bench` can time signing it)."""
    nodes = synthetic_nodes(count)
    window = EpochWindow(epoch=100, start=100 * 3_600, end=101 * 3_600)
    t0 = time.perf_counter()
    telemetry = SimulatedFleet(0, samples).telemetry(nodes, window)
    t1 = time.perf_counter()
    leaves, excluded = [], 0
    for node in nodes:
        result = aggregate(node, telemetry.get(node.node_id), window, window.end)
        if isinstance(result, Rejection):
            excluded += 1
            continue
        leaves.append(build_leaf(node.node_id, window.epoch, result))
    t2 = time.perf_counter()
    commitment = build_commitment(window.epoch, leaves, 1)
    t3 = time.perf_counter()
    proofs_document(
        commitment, chain_id=1, oracle_hub="0x" + "00" * 20, signers=[], attestation=None
    )
    t4 = time.perf_counter()
    return {
        "nodes": count,
        "excluded": excluded,
        "simulate_s": t1 - t0,
        "aggregate_s": t2 - t1,
        "tree_s": t3 - t2,
        "proofs_s": t4 - t3,
        "commitment": commitment,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,10000")
    parser.add_argument("--samples", type=int, default=12, help="samples per node per epoch")
    args = parser.parse_args()
    print(
        f"{'nodes':>7} {'excluded':>8} {'simulate':>9} {'aggregate':>9} {'tree':>7} {'proofs':>7}"
    )
    for count in (int(n) for n in args.nodes.split(",")):
        r = run(count, args.samples)
        print(
            f"{r['nodes']:>7} {r['excluded']:>8} {r['simulate_s']:>8.2f}s {r['aggregate_s']:>8.2f}s"
            f" {r['tree_s']:>6.2f}s {r['proofs_s']:>6.2f}s"
        )


if __name__ == "__main__":
    main()
