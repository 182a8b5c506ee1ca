"""Published leaves, verified against the attested root: loading, ingestion into the metrics
history, the read routes, and the keeper's batch packing. No chain here (the keeper and
the indexer against anvil and a real worker: test_epoch_settlement_keeper.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app.main import create_app
from backend.config import Settings
from backend.db.models import EpochRow, GpuClassRow, LeafIngestRow, NodeMetricRow, NodeRow
from backend.services.indexing.leaves import (
    ProofsMismatch,
    ProofsUnavailable,
    ingest_attested_leaves,
    load_epoch_proofs,
)
from backend.services.keepers.epochs import first_epoch_after
from backend.services.keepers.settle_batches import SettleItem, pack
from gpucap import devchain
from gpucap.attestation import EpochCommitment, NodeLeaf, build_commitment, leaf_hash
from gpucap.merkle import process_proof
from oracle.proofs import proofs_document, write_proofs
from tests.support.leaves import test_leaf

H100, L40S = 1, 2


def _leaf(node: int, epoch: int, util: int = 6_000, energy: int = 2_000, milli: int = 7_500):
    """``energy`` in Wh for readable sums (the leaf carries joules); 0 Wh = unknown."""
    return test_leaf(node, epoch, 9_900, util, 10_000, energy * 3_600, milli, passed=1)


def _commit(epoch: int, leaves: list[NodeLeaf]) -> EpochCommitment:
    return build_commitment(epoch, leaves, 1)


def _publish(directory: Path, c: EpochCommitment) -> dict:
    doc = proofs_document(
        c, chain_id=31337, oracle_hub="0x" + "11" * 20, signers=[], attestation=None
    )
    write_proofs(directory, c.report.epoch, doc)
    return doc


def _epoch_row(c: EpochCommitment) -> EpochRow:
    r = c.report
    return EpochRow(
        epoch=r.epoch,
        root="0x" + r.root.hex(),
        node_count=r.node_count,
        total_energy_joules=r.total_energy_joules,
        total_milli_gpu_hours=r.total_milli_gpu_hours,
        config_version=1,
        transmitter="0x" + "22" * 20,
        block_number=100 + r.epoch,
        attested_at=1_800_000_000 + 60 * r.epoch,
        tx_hash="0x" + f"{r.epoch:064x}",
    )


def _load(directory: Path, c: EpochCommitment):
    return load_epoch_proofs(
        directory, c.report.epoch, "0x" + c.report.root.hex(), c.report.node_count
    )


# -- loading and verifying a published file ---------------------------------------------


def test_every_published_leaf_verifies(tmp_path: Path) -> None:
    c = _commit(3, [_leaf(1, 3), _leaf(2, 3), _leaf(5, 3)])
    _publish(tmp_path, c)
    proofs = _load(tmp_path, c)
    assert proofs.complete and sorted(proofs.leaves) == [1, 2, 5]
    leaf, proof = proofs.leaves[2]
    assert leaf == _leaf(2, 3)
    assert process_proof(leaf_hash(leaf), [bytes.fromhex(p[2:]) for p in proof]) == c.report.root


def test_a_forged_leaf_is_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    c = _commit(3, [_leaf(1, 3), _leaf(2, 3)])
    doc = _publish(tmp_path, c)
    doc["leaves"][1]["milliGpuHours"] += 1  # claims more delivery under the real proof
    doc["leaves"][1]["cumMilliGpuHours"] += 1  # (consistently: a well-formed leaf)
    (tmp_path / "3.json").write_text(json.dumps(doc))
    proofs = _load(tmp_path, c)
    assert not proofs.complete
    assert list(proofs.leaves) == [1]
    assert "does not lead to the attested root" in proofs.rejected[2]


@pytest.mark.parametrize(
    "damage, error, text",
    [
        (lambda d, p: p.unlink(), ProofsUnavailable, "no proofs file"),
        (lambda d, p: p.write_text("{not json"), ProofsUnavailable, "unreadable"),
        (lambda d, p: p.write_text(json.dumps({"leaves": []})), ProofsUnavailable, "unreadable"),
        (
            lambda d, p: p.write_text(json.dumps({**d, "leaves": d["leaves"][:1]})),
            ProofsMismatch,
            "lists 1 leaves, the chain attested 2",
        ),
        (
            lambda d, p: p.write_text(json.dumps({**d, "report": {"root": "0x" + "ab" * 32}})),
            ProofsMismatch,
            "the chain attested",
        ),
    ],
    ids=["missing", "not-json", "no-root", "truncated", "other-root"],
)
def test_unusable_files_are_refused(tmp_path: Path, damage, error, text) -> None:
    c = _commit(4, [_leaf(1, 4), _leaf(2, 4)])
    doc = _publish(tmp_path, c)
    damage(doc, tmp_path / "4.json")
    with pytest.raises(error, match=text):
        _load(tmp_path, c)


def test_a_leaf_for_another_epoch_is_rejected(tmp_path: Path) -> None:
    c = _commit(4, [_leaf(1, 4), _leaf(2, 4)])
    doc = _publish(tmp_path, c)
    doc["leaves"][0]["epoch"] = 5
    (tmp_path / "4.json").write_text(json.dumps(doc))
    assert "epoch 5" in _load(tmp_path, c).rejected[1]


# -- ingestion into the metrics history --------------------------------------------------


@pytest.fixture
def world(sessions):
    """Three nodes (two H100, one L40S) and four attested epochs."""
    with sessions.begin() as s:
        s.add_all(
            [
                GpuClassRow(
                    class_id=H100,
                    name="H100-SXM-80GB",
                    reference_power_w=700,
                    reference_throughput=1,
                    economic_life_months=48,
                    residual_value_bps=1000,
                ),
                GpuClassRow(
                    class_id=L40S,
                    name="L40S-48GB",
                    reference_power_w=350,
                    reference_throughput=1,
                    economic_life_months=48,
                    residual_value_bps=1000,
                ),
            ]
        )
        for node, cls in ((1, H100), (2, H100), (3, L40S)):
            s.add(
                NodeRow(
                    node_id=node,
                    operator="0x" + "33" * 20,
                    class_id=cls,
                    gpu_count=8,
                    region="eu",
                    node_key="0x" + "44" * 20,
                    acquisition_cost=1,
                    acquired_at=1,
                    status="active",
                    registered_block=1,
                )
            )
    commitments = {
        e: _commit(
            e,
            [
                _leaf(1, e, util=5_000 + 100 * e, energy=2_000, milli=7_000 + e),
                _leaf(2, e, util=7_000, energy=0 if e == 2 else 1_000, milli=8_000),
                _leaf(3, e, util=4_000, energy=500, milli=2_000),
            ],
        )
        for e in (1, 2, 3, 4)
    }
    with sessions.begin() as s:
        s.add_all(_epoch_row(c) for c in commitments.values())
    return commitments


def test_ingests_each_verified_leaf_once_and_retries_missing_files(
    world, sessions, tmp_path: Path
) -> None:
    proofs_dir = tmp_path / "epochs"
    for e in (1, 2):
        _publish(proofs_dir, world[e])
    forged = _publish(proofs_dir, world[3])
    forged["leaves"][0]["utilizationBps"] = 10_000
    (proofs_dir / "3.json").write_text(json.dumps(forged))
    report = ingest_attested_leaves(sessions, proofs_dir)
    assert (report.epochs, report.leaves, report.rejected) == (4, 8, 1)
    with sessions() as s:
        states = {r.epoch: r.status for r in s.scalars(select(LeafIngestRow))}
        assert states == {1: "complete", 2: "complete", 3: "partial", 4: "unavailable"}
        assert s.get(NodeMetricRow, (3, 1)) is None  # the forged one
        assert s.get(NodeMetricRow, (2, 1)).milli_gpu_hours == 7_002

    # Nothing is due again until the retry interval; then the published epoch 4 arrives.
    assert ingest_attested_leaves(sessions, proofs_dir).epochs == 0
    _publish(proofs_dir, world[4])
    _publish(proofs_dir, world[3])
    report = ingest_attested_leaves(sessions, proofs_dir, retry_seconds=0)
    assert (report.epochs, report.leaves, report.rejected) == (2, 6, 0)
    with sessions() as s:
        assert s.scalar(select(NodeMetricRow).where(NodeMetricRow.epoch == 3).limit(1))
        assert {r.status for r in s.scalars(select(LeafIngestRow))} == {"complete"}
        assert len(s.scalars(select(NodeMetricRow)).all()) == 12


def test_a_reattested_epoch_is_ingested_again(world, sessions, tmp_path: Path) -> None:
    """After a reorg the epoch may carry another root: the stored leaves are replaced."""
    _publish(tmp_path, world[1])
    ingest_attested_leaves(sessions, tmp_path)
    other = _commit(1, [_leaf(1, 1, milli=1)])
    _publish(tmp_path, other)
    with sessions.begin() as s:
        s.merge(_epoch_row(other))
    assert ingest_attested_leaves(sessions, tmp_path).leaves == 1
    with sessions() as s:
        rows = s.scalars(select(NodeMetricRow).where(NodeMetricRow.epoch == 1)).all()
        assert [(r.node_id, r.milli_gpu_hours) for r in rows] == [(1, 1)]


# -- read routes -------------------------------------------------------------------------


@pytest.fixture
def api(world, sessions, tmp_path: Path) -> Iterator[TestClient]:
    """The API on the world's database (the one ``sessions`` opens), leaves ingested."""
    settings = Settings(
        run_dir=tmp_path,
        database_url=sessions.kw["bind"].url.render_as_string(hide_password=False),
        redis_url=f"redis://127.0.0.1:{devchain.free_port()}/0",
    )
    proofs_dir = tmp_path / "epochs"
    for c in world.values():
        _publish(proofs_dir, c)
    ingest_attested_leaves(sessions, proofs_dir)
    with TestClient(create_app(settings)) as client:
        yield client


