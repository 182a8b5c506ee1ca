"""The order test files are handed to pytest-xdist's workers: the longest first.

brownie schedules whole files (xdist's LoadFileScheduling), and xdist by default
queues the files with the most tests first. The suite's longest files are the
opposite: the state machines are one test each, minutes long, so they were queued
last and ran alone at the end while the other worker sat idle. Handing out the
longest files first (longest-processing-time-first) keeps both workers busy until
the end. The Makefile passes ``--no-loadscope-reorder`` so this order is kept.

``LONGEST_FIRST`` is measured, not guessed: the per-file sum of the test times in the
junit report of a full ``make test`` (2026-12-07, 2 cores, with other work on the
machine: the seconds are only used to rank). A file missing from the list keeps its
place after these; a stale entry costs a little balance, never correctness.
"""

from __future__ import annotations

LONGEST_FIRST: tuple[str, ...] = (
    "tests/contracts/test_revenue_pool_stateful.py",  # 199 s
    "tests/backend/test_e2e_faults.py",  # 132 s
    "tests/contracts/test_epoch_settlement_stateful.py",  # 92 s
    "tests/contracts/test_invariants_oracle_hub.py",  # 91 s
    "tests/dashboard/test_dashboard.py",  # 84 s
    "tests/demo/test_make_demo.py",  # 81 s
    "tests/contracts/test_capacity_token_stateful.py",  # 76 s
    "tests/contracts/test_market_stateful.py",  # 72 s
    "tests/oracle/test_oracle_quorum_e2e.py",  # 70 s
    "tests/contracts/test_epoch_settlement.py",  # 63 s
    "tests/backend/test_cli.py",  # 46 s
    "tests/backend/test_jail_keeper.py",  # ~40 s (2026-12-08, one run alone, loaded machine)
    "tests/contracts/test_challenge_jail.py",  # ~30 s (same)
    "tests/contracts/test_epoch_settlement_terms.py",  # ~30 s (estimate)
    "tests/contracts/test_node_registry.py",  # 42 s
    "tests/backend/test_governance.py",  # 40 s
    "tests/dashboard/test_governance_view.py",  # 37 s
    "tests/contracts/test_capacity_token.py",  # 35 s
    "tests/contracts/test_oracle_hub.py",  # 32 s
    "tests/bench/test_bench_smoke.py",  # 31 s
    "tests/contracts/test_revenue_pool.py",  # 28 s
    "tests/contracts/test_capacity_redeem_attacks.py",  # 26 s
    "tests/contracts/test_capacity_redeem.py",  # 26 s
    "tests/contracts/test_market.py",  # 26 s
    "tests/dashboard/test_dashboard_market.py",  # 25 s
    "tests/backend/test_e2e_market.py",  # 25 s
    "tests/backend/test_e2e_reorg.py",  # 24 s
    "tests/backend/test_openapi_fuzz.py",  # 22 s
    "tests/backend/test_servers_e2e_pools.py",  # 21 s
    "tests/backend/test_servers_epoch_settlement_keeper.py",  # 21 s
    "tests/backend/test_servers_epoch_settlement_cadence.py",  # ~25 s (2026-12-07, one run)
    "tests/backend/test_epoch_settlement_cadence.py",  # ~25 s (one run)
    "tests/backend/test_e2e_faucet.py",  # 21 s
    "tests/contracts/test_deploy_terms.py",  # ~20 s (2026-12-08, estimate)
    "tests/backend/test_node_load.py",  # ~13 s (one run alone)
    "tests/backend/test_leases.py",  # ~13 s (one run alone)
    "tests/backend/test_servers_e2e_reorg.py",  # 20 s
    "tests/agent/test_agent_e2e.py",  # 20 s
    "tests/backend/test_e2e_pools.py",  # 17 s
    "tests/backend/test_rpc_fallback.py",  # 17 s
    "tests/backend/test_metrics_endpoints.py",  # 16 s
    "tests/backend/test_e2e_whole_flow.py",  # 16 s
    "tests/contracts/test_emergency_pause.py",  # 16 s
    "tests/contracts/test_loan_lifecycle.py",  # 16 s
    "tests/backend/test_e2e_reset.py",  # 16 s
    "tests/backend/test_servers_relay_service.py",  # 15 s
    "tests/backend/test_relay_service.py",  # 15 s
    "tests/backend/test_e2e_reads.py",  # 15 s
)
_RANK = {path: rank for rank, path in enumerate(LONGEST_FIRST)}


def file_rank(nodeid: str) -> int:
    """Where a test's file goes in the queue (files not listed: after the listed ones)."""
    return _RANK.get(nodeid.split("::", 1)[0], len(LONGEST_FIRST))
