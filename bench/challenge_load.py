"""``python -m bench.challenge_load``: what work challenges cost, per GPU class.

For the default challenge settings (oracle/config.py) and each standard class:
the challenge size n, its FLOP, the product's time at the class's peak (dense
TF32, half the registry's dense BF16 figure) and at the lowest accepted
efficiency, the share of a node's GPU time that is at one challenge per mean
interval, and, measured on this machine, the host CPU time around it: the
agent generating A and B (the prepare step) and committing to C's rows (inside
the deadline), and the oracle checking ``rows`` rows (streaming B).
A benchmark, never a test: it reports what this machine did.
"""

from __future__ import annotations

import json
import time

import typer

from agent.protocol import expected_rows, matrix, row_tree
from gpucap.gpu_classes import STANDARD_CLASSES
from oracle.challenges import ChallengePolicy
from oracle.config import OracleSettings
from oracle.sources import challenge_policy

app = typer.Typer(add_completion=False, help=__doc__)


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _host_seconds(nonce: bytes, n: int, picks: list[int]) -> dict[str, float]:
    a = matrix(nonce, 0, n)  # as large as C: stands in for it when hashing rows
    return {
        # The prepare step (untimed by the oracle's deadline).
        "agentPrepareSeconds": _seconds(lambda: (matrix(nonce, 0, n), matrix(nonce, 1, n))),
        # Inside the deadline after "go", beside the product: committing to C's rows.
        "agentRowTreeSeconds": _seconds(lambda: row_tree(a)),
        "oracleCheckSeconds": _seconds(lambda: expected_rows(nonce, nonce, n, picks)),
    }


@app.command()
def main(
    measure: bool = typer.Option(True, help="Also time the host-side work on this CPU."),
) -> None:
    policy: ChallengePolicy = challenge_policy(OracleSettings())
    nonce = bytes(range(32))
    rows = []
    for spec in STANDARD_CLASSES:
        peak = spec.reference_throughput * 1e12 / 2
        n = policy.size(peak)
        flops = 2.0 * n**3
        at_peak = flops / peak
        slowest = flops / (peak * policy.min_efficiency)
        row = {
            "class": spec.name,
            "peakTf32Tflops": peak / 1e12,
            "n": n,
            "gflop": flops / 1e9,
            "productSecondsAtPeak": at_peak,
            "productSecondsAtMinEfficiency": slowest,
            "gpuShareAtPeak": at_peak / policy.mean_interval_s,
            "gpuShareAtMinEfficiency": slowest / policy.mean_interval_s,
        }
        if measure:
            picks = list(range(0, n, max(1, n // policy.rows)))[: policy.rows]
            row.update(_host_seconds(nonce, n, picks))
        rows.append(row)
        typer.echo(json.dumps(row))


if __name__ == "__main__":
    app()