def test_node_metrics_newest_first_with_derived_figures(api: TestClient) -> None:
    body = api.get("/api/v1/nodes/1/metrics").json()
    assert [m["epoch"] for m in body] == [4, 3, 2, 1]
    assert body[0] == {
        "epoch": 4,
        "uptime_bps": 9_900,
        "utilization_bps": 5_400,
        "sample_coverage_bps": 10_000,
        "utilization_coverage_bps": 10_000,
        "energy_coverage_bps": 10_000,
        "challenges_passed": 1,
        "challenges_failed": 0,
        "energy_joules": 7_200_000,
        "energy_wh": 2_000,  # derived, kept for clients of leaf v1
        "milli_gpu_hours": 7_004,
        "cum_milli_gpu_hours": 7_004,
        "cum_energy_joules": 7_200_000,
        "cum_busy_gpu_seconds": 7_004 * 3_600 // 1_000 * 5_400 // 10_000,
        "gpu_hours": 7.004,
        "energy_efficiency": 7.004 / 2.0,  # GPU-hours per kWh
    }
    ranged = api.get("/api/v1/nodes/1/metrics", params={"from_epoch": 2, "to_epoch": 3})
    assert [m["epoch"] for m in ranged.json()] == [3, 2]
    assert [m["epoch"] for m in api.get("/api/v1/nodes/1/metrics?limit=1").json()] == [4]
    unknown = api.get("/api/v1/nodes/2/metrics?from_epoch=2&to_epoch=2").json()[0]
    # Unknown energy: 0 J with coverage 0, and no efficiency (never "infinitely efficient").
    assert (unknown["energy_joules"], unknown["energy_coverage_bps"]) == (0, 0)
    assert unknown["energy_efficiency"] is None


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/api/v1/nodes/9/metrics", 404, "NodeNotFound"),
        ("/api/v1/nodes/1/metrics?from_epoch=3&to_epoch=2", 422, "InvalidEpochRange"),
        ("/api/v1/nodes/1/metrics?limit=0", 422, "ValidationFailed"),
        ("/api/v1/nodes/9/leaves/1", 404, "NodeNotFound"),
        ("/api/v1/nodes/1/leaves/99", 404, "EpochNotAttested"),
        ("/api/v1/fleet/metrics?epochs=0", 422, "ValidationFailed"),
    ],
)
def test_bad_requests_get_coded_errors(api: TestClient, path: str, status: int, code: str) -> None:
    resp = api.get(path)
    assert resp.status_code == status
    assert resp.json()["code"] == code and resp.json()["reason"]


