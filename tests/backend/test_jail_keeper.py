"""The jail keeper through real parts: anvil, the deployed system (ChallengeJail holding
JAILER_ROLE), Redis, a worker process (beat → indexer, which ingests the oracle's published
leaves → settlement keeper → jail keeper → relayer) and the API over HTTP.

The world: node A fails work challenges in 3 of 4 attested epochs (1, 0, 2, 3 failures;
DeployConfig's rule jails at 3 failing epochs within 24), node B passes them all, and the
fourth epoch's file is published only after the keeper has seen three: with two failing
epochs A must not be jailed. Then A is jailed exactly once, on the evidence of its three
failing epochs (their leaf hashes' hash in the registry's event), and the API shows it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from brownie import chain, web3
from sqlalchemy import select
from web3.logs import DISCARD

from backend.db.models import Action, ActionKind, LeafIngestRow
from backend.db.session import get_sessionmaker
from backend.services.health import KEEPER_KEY
from gpucap.attestation import Cumulative, EpochCommitment, build_commitment, leaf_hash
from oracle.proofs import proofs_document, write_proofs
from tests.backend.backend_helpers import Stack, running_stack, wait_for
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, end_epoch, signatures
from tests.support.leaves import test_leaf

USD = 10**6
FAILURES_A = (1, 0, 2, 3)
JAILED = 2


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
def world(live_deployment, operator, tmp_path_factory) -> dict[str, Any]:
    s = live_deployment.system
    hub = s.oracle_hub
    a, b = (
        s.registry.registerNode(
            s.class_ids["H100-SXM-80GB"],
            8,
            b"eu-west".ljust(32, b"\0"),
            240_000 * USD,
            chain[-1].timestamp - 86_400,
            "0x" + key * 20,
            {"from": operator},
        ).events["NodeRegistered"]["nodeId"]
        for key in ("a7", "b7")
    )
    bases = {a: Cumulative(), b: Cumulative()}
    commitments = []
    for failed in FAILURES_A:
        epoch = end_epoch(hub)
        leaves = []
        for node, f in ((a, failed), (b, 0)):
            leaf = test_leaf(
                node,
                epoch,
                milli_gpu_hours=0 if f else 8_000,
                passed=4 - f,
                failed=f,
                base=bases[node],
            )
            bases[node] = Cumulative.of(leaf)
            leaves.append(leaf)
        c = build_commitment(epoch, leaves, hub.configVersion())
        hub.attest(
            c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]), {"from": operator}
        )
        commitments.append(c)
    proofs_dir = tmp_path_factory.mktemp("epochs")
    for c in commitments[:3]:
        _publish(proofs_dir, s, c)
    return {"system": s, "a": a, "b": b, "commitments": commitments, "proofs": proofs_dir}


@pytest.fixture(scope="module")
def stack(world, live_deployment, tmp_path_factory) -> Iterator[Stack]:
    env = {
        "GPUCAP_PROOFS_DIR": str(world["proofs"]),
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_RETRY_SECONDS": "3600",
        "GPUCAP_LEAF_INGEST_RETRY_SECONDS": "0.5",
    }
    with running_stack(tmp_path_factory.mktemp("jails"), live_deployment, env) as s:
        yield s


def _sessions(stack: Stack):
    return get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])


def _jail_rows(stack: Stack) -> list[Action]:
    with _sessions(stack)() as session:
        return list(
            session.scalars(select(Action).where(Action.kind == ActionKind.JAIL_NODE.value)).all()
        )


def _ingested(stack: Stack, epochs: list[int]) -> bool:
    with _sessions(stack)() as session:
        rows = session.scalars(select(LeafIngestRow).where(LeafIngestRow.epoch.in_(epochs))).all()
        return len(rows) == len(epochs) and all(r.status == "complete" for r in rows)


def _keeper_ran_after(stack: Stack, moment: float) -> bool:
    raw = redis.Redis.from_url(stack.redis.url).get(KEEPER_KEY)
    return raw is not None and json.loads(raw)["at"] > moment


def test_keeper_jails_the_failing_node_once_on_its_evidence(stack, world):
    s, a, b = world["system"], world["a"], world["b"]
    commitments = world["commitments"]
    epochs = [c.report.epoch for c in commitments]
    # Three epochs published, two of them failing for A: below the rule, nothing is sent.
    wait_for(lambda: _ingested(stack, epochs[:3]), 30, "the first three epochs ingested")
    after = time.time()
    wait_for(lambda: _keeper_ran_after(stack, after), 30, "a keeper run after the ingest")
    assert _jail_rows(stack) == []
    assert s.registry.nodeStatus(a) == 1
    # The fourth epoch's file: a third failing epoch.
    _publish(world["proofs"], s, commitments[3])

    def confirmed() -> Action | None:
        rows = _jail_rows(stack)
        return rows[0] if rows and rows[0].status == "confirmed" else None

    action = wait_for(confirmed, 60, "the keeper's jail call to be mined")
    failing = [e for e, f in zip(epochs, FAILURES_A, strict=True) if f]
    assert action.params["node_id"] == a and action.params["epochs"] == failing
    assert s.registry.nodeStatus(a) == JAILED
    assert s.registry.nodeStatus(b) == 1
    leaves = [
        next(lf for lf in c.leaves if lf.node_id == a)
        for c in commitments
        if c.report.epoch in failing
    ]
    evidence = web3.keccak(b"".join(leaf_hash(lf) for lf in leaves))
    receipt = web3.eth.get_transaction_receipt(action.tx_hash)
    jail = web3.eth.contract(address=s.jail.address, abi=s.jail.abi)
    registry = web3.eth.contract(address=s.registry.address, abi=s.registry.abi)
    (ev,) = jail.events.NodeJailedForChallenges().process_receipt(receipt, errors=DISCARD)
    assert (ev.args.nodeId, ev.args.evidenceHash, list(ev.args.epochs), list(ev.args.failed)) == (
        a,
        evidence,
        failing,
        [1, 2, 3],
    )
    (jailed,) = registry.events.NodeJailed().process_receipt(receipt, errors=DISCARD)
    assert (jailed.args.nodeId, jailed.args.reason, jailed.args.jailer) == (
        a,
        evidence,
        s.jail.address,
    )
    # Exactly once: the keeper ran again after the jail was mined, and planned nothing more.
    after = time.time()
    wait_for(lambda: _keeper_ran_after(stack, after), 30, "another keeper run")
    assert [r.id for r in _jail_rows(stack)] == [action.id]

    # The API's node view: jailed, with the evidence.
    def shown() -> dict[str, Any] | None:
        body = stack.get(f"/api/v1/nodes/{a}").json()
        return body if body["status"] == "jailed" and body.get("jail") else None

    body = wait_for(shown, 30, "the jail in the API")
    assert body["jail"] == {
        "reason": "0x" + evidence.hex().removeprefix("0x"),
        "jailer": s.jail.address,
        "tx_hash": action.tx_hash,
        "block_number": receipt["blockNumber"],
        "challenge_epochs": failing,
        "challenges_failed": [1, 2, 3],
        "reporter": receipt["from"],
    }
    assert stack.get(f"/api/v1/nodes/{b}").json()["jail"] is None
