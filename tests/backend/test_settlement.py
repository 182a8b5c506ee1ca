"""The settlement keeper on anvil: after a capacity window it proves the node's attested
delivery from the oracle's published proofs and settles the reservation (refunding a
shortfall from the bond), through the real relayer and Redis, exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from brownie import chain
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action
from backend.redis_embedded import EmbeddedRedis
from backend.services.chain import Chain
from backend.services.indexing.indexer import Indexer
from backend.services.keepers.deliveries import plan_due, proof_groups, provable_leaves
from backend.services.relaying.relay import relay_action
from backend.services.relaying.relayer import Relayer
from backend.worker.kinds import REQUEST_BUILDERS
from gpucap import devchain
from gpucap.attestation import Cumulative, NodeLeaf, build_commitment
from oracle.proofs import proofs_document, write_proofs
from scripts.deploy import DeployConfig, deploy_system, write_manifest
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, signatures
from tests.support.brownie_network import ANVIL_PORT
from tests.support.leaves import test_leaf

USD = 10**6
PRICE = 2 * USD
HOUR = 3600


@pytest.fixture(scope="module")
def hourly(admin, operator, buyer, tmp_path_factory):
    """Hourly windows over 15-minute epochs (four epochs a window: the keeper proves them
    from two leaves), one node, one reservation of 10 GPU-hours in a window that has ended."""
    system = deploy_system(
        admin,
        DeployConfig(
            faucet_drip=1_000_000 * USD,
            faucet_cooldown_seconds=1,
            unbonding_delay_seconds=HOUR,
            epoch_length_seconds=HOUR // 4,
            capacity_window_seconds=HOUR,
            capacity_settlement_grace_seconds=HOUR,
        ),
    )
    manifest = write_manifest(system, tmp_path_factory.mktemp("hourly") / "manifest.json")
    h100 = system.class_ids["H100-SXM-80GB"]
    for who in (operator, buyer):
        system.stablecoin.drip(who, {"from": who})
    node = system.registry.registerNode(
        h100,
        32,  # 32 GPUs x 1 h x 90% commit ratio: up to 28 GPU-hours a window
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - HOUR,
        "0x" + "5e" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    system.stablecoin.approve(system.registry, 2**256 - 1, {"from": operator})
    system.registry.depositBond(node, 5_000 * USD, {"from": operator})
    window = (chain[-1].timestamp // HOUR + 2) * HOUR
    token = system.capacity.tokenIdFor(h100, window)
    offer = system.capacity.publishOffer(node, token, 20, PRICE, {"from": operator}).return_value
    system.stablecoin.approve(system.capacity, 2**256 - 1, {"from": buyer})
    system.capacity.buy(offer, 10, {"from": buyer})
    reservation = system.capacity.redeem(token, 10, node, {"from": buyer}).return_value
    # The window passes; the oracles attest its four epochs: 7 GPU-hours delivered, the
    # counters chained on 5 delivered before (as the oracles build them).
    chain.sleep(window + HOUR - chain[-1].timestamp + 1)
    chain.mine()
    first, last = system.capacity.windowEpochs(token)
    commitments = []
    base = Cumulative(milli_gpu_hours=5_000)
    for epoch, milli in zip(range(first, last + 1), (1_000, 2_000, 1_500, 2_500), strict=True):
        leaf = test_leaf(node, epoch, 10_000, 6_000, 10_000, 7_200_000, milli, base=base)
        base = Cumulative.of(leaf)
        c = build_commitment(epoch, [leaf], system.oracle_hub.configVersion())
        system.oracle_hub.attest(
            c.report.as_tuple(),
            signatures(system.oracle_hub, c.report, ORACLE_KEYS[:2]),
            {"from": operator},
        )
        commitments.append(c)
    return {
        "system": system,
        "manifest": manifest,
        "node": node,
        "token": token,
        "reservation": reservation,
        "commitments": commitments,
    }


@pytest.fixture
def proofs_dir(tmp_path: Path, hourly) -> Path:
    directory = tmp_path / "epochs"
    for c in hourly["commitments"]:
        doc = proofs_document(
            c,
            chain_id=chain.id,
            oracle_hub=hourly["system"].oracle_hub.address,
            signers=[address_of(k) for k in ORACLE_KEYS[:2]],
            attestation=None,
        )
        write_proofs(directory, c.report.epoch, doc)
    return directory


@pytest.fixture
def world(
    hourly, sessions: sessionmaker[Session], redis_server: EmbeddedRedis
) -> Iterator[dict[str, Any]]:
    rpc = f"http://127.0.0.1:{ANVIL_PORT}"
    keeper_chain = Chain.connect(rpc, str(hourly["manifest"]), 5.0)
    client = redis_lib.Redis.from_url(redis_server.url)
    relayer = Relayer(
        keeper_chain, devchain.dev_private_key(9), client, receipt_timeout=10, lock_seconds=10
    )
    Indexer(keeper_chain, sessions).step()
    yield {"sessions": sessions, "chain": keeper_chain, "relayer": relayer}
    client.close()


def _relay_all(world, ids: list[str]) -> list[str]:
    return [
        relay_action(
            sessions=world["sessions"],
            relayer=world["relayer"],
            builders=REQUEST_BUILDERS,
            action_id=i,
        )
        for i in ids
    ]


def _plan(world, proofs_dir: Path):
    sessions: sessionmaker[Session] = world["sessions"]
    with sessions() as session:
        return plan_due(session, world["chain"], proofs_dir)


def test_mismatched_proofs_file_is_not_relayed(hourly, world, tmp_path) -> None:
    """Runs first: the reservation is still open (the next test settles it)."""
    wrong_dir = tmp_path / "wrong"
    c = hourly["commitments"][0]
    forged = build_commitment(
        c.report.epoch,
        [test_leaf(hourly["node"], c.report.epoch, 10_000, 6_000, 10_000, 7_200_000, 9_999)],
        c.report.config_version,
    )
    write_proofs(
        wrong_dir,
        c.report.epoch,
        proofs_document(forged, chain_id=chain.id, oracle_hub="0x0", signers=[], attestation=None),
    )
    plan = _plan(world, wrong_dir)
    assert plan.proofs == [] and plan.settlements == []
    assert any("the chain attested" in reason for reason in plan.waiting)


def test_keeper_proves_then_settles_once(hourly, world, proofs_dir, buyer) -> None:
    system = hourly["system"]
    first = _plan(world, proofs_dir)
    assert len(first.proofs) == 1 and first.settlements == []  # prove before settling
    node, token = hourly["node"], hourly["token"]
    epochs = system.capacity.windowEpochs(token)
    with world["sessions"]() as session:  # four epochs: one range, its first and last leaf
        params = session.get(Action, first.proofs[0]).params
    assert params["range"] is True
    assert [leaf["epoch"] for leaf in params["leaves"]] == [epochs[0], epochs[1]]
    assert _relay_all(world, first.proofs) == ["confirmed"]
    assert all(system.capacity.isEpochProven(node, e) for e in range(epochs[0], epochs[1] + 1))
    assert system.capacity.obligationOf(node, token)["deliveredMilliGpuHours"] == 7_000

    second = _plan(world, proofs_dir)
    assert second.proofs == [] and len(second.settlements) == 1
    balance_before = system.stablecoin.balanceOf(buyer)
    assert _relay_all(world, second.settlements) == ["confirmed"]
    settled = system.capacity.reservation(hourly["reservation"])
    assert settled["settled"]
    # 10 reserved, 7 delivered: 3 GPU-hours short at 2 tUSD, plus the 20% penalty.
    assert system.stablecoin.balanceOf(buyer) - balance_before == 3 * PRICE * 12 // 10

    Indexer(world["chain"], world["sessions"]).step()
    third = _plan(world, proofs_dir)
    assert third.proofs == [] and third.settlements == []


def _leaf(epoch: int) -> tuple[NodeLeaf, list[str]]:
    return test_leaf(1, epoch, milli_gpu_hours=1), []


def test_runs_of_four_epochs_or_more_are_proven_from_two_leaves() -> None:
    """A run of unproven epochs goes as one range from its first to its last leaf (leaves
    missing between are covered by the counters); a proven epoch ends a run; a short span
    goes leaf by leaf."""
    unproven = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]  # 6 was proven already
    provable = [_leaf(e) for e in (1, 2, 4, 5, 7, 8, 9, 12)]  # 3, 10, 11: no leaf here
    ranges, batches = proof_groups(unproven, provable)
    assert [[leaf.epoch for leaf, _ in r] for r in ranges] == [[1, 5], [7, 12]]
    assert batches == []
    ranges, batches = proof_groups([1, 2, 3, 5, 6], [_leaf(e) for e in (1, 2, 3, 5, 6)])
    assert ranges == [] and [[leaf.epoch for leaf, _ in b] for b in batches] == [[1, 2, 3, 5, 6]]
    ranges, batches = proof_groups([1, 2, 3, 4], [_leaf(2)])  # one leaf: itself, leaf by leaf
    assert ranges == [] and [[leaf.epoch for leaf, _ in b] for b in batches] == [[2]]


def test_a_range_reads_only_the_files_of_its_two_ends() -> None:
    """provable_leaves reads epoch files from each end of a run until it finds a leaf: a
    168-epoch window reads 2 files, not 168; one with ends missing reads past them; a span
    too short for a range reads the files between, and so does a short run."""
    here = set(range(1, 169)) - {1, 2, 168}  # the oracle excluded the node at 1, 2 and 168

    def reader(available: set[int]) -> tuple[list[int], Any]:
        read: list[int] = []

        def leaf_of(epoch: int) -> tuple[NodeLeaf, list[str]] | None:
            read.append(epoch)
            return _leaf(epoch) if epoch in available else None

        return read, leaf_of

    read, leaf_of = reader(set(range(1, 169)))
    got = provable_leaves(list(range(1, 169)), leaf_of)
    assert [leaf.epoch for leaf, _ in got] == [1, 168] and sorted(read) == [1, 168]
    read, leaf_of = reader(here)
    got = provable_leaves(list(range(1, 169)), leaf_of)
    assert [leaf.epoch for leaf, _ in got] == [3, 167] and sorted(read) == [1, 2, 3, 167, 168]
    # Ends 3 epochs apart: no range, so every leaf between is proven too.
    read, leaf_of = reader({1, 2, 3})
    got = provable_leaves([1, 2, 3, 4, 5, 6], leaf_of)
    assert [leaf.epoch for leaf, _ in got] == [1, 2, 3] and sorted(read) == [1, 2, 3, 4, 5, 6]
    read, leaf_of = reader({5, 6, 7})
    assert [leaf.epoch for leaf, _ in provable_leaves([5, 6, 7], leaf_of)] == [5, 6, 7]