def test_leaf_with_proof_verifies_against_the_root(api: TestClient, world) -> None:
    body = api.get("/api/v1/nodes/3/leaves/2").json()
    leaf = NodeLeaf(**body["leaf"])
    assert leaf == _leaf(3, 2, util=4_000, energy=500, milli=2_000)
    assert body["root"] == "0x" + world[2].report.root.hex()
    assert body["leaf_hash"] == "0x" + leaf_hash(leaf).hex()
    proof = [bytes.fromhex(p[2:]) for p in body["proof"]]
    assert process_proof(leaf_hash(leaf), proof) == world[2].report.root
    assert body["attestation_tx_hash"] == _epoch_row(world[2]).tx_hash


def test_a_leaf_not_ingested_is_404(api: TestClient, sessions) -> None:
    with sessions.begin() as s:
        s.add(_epoch_row(_commit(5, [_leaf(1, 5)])))  # attested, file not ingested
    resp = api.get("/api/v1/nodes/1/leaves/5")
    assert resp.status_code == 404 and resp.json()["code"] == "LeafNotFound"
    assert [m["epoch"] for m in api.get("/api/v1/nodes/1/metrics?limit=1").json()] == [4]


def test_fleet_aggregates_per_class(api: TestClient) -> None:
    body = api.get("/api/v1/fleet/metrics", params={"epochs": 2}).json()
    assert [e["epoch"] for e in body] == [4, 3]
    e4 = body[0]
    assert (e4["nodes"], e4["gpu_hours"], e4["energy_wh"]) == (3, 17.004, 3_500)
    assert e4["energy_joules"] == 3_500 * 3_600
    h100, l40s = e4["classes"]
    assert (h100["class_name"], h100["nodes"]) == ("H100-SXM-80GB", 2)
    assert h100["mean_utilization_bps"] == (5_400 + 7_000) / 2
    assert h100["mean_uptime_bps"] == 9_900
    assert h100["gpu_hours"] == 15.004
    assert (l40s["class_id"], l40s["nodes"], l40s["gpu_hours"]) == (L40S, 1, 2.0)


