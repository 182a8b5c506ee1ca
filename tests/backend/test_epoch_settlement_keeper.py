"""The epoch-settlement keeper and the metrics history through real parts: anvil, quorum-
signed attestations, the oracle's proofs files, Redis, a worker process (beat → indexer +
keeper → relayer) and the API over HTTP. Balances are checked on-chain afterwards.

The world: node A bills `buyer` (who approved the settlement), node B bills `stranger` (who
did not: its settlement reverts), node C has no terms (never settled). Epochs, after the
terms were set during epoch k:
  k    A, B, C   before the nodes became billable: never settled
  k+1  A, B, C   A settles; B's batch is split off and fails alone (a recorded action)
  k+2  B, C      A was excluded by the oracle: passed over
  k+3  A, B, C   its published file is forged at first (A waits, logged), then fixed: A
                 settles k+2..k+3 at once from its leaf's cumulative counter
Each oracle of the quorum publishes its own folder; the keeper reads them all. Epoch k+1's
file is only in the second oracle's folder (the first oracle was down then, and never wrote
it): settlement goes on from the other oracle's file, checked against the same root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brownie import chain
from sqlalchemy import select

from backend.db.models import Action, ActionKind, LeafIngestRow, NodeMetricRow
from backend.db.session import get_sessionmaker
from backend.services.keepers.epochs import first_epoch_after
from gpucap.attestation import EpochCommitment, NodeLeaf, build_commitment
from oracle.proofs import proofs_document, write_proofs
from tests.backend.backend_helpers import (
    Stack,
    reorg_away,
    running_stack,
    wait_for,
)
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, commitment_for, end_epoch, signatures

USD = 10**6
PRICE = 2 * USD  # per delivered GPU-hour
FEE_BPS, RESERVE_BPS = 500, 300  # DeployConfig defaults


def _attest(system: Any, c: EpochCommitment, sender: Any) -> None:
    system.oracle_hub.attest(
        c.report.as_tuple(),
        signatures(system.oracle_hub, c.report, ORACLE_KEYS[:2]),
        {"from": sender},
    )


def _publish(proofs_dir: Path, system: Any, c: EpochCommitment) -> None:
    doc = proofs_document(
        c,
        chain_id=chain.id,
        oracle_hub=system.oracle_hub.address,
        signers=[address_of(k) for k in ORACLE_KEYS[:2]],
        attestation=None,
    )
    write_proofs(proofs_dir, c.report.epoch, doc)


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, buyer, stranger, tmp_path_factory):
    s = live_deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    s.stablecoin.drip(buyer, {"from": buyer})
    nodes = [
        s.registry.registerNode(
            h100,
            8,
            b"eu-west".ljust(32, b"\0"),
            240_000 * USD,
            chain[-1].timestamp - 86_400,
            "0x" + f"{0xA0 + i:02x}" * 20,
            {"from": operator},
        ).events["NodeRegistered"]["nodeId"]
        for i in range(3)
    ]
    a, b, c = nodes
    hub = s.oracle_hub
    # Terms set after genesis, so that k below (the epoch they were set in) is a real epoch,
    # >= 1: a deployment moments before an epoch boundary would otherwise give k = 0.
    if chain[-1].timestamp <= hub.genesisTimestamp():
        end_epoch(hub)
    terms = s.settlement.setUsageTerms(a, buyer, PRICE, {"from": admin})
    s.settlement.setUsageTerms(b, stranger, PRICE, {"from": admin})  # no allowance given
    s.settlement.approveUsage(a, PRICE, {"from": buyer})
    s.settlement.approveUsage(b, PRICE, {"from": stranger})  # agreed, but cannot pay
    s.stablecoin.approve(s.settlement, 2**256 - 1, {"from": buyer})
    proofs_dir = tmp_path_factory.mktemp("epochs")
    other_oracle = tmp_path_factory.mktemp("epochs-oracle-2")
    commitments: dict[int, EpochCommitment] = {}
    # k: the epoch the terms were set in (the keeper settles from the first one after).
    k = first_epoch_after(terms.timestamp, hub.genesisTimestamp(), hub.epochLengthSeconds()) - 1
    cums: dict = {}  # each node's counters, chained as the oracles do (A has no leaf in k+2)
    for epoch in range(k, k + 4):
        if hub.currentEpoch() <= epoch:
            end_epoch(hub)
        members = [b, c] if epoch == k + 2 else nodes
        commitments[epoch] = commitment_for(s.oracle_hub, epoch, members, seed=epoch, bases=cums)
        _attest(s, commitments[epoch], operator)
    for epoch in range(k, k + 3):
        _publish(other_oracle if epoch == k + 1 else proofs_dir, s, commitments[epoch])
    # Epoch k+3's file claims more delivery for A than the oracles signed.
    real = commitments[k + 3]
    forged_leaves = [
        NodeLeaf(
            **{
                **vars(leaf),
                "milli_gpu_hours": leaf.milli_gpu_hours + 1,
                "cum_milli_gpu_hours": leaf.cum_milli_gpu_hours + 1,
            }
        )
        if leaf.node_id == a
        else leaf
        for leaf in real.leaves
    ]
    _publish(proofs_dir, s, build_commitment(k + 3, forged_leaves, real.report.config_version))
    return {
        "system": s,
        "nodes": nodes,
        "k": k,
        "commitments": commitments,
        "proofs": proofs_dir,
        "other_oracle": other_oracle,
        "buyer_balance": s.stablecoin.balanceOf(buyer),  # before any keeper runs
    }


@pytest.fixture(scope="module")
def stack(world, live_deployment, tmp_path_factory, backend) -> Iterator[Stack]:
    env = {
        "GPUCAP_PROOFS_DIR": str(world["proofs"]),
        "GPUCAP_PROOFS_DIRS": json.dumps([str(world["other_oracle"])]),
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_RETRY_SECONDS": "3600",
        "GPUCAP_LEAF_INGEST_RETRY_SECONDS": "0.5",
        "GPUCAP_HEALTH_MAX_ATTESTATION_LAG_SECONDS": "30",
    }
    tmp = tmp_path_factory.mktemp("keeper")
    with running_stack(tmp, live_deployment, env, backend=backend) as s:
        yield s


def _split(gross: int) -> tuple[int, int, int]:
    """(fee, reserve, operator) of a node without a pool: the operator takes the net."""
    fee, reserve = gross * FEE_BPS // 10_000, gross * RESERVE_BPS // 10_000
    return fee, reserve, gross - fee - reserve


def test_keeper_settles_in_order_and_isolates_bad_input(
    world, stack, buyer, operator, relayer
) -> None:
    s, k = world["system"], world["k"]
    a, b, c = world["nodes"]
    settlement = s.settlement
    assert settlement.hasRole(settlement.SETTLER_ROLE(), relayer)  # granted by the deploy script
    paid_before = world["buyer_balance"]
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])

    # A settles k+1 (never k: it became billable during k) from the second oracle's file
    # (the first has none), then waits at the forged k+3.
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 1, 60, "node A to settle epoch k+1")
    wait_for(
        lambda: f"rejected: node {a}: epoch {k + 3}" in stack.worker.log_tail(400),
        60,
        "the forged file of epoch k+3 to be rejected",
    )
    assert settlement.lastSettledEpoch(a) == k + 1
    # B's unfunded payer made its settlement revert: split off, failed alone, with the reason.
    with sessions() as session:
        failed = wait_for(
            lambda: session.scalars(
                select(Action).where(
                    Action.kind == ActionKind.SETTLE_EPOCH.value, Action.status == "failed"
                )
            ).all(),
            30,
            "B's settlement to fail",
        )
    assert [(f.params["node_ids"], f.params["epoch"]) for f in failed] == [([b], k + 1)]
    assert failed[0].error_code == "ERC20InsufficientAllowance"
    assert settlement.lastSettledEpoch(b) == 0 and settlement.lastSettledEpoch(c) == 0

    # The oracle republishes epoch k+3 correctly: A passes over k+2 (excluded) and settles it,
    # its range (k+1, k+3] billed from the counters' difference: k+3's usage alone.
    _publish(world["proofs"], s, world["commitments"][k + 3])
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 3, 60, "node A to settle epoch k+3")

    leaves = {e: {x.node_id: x for x in world["commitments"][e].leaves} for e in (k + 1, k + 3)}
    # The first settlement bills its own epoch; the next the range k+2..k+3 at once, from
    # the leaf's cumulative counter since the last settled one.
    since = leaves[k + 3][a].cum_milli_gpu_hours - leaves[k + 1][a].cum_milli_gpu_hours
    assert since == leaves[k + 3][a].milli_gpu_hours  # A had no leaf in k+2: nothing then
    usage = [PRICE * leaves[k + 1][a].milli_gpu_hours // 1000, PRICE * since // 1000]
    splits = [_split(u) for u in usage]
    assert paid_before - s.stablecoin.balanceOf(buyer) == sum(usage)
    assert settlement.feesHeld() == sum(f for f, _, _ in splits)
    assert settlement.reserveHeld() == sum(r for _, r, _ in splits)
    assert settlement.operatorCredit(operator) == sum(o for _, _, o in splits)
    assert s.stablecoin.balanceOf(settlement) == sum(usage) == settlement.totalIn()

    def confirmed() -> list[tuple[int, list[int]]]:
        with sessions() as session:
            rows = session.scalars(
                select(Action).where(
                    Action.kind == ActionKind.SETTLE_EPOCH.value, Action.status == "confirmed"
                )
            ).all()
            return sorted((x.params["epoch"], x.params["node_ids"]) for x in rows)

    # The chain moves before the relay task records the receipt: wait for the rows.
    wait_for(lambda: len(confirmed()) == 2, 30, "both settlements to be recorded as confirmed")
    assert confirmed() == [(k + 1, [a]), (k + 3, [a])]


def test_metrics_history_is_served_from_verified_leaves(world, stack) -> None:
    s, k = world["system"], world["k"]
    a, b, c = world["nodes"]
    _publish(world["proofs"], s, world["commitments"][k + 3])  # the real file (if not yet)
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])

    def ingested() -> bool:
        with sessions() as session:
            states = {r.epoch: r.status for r in session.scalars(select(LeafIngestRow))}
        return all(states.get(e) == "complete" for e in range(k, k + 4))

    wait_for(ingested, 60, "every attested epoch's leaves to be ingested")
    body = stack.get(f"/api/v1/nodes/{a}/metrics", params={"from_epoch": k}).json()
    assert [m["epoch"] for m in body] == [k + 3, k + 1, k]  # excluded from k+2
    leaf = world["commitments"][k + 1].leaves[0]
    got = next(m for m in body if m["epoch"] == k + 1)
    assert (got["milli_gpu_hours"], got["energy_wh"]) == (leaf.milli_gpu_hours, leaf.energy_wh)
    assert (got["energy_joules"], got["cum_busy_gpu_seconds"]) == (
        leaf.energy_joules,
        leaf.cum_busy_gpu_seconds,
    )
    assert got["energy_efficiency"] == pytest.approx(
        leaf.milli_gpu_hours * 3_600 / leaf.energy_joules
    )

    # The served proof verifies on-chain, against the hub itself.
    served = stack.get(f"/api/v1/nodes/{b}/leaves/{k + 2}").json()
    leaf_tuple = NodeLeaf(**served["leaf"]).values()  # the v2 leaf, field for field
    assert s.oracle_hub.verifyLeaf(leaf_tuple, served["proof"])
    missing = stack.get(f"/api/v1/nodes/{a}/leaves/{k + 2}")
    assert missing.status_code == 404 and missing.json()["code"] == "LeafNotFound"

    fleet = stack.get("/api/v1/fleet/metrics", params={"epochs": 4}).json()
    assert [e["epoch"] for e in fleet] == [k + 3, k + 2, k + 1, k]
    assert [e["nodes"] for e in fleet] == [3, 2, 3, 3]
    with sessions() as session:
        stored = session.scalars(select(NodeMetricRow).where(NodeMetricRow.epoch == k + 3)).all()
        assert sorted(r.node_id for r in stored) == [a, b, c]


def test_health_tells_settlement_and_attestation_progress(world, stack) -> None:
    """/health is not ok while the keeper trails (B's failed settlement of k+1 waits for
    its retry) or ended epochs go unattested, and says by how much."""
    s, k = world["system"], world["k"]
    _, b, _ = world["nodes"]
    hub = s.oracle_hub
    wait_for(lambda: s.settlement.lastSettledEpoch(world["nodes"][0]) == k + 3, 60, "A settled")

    def checks() -> dict:
        return stack.get("/health").json()["checks"]

    keeper = wait_for(
        lambda: (c := checks()["keeper"])["epochs_behind"] == 3 and c, 30, "the keeper's record"
    )
    assert keeper["ok"] is False and f"node {b}: epoch {k + 1}" in keeper["detail"], keeper
    attestation = checks()["attestation"]
    assert attestation["last_attested_epoch"] == k + 3, attestation
    relayer = wait_for(lambda: (c := checks()["relayer"])["pending"] == 0 and c, 30, "no pending")
    assert relayer["ok"]

    # Two epochs (60 s each here) end and no oracle attests them: stale past the 30 s set.
    end_epoch(hub)
    end_epoch(hub)
    resp = stack.get("/health")
    assert resp.status_code == 503 and resp.json()["status"] == "degraded"
    attestation = resp.json()["checks"]["attestation"]
    assert attestation["ok"] is False, attestation
    assert attestation["epochs_waiting"] >= 2 and attestation["lag_seconds"] > 30
    assert "stale" in attestation["detail"]


def test_a_settlement_batch_a_reorg_removed_is_settled_again_once(world, stack, buyer) -> None:
    """The keeper plans from the chain: after a reorg takes A's epoch k+3 settlement away,
    the same batch (the same row, re-opened) settles it again, and the buyer pays once."""
    s, k = world["system"], world["k"]
    a = world["nodes"][0]
    settlement = s.settlement
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])
    _publish(world["proofs"], s, world["commitments"][k + 3])  # the real file (if not yet)
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 3, 60, "node A to settle epoch k+3")

    def settled_rows() -> list[Action]:
        with sessions() as session:
            return list(
                session.scalars(
                    select(Action).where(Action.kind == ActionKind.SETTLE_EPOCH.value)
                ).all()
            )

    def row_of_k3() -> Action | None:
        rows = [r for r in settled_rows() if r.params["epoch"] == k + 3]
        return rows[0] if len(rows) == 1 and rows[0].status == "confirmed" else None

    before = wait_for(row_of_k3, 30, "the k+3 settlement to be recorded as confirmed")
    paid, total_in = s.stablecoin.balanceOf(buyer), settlement.totalIn()

    reorg_away(before.block_number)
    assert settlement.lastSettledEpoch(a) == k + 1  # the reorg took the settlement away
    assert s.stablecoin.balanceOf(buyer) > paid

    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 3, 60, "A to settle k+3 again")
    after = wait_for(row_of_k3, 30, "the re-opened row to be confirmed again")
    assert after.id == before.id  # the same action, executed once more, not a second one
    reorgs = stack.get("/health").json()["checks"]["reorgs"]  # re-opened by index or keeper
    assert (reorgs["ok"], reorgs["reopened_last_hour"], reorgs["reopened_open"]) == (True, 1, 0)
    assert s.stablecoin.balanceOf(buyer) == paid and settlement.totalIn() == total_in
    assert sorted((r.params["epoch"], r.params["node_ids"], r.status) for r in settled_rows()) == [
        (k + 1, [a], "confirmed"),
        (k + 1, [world["nodes"][1]], "failed"),
        (k + 3, [a], "confirmed"),
    ]
