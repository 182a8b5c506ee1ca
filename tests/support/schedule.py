"""The order test files are handed to pytest-xdist's workers: the longest first.

brownie schedules whole files (xdist's LoadFileScheduling), and xdist by default
queues the files with the most tests first. The suite's longest files are the
opposite: the state machines are one test each, minutes long, so they were queued
last and ran alone at the end while the other worker sat idle. Handing out the
longest files first (longest-processing-time-first) keeps both workers busy until
the end. The Makefile passes ``--no-loadscope-reorder`` so this order is kept.

``LONGEST_FIRST`` is measured, not guessed: the per-file sum of ``--durations=0``
of a full ``make test`` (2026-12-07, 2 cores; seconds under load, used only to rank).
A file missing from the list keeps its place after these; a stale entry costs a
little balance, never correctness.
"""

from __future__ import annotations

LONGEST_FIRST: tuple[str, ...] = (
    "tests/contracts/test_revenue_pool_stateful.py",  # 234 s
    "tests/backend/test_e2e_faults.py",  # 177 s
    "tests/contracts/test_capacity_token_stateful.py",  # 158 s
    "tests/contracts/test_epoch_settlement_stateful.py",  # 140 s
    "tests/demo/test_make_demo.py",  # 109 s
    "tests/contracts/test_market_stateful.py",  # 107 s
    "tests/contracts/test_invariants_oracle_hub.py",  # 103 s
    "tests/dashboard/test_dashboard.py",  # 93 s
    "tests/contracts/test_node_registry.py",  # 77 s
    "tests/contracts/test_epoch_settlement.py",  # 72 s
    "tests/contracts/test_oracle_hub.py",  # 71 s
    "tests/oracle/test_oracle_quorum_e2e.py",  # 58 s
    "tests/contracts/test_revenue_pool.py",  # 54 s
    "tests/backend/test_cli.py",  # 52 s
    "tests/contracts/test_capacity_token.py",  # 49 s
    "tests/backend/test_openapi_fuzz.py",  # 44 s
    "tests/backend/test_e2e_market.py",  # 43 s
    "tests/bench/test_bench_smoke.py",  # 42 s
    "tests/backend/test_governance.py",  # 42 s
    "tests/contracts/test_loan_lifecycle.py",  # 35 s
    "tests/contracts/test_capacity_redeem.py",  # 33 s
    "tests/contracts/test_market.py",  # 33 s
    "tests/dashboard/test_governance_view.py",  # 32 s
)
_RANK = {path: rank for rank, path in enumerate(LONGEST_FIRST)}


def file_rank(nodeid: str) -> int:
    """Where a test's file goes in the queue (files not listed: after the listed ones)."""
    return _RANK.get(nodeid.split("::", 1)[0], len(LONGEST_FIRST))