def test_openapi_documents_the_routes(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    route = paths["/api/v1/nodes/{node_id}/metrics"]["get"]
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    assert "404" in route["responses"] and "422" in route["responses"]
    assert "/api/v1/fleet/metrics" in paths and "/api/v1/nodes/{node_id}/leaves/{epoch}" in paths


# -- the keeper's pure parts -----------------------------------------------------------------


def _items(n: int) -> list[SettleItem]:
    return [SettleItem(_leaf(i + 1, 7), []) for i in range(n)]


def test_pack_splits_by_gas_and_isolates_reverting_items() -> None:
    calls: list[list[int]] = []

    def estimate(epoch: int, items) -> int | str:
        ids = [i.leaf.node_id for i in items]
        calls.append(ids)
        if 3 in ids:
            return "ERC20InsufficientAllowance: payer of node 3"
        return 100_000 * len(ids)

    batches = pack(7, _items(6), estimate, max_gas=250_000)
    assert [([i.leaf.node_id for i in b], why) for b, why in batches] == [
        ([1], None),
        ([2], None),
        ([3], "ERC20InsufficientAllowance: payer of node 3"),
        ([4], None),
        ([5, 6], None),  # 300k for three does not fit 250k: halves
    ]
    assert calls[0] == [1, 2, 3, 4, 5, 6]


def test_pack_keeps_a_fitting_batch_whole() -> None:
    batches = pack(7, _items(5), lambda e, items: 21_000, max_gas=10**6)
    assert [len(b) for b, _ in batches] == [5]


@pytest.mark.parametrize(
    "timestamp, expected",
    [(1_000, 1), (999, 1), (1_001, 2), (1_060, 2), (1_061, 3), (1_120, 3)],
)
def test_first_epoch_after(timestamp: int, expected: int) -> None:
    # genesis 1000, 60 s epochs: epoch e starts at 1000 + 60 (e - 1).
    assert first_epoch_after(timestamp, 1_000, 60) == expected


def test_history_sends_a_failed_batch_alone_at_once_and_backs_off_a_failed_single(
    sessions,
) -> None:
    """Nodes of a batch that reverted retry alone right away (the culprit is unknown);
    a node that failed alone waits, whatever newer epoch it is planned at; failures at or
    before its last settled epoch no longer count; nodes with an open action are busy."""
    from datetime import timedelta

    from backend.db.models import Action, ActionKind, utcnow
    from backend.services.keepers.epochs import _History

    def row(
        key: str, status: str, epoch: int, nodes: list[int], block: int | None = None
    ) -> Action:
        return Action(
            kind=ActionKind.SETTLE_EPOCH.value,
            idempotency_key=key,
            params={"epoch": epoch, "node_ids": nodes, "leaves": [], "proofs": []},
            status=status,
            block_number=block,
        )

    with sessions.begin() as s:
        s.add_all(
            [
                row("a", "failed", 7, [1, 2], block=50),
                row("b", "failed", 7, [2], block=51),
                row("c", "submitted", 8, [4]),
                row("d", "confirmed", 6, [1]),
                # Reverted at block 30, before epoch 9's attestation (block 40) was on the
                # chain (a reorg re-sent it early): not held against the settlement.
                row("e", "failed", 9, [3], block=30),
            ]
        )
    with sessions() as s:
        history = _History.load(s)
    blocks = {7: 40, 9: 40}  # the attestation blocks of epochs 7 and 9
    earlier = utcnow() - timedelta(seconds=60)
    assert history.busy == {4}
    assert history.attempts(1, 7) == 1 and history.held_back(1, 0, blocks, earlier) == 0
    assert history.failed_before(1, 0, blocks)  # its batch failed: it goes alone now
    assert history.attempts(2, 7) == 2 and history.held_back(2, 0, blocks, earlier) == 2
    assert history.held_back(2, 0, blocks, utcnow() + timedelta(seconds=1)) == 0  # waited
    # Planned at a newer epoch, the failure still counts: it is in the node's unsettled range.
    assert history.attempts(2, 8) == 0 and history.held_back(2, 0, blocks, earlier) == 2
    assert history.held_back(2, 7, blocks, earlier) == 0  # epoch 7 settled since: forgotten
    assert history.attempts(3, 9) == 1 and history.held_back(3, 0, blocks, earlier) == 0
    assert not history.failed_before(3, 0, blocks)
    assert all(epoch != 6 for epoch, _ in history.failures[1])  # a confirmed row is no failure
