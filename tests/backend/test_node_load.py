"""The figures a lender needs, from chain state and attested delivery: a node's load factor
as billed per delivery window (``/api/v1/nodes/{id}/load``) and coverage-weighted fleet
figures, an epoch with no coverage unknown rather than idle.

Against a real anvil: offers, sales and a redemption through CapacityToken, epochs
attested on the OracleHub by the quorum's signatures, the indexer (``Indexer.step()``)
folding the events and ingesting the published leaves, and the API on that database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from brownie import chain
from fastapi.testclient import TestClient

from backend.app.main import create_app
from backend.config import Settings
from backend.risk.collateral import trailing_unknown_epochs, trailing_utilization
from backend.risk.indexed import indexed_overrides
from backend.services.chain import Chain
from backend.services.indexing.indexer import Indexer
from gpucap import devchain
from gpucap.attestation import NodeLeaf, build_commitment
from oracle.proofs import proofs_document, write_proofs
from tests.oracle.hub_helpers import ORACLE_KEYS, end_epoch, signatures
from tests.support.leaves import test_leaf

USD = 10**6
REGION = b"eu-west".ljust(32, b"\0")
GPUS = 8


def _register(s, operator, h100: int, key: str) -> tuple[int, int]:
    tx = s.registry.registerNode(
        h100,
        GPUS,
        REGION,
        240_000 * USD,
        chain[-1].timestamp - 86_400,
        "0x" + key * 20,
        {"from": operator},
    )
    node = tx.events["NodeRegistered"]["nodeId"]
    s.registry.depositBond(node, 5_000 * USD, {"from": operator})
    return node, tx.timestamp


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, buyer, relayer, tmp_path_factory):
    """Two H100 nodes. ``sold`` has 10 + 5 GPU-hours sold in window W, 4 of them redeemed
    against it; ``idle`` sold nothing. Three epochs of W attested: ``sold`` observed fully,
    not at all (coverage 0), then half; ``idle`` unobserved in the first, observed after."""
    s = live_deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (operator, buyer):
        s.stablecoin.drip(who, {"from": who})
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator})
    sold, registered_at = _register(s, operator, h100, "ab")
    idle, _ = _register(s, operator, h100, "cd")
    window = s.capacity.windowSeconds()
    start = (chain[-1].timestamp // window + 2) * window
    token = s.capacity.tokenIdFor(h100, start)
    offer = s.capacity.publishOffer(sold, token, 100, 2 * USD, {"from": operator}).return_value
    s.stablecoin.approve(s.capacity, 2**256 - 1, {"from": buyer})
    s.capacity.buy(offer, 10, {"from": buyer})
    s.capacity.buy(offer, 5, {"from": buyer})
    s.capacity.redeem(token, 4, sold, {"from": buyer})

    chain.sleep(start + 10 - chain[-1].timestamp)
    chain.mine()
    proofs_dir = tmp_path_factory.mktemp("epochs")
    # epoch index -> node -> (coverage, utilization, milli-GPU-hours, joules); in the
    # third epoch ``idle`` delivered with its energy unknown (0 J at energy coverage 0).
    figures = {
        0: {sold: (10_000, 6_000, 120, 200_000), idle: (0, 0, 0, 0)},
        1: {sold: (0, 0, 0, 0), idle: (10_000, 2_000, 130, 200_000)},
        2: {sold: (5_000, 8_000, 100, 200_000), idle: (10_000, 3_000, 130, 0)},
    }
    previous: dict[int, NodeLeaf] = {}
    epochs = []
    for k in range(3):
        epoch = end_epoch(s.oracle_hub)
        leaves = []
        for node, (coverage, util, milli, joules) in figures[k].items():
            leaf = test_leaf(
                node,
                epoch,
                uptime_bps=9_000 if coverage else 0,
                utilization_bps=util,
                coverage_bps=coverage,
                energy_joules=joules,
                milli_gpu_hours=milli,
                base=previous.get(node),
            )
            previous[node] = leaf
            leaves.append(leaf)
        c = build_commitment(epoch, leaves, s.oracle_hub.configVersion())
        s.oracle_hub.attest(
            c.report.as_tuple(),
            signatures(s.oracle_hub, c.report, ORACLE_KEYS[:2]),
            {"from": relayer},
        )
        doc = proofs_document(
            c, chain_id=chain.id, oracle_hub=s.oracle_hub.address, signers=[], attestation=None
        )
        write_proofs(proofs_dir, epoch, doc)
        epochs.append(epoch)
    return {
        "sold": sold,
        "idle": idle,
        "registered_at": registered_at,
        "window": window,
        "start": start,
        "token": token,
        "epochs": epochs,
        "window_epochs": tuple(s.capacity.windowEpochs(token)),
        "proofs_dir": proofs_dir,
        "as_of": chain[-1].timestamp,
    }


@pytest.fixture
def api(world, live_deployment, sessions, tmp_path: Path) -> Iterator[TestClient]:
    """The API on a database the indexer filled from the chain and the published leaves."""
    chain_ = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0)
    indexer = Indexer(chain_, sessions, proofs_dir=world["proofs_dir"])
    report = indexer.step()
    assert report.to_block == report.head_block and report.leaves == 6
    settings = Settings(
        run_dir=tmp_path,
        database_url=sessions.kw["bind"].url.render_as_string(hide_password=False),
        redis_url=f"redis://127.0.0.1:{devchain.free_port()}/0",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_load_factor_as_billed_beside_attested_delivery(api: TestClient, world) -> None:
    window, start = world["window"], world["start"]
    body = api.get(f"/api/v1/nodes/{world['sold']}/load", params={"windows": 3}).json()
    assert (body["node_id"], body["gpu_count"], body["window_seconds"]) == (
        world["sold"],
        GPUS,
        window,
    )
    assert body["registered_at"] == world["registered_at"] and body["exited_at"] is None
    assert body["as_of"] >= world["as_of"]
    assert [w["window_start"] for w in body["windows"]] == [
        start,
        start - window,
        start - 2 * window,
    ]

    w = body["windows"][0]
    full_window = GPUS * window * 1_000 // 3_600  # milli-GPU-hours the node could deliver
    assert w == {
        "window_start": start,
        "window_end": start + window,
        "token_id": str(world["token"]),
        "status": "open",
        "sold_gpu_hours": 15,
        "reserved_gpu_hours": 4,
        "refunded_milli_gpu_hours": 0,
        "billed_milli_gpu_hours": 15_000,
        "registered_seconds": window,
        "available_milli_gpu_hours": full_window,
        "load_factor_bps": 15_000 * 10_000 // full_window,
        # The chain's own mapping of the window to epochs.
        "first_epoch": world["window_epochs"][0],
        "last_epoch": world["window_epochs"][1],
        "attested_epochs": 3,
        "leaves": 3,
        "unknown_epochs": 1,  # the zero-coverage epoch: unknown, not idle
        "delivered_milli_gpu_hours": 120 + 0 + 100,
        "sample_coverage_bps": (10_000 + 0 + 5_000) // 3,
    }
    assert w["first_epoch"] <= min(world["epochs"]) and max(world["epochs"]) <= w["last_epoch"]

    # The window the node registered in counts only the part it was registered for.
    joined = body["windows"][2]
    assert joined["window_start"] < world["registered_at"] < joined["window_end"]
    registered = joined["window_end"] - world["registered_at"]
    assert joined["registered_seconds"] == registered
    assert joined["available_milli_gpu_hours"] == GPUS * registered * 1_000 // 3_600
    assert (joined["billed_milli_gpu_hours"], joined["load_factor_bps"]) == (0, 0)
    assert (joined["status"], joined["attested_epochs"], joined["sample_coverage_bps"]) == (
        "ended",
        0,
        None,
    )

    # No sale: load factor 0, its delivery still attested.
    idle = api.get(f"/api/v1/nodes/{world['idle']}/load", params={"windows": 1}).json()
    (w,) = idle["windows"]
    assert (w["billed_milli_gpu_hours"], w["load_factor_bps"]) == (0, 0)
    assert (w["delivered_milli_gpu_hours"], w["unknown_epochs"]) == (260, 1)


def test_an_epoch_without_coverage_does_not_lower_fleet_utilization(api: TestClient, world) -> None:
    body = api.get("/api/v1/fleet/metrics", params={"epochs": 3}).json()
    by_epoch = {e["epoch"]: e["classes"][0] for e in body}
    first, second, third = (by_epoch[e] for e in world["epochs"])
    # One node observed (6,000 bps), the other not at all: the fleet is at 6,000, not 3,000.
    assert (first["nodes"], first["mean_utilization_bps"]) == (2, 6_000)
    assert (first["utilization_unknown_nodes"], first["uptime_unknown_nodes"]) == (1, 1)
    assert first["mean_uptime_bps"] == 9_000
    assert (second["mean_utilization_bps"], second["utilization_unknown_nodes"]) == (2_000, 1)
    # Weighted by coverage: 8,000 at half coverage, 3,000 at full.
    assert third["mean_utilization_bps"] == (8_000 * 5_000 + 3_000 * 10_000) / 15_000
    assert third["utilization_unknown_nodes"] == 0
    # Efficiency pairs GPU-hours with the energy of the same nodes: ``idle``'s 130
    # milli-GPU-hours of unknown energy stay out (with them it would read 4.14, not 1.8).
    assert (third["energy_unknown_nodes"], third["energy_efficiency"]) == (1, 100 * 3_600 / 200_000)
    (third_fleet,) = [e for e in body if e["epoch"] == world["epochs"][2]]
    assert third_fleet["energy_efficiency"] == third["energy_efficiency"]
    assert (first["energy_unknown_nodes"], first["energy_efficiency"]) == (1, 120 * 3_600 / 200_000)


def test_bad_load_requests_get_coded_errors(api: TestClient, world) -> None:
    for path, status, code in [
        ("/api/v1/nodes/999/load", 404, "NodeNotFound"),
        (f"/api/v1/nodes/{world['sold']}/load?windows=0", 422, "ValidationFailed"),
        (f"/api/v1/nodes/{world['sold']}/load?windows=101", 422, "ValidationFailed"),
        (f"/api/v1/nodes/{world['sold']}/load?windows=x", 422, "ValidationFailed"),
        ("/api/v1/nodes/-1/load", 422, "ValidationFailed"),
    ]:
        resp = api.get(path)
        assert resp.status_code == status, path
        assert resp.json()["code"] == code and resp.json()["reason"], path
    route = api.get("/openapi.json").json()["paths"]["/api/v1/nodes/{node_id}/load"]["get"]
    assert {"200", "404", "422", "503"} <= set(route["responses"])
    assert all(r.get("description") for r in route["responses"].values())


def test_the_risk_input_weighs_by_coverage_and_counts_the_unknown_epochs(
    api: TestClient, sessions, world
) -> None:
    """What the stress run and the pool's marked collateral take as the node's utilization:
    the zero-coverage epoch is left out and counted, the half-covered one weighs half."""
    sold, idle = world["sold"], world["idle"]
    with sessions() as s:
        assert trailing_utilization(s, [sold, idle]) == {
            sold: round((6_000 * 10_000 + 8_000 * 5_000) / 15_000),
            idle: round((2_000 + 3_000) / 2),
        }
        assert trailing_unknown_epochs(s, [sold, idle, 999]) == {
            sold: (3, 1),
            idle: (3, 1),
            999: (3, 3),  # no leaf at all: every epoch unknown
        }
        assert indexed_overrides(s, [sold], world["as_of"])[sold]["utilization_bps"] == 6_667


@pytest.fixture(scope="module")
def settled(world, live_deployment, buyer):
    """After W and the settlement grace, the reservation settled: no delivery was proven on
    chain, so its whole 4 GPU-hours are a shortfall, refunded."""
    s = live_deployment.system
    chain.sleep(world["start"] + world["window"] + 3_601 - chain[-1].timestamp)
    chain.mine()
    tx = s.capacity.settleReservation(1, {"from": buyer})
    return tx.events["ReservationSettled"]["shortfallMilliGpuHours"]


def test_refunded_hours_are_not_billed(settled, api: TestClient, world) -> None:
    assert settled == 4_000
    body = api.get(f"/api/v1/nodes/{world['sold']}/load", params={"windows": 2}).json()
    w = next(w for w in body["windows"] if w["window_start"] == world["start"])
    assert w["status"] == "ended"
    assert (w["sold_gpu_hours"], w["reserved_gpu_hours"]) == (15, 4)
    assert (w["refunded_milli_gpu_hours"], w["billed_milli_gpu_hours"]) == (4_000, 11_000)
    assert w["load_factor_bps"] == 11_000 * 10_000 // w["available_milli_gpu_hours"]
