"""A reorg that removes an attestation, against the real parts: anvil's ``anvil_reorg``,
three oracle processes (quorum 2 of 3, their board in Redis), and the backend's worker
(index, epoch-settlement keeper, relayer) settling a node's epochs from the oracles'
proofs files.

The reorg takes away the block of epoch T's attestation and everything after it (T's
settlement too). The oracles notice, one of them sends the same quorum-signed report
again (the others find it done), the keeper settles T again (the same row re-sent, or,
if the worker re-sent it before the oracles attested again, a new row at once: the
early one reverted on a chain without the attestation, which is no refusal of the
settlement and is not backed off), and the next epoch is attested and settled: the end
state is the one the chain would have had without the reorg (T attested once, with the
same root; the payer charged once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from brownie import chain, web3
from sqlalchemy import select

from backend.db.models import Action, ActionKind
from backend.db.session import get_sessionmaker
from gpucap.attestation import dev_oracle_keys
from scripts.deploy import DeployConfig, deploy_system, write_manifest
from tests.backend.backend_helpers import Stack, reorg_away, running_stack, wait_for
from tests.conftest import LiveDeployment
from tests.oracle.hub_helpers import end_epoch
from tests.oracle.test_oracle_quorum_e2e import kill_leftovers, oracle_process, stop_cleanly
from tests.support.brownie_network import ANVIL_PORT

pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

USD = 10**6
PRICE = 2 * USD  # per delivered GPU-hour
NAMES = ("oracle0", "oracle1", "oracle2")
HOUR = 3600


@pytest.fixture(scope="module")
def live_deployment(admin: Any, tmp_path_factory: pytest.TempPathFactory) -> LiveDeployment:
    """Half-hour epochs: only the test ends them (end_epoch), never the wall clock, so
    what the reorg removes is exactly what the test made."""
    config = replace(
        DeployConfig.for_tests(), epoch_length_seconds=HOUR // 2, capacity_window_seconds=HOUR
    )
    system = deploy_system(admin, config)
    manifest = write_manifest(system, tmp_path_factory.mktemp("deployment") / "manifest.json")
    return LiveDeployment(system, manifest, f"http://127.0.0.1:{ANVIL_PORT}")


@pytest.fixture(scope="module")
def world(live_deployment: Any, admin: Any, operator: Any, buyer: Any) -> dict[str, Any]:
    """One 8-GPU node billing ``buyer``, who approved the settlement and holds funds."""
    s = live_deployment.system
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    s.stablecoin.drip(buyer, {"from": buyer})
    node = s.registry.registerNode(
        s.class_ids["H100-SXM-80GB"],
        8,
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 86_400,
        "0x" + "c1" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    if chain[-1].timestamp <= s.oracle_hub.genesisTimestamp():
        end_epoch(s.oracle_hub)  # terms set during a real epoch (>= 1)
    s.settlement.setUsageTerms(node, buyer, PRICE, {"from": admin})
    s.settlement.approveUsage(node, PRICE, {"from": buyer})
    s.stablecoin.approve(s.settlement, 2**256 - 1, {"from": buyer})
    return {"system": s, "node": node}


@pytest.fixture(scope="module")
def oracles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracles")


@pytest.fixture(scope="module")
def stack(
    world: Any, live_deployment: Any, oracles_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folders = [str(oracles_dir / name / "epochs") for name in NAMES]
    env = {
        "GPUCAP_PROOFS_DIR": folders[0],
        "GPUCAP_PROOFS_DIRS": json.dumps(folders[1:]),
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_LEAF_INGEST_RETRY_SECONDS": "0.5",
    }
    with running_stack(tmp_path_factory.mktemp("attestation-reorg"), live_deployment, env) as s:
        yield s


def test_a_reorg_that_removes_an_attestation_ends_as_if_it_had_not_happened(
    world: Any, stack: Stack, live_deployment: Any, oracles_dir: Path, buyer: Any
) -> None:
    s, node = world["system"], world["node"]
    hub, settlement = s.oracle_hub, s.settlement
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])
    processes: dict[str, Any] = {}

    def logs() -> dict[str, str]:
        return {n: (oracles_dir / f"{n}.log").read_text() for n in processes}

    events = web3.eth.contract(address=hub.address, abi=hub.abi).events

    def attested(epoch: int) -> list[Any]:
        """EpochAttested events for ``epoch`` on the canonical chain."""
        return events.EpochAttested.get_logs(from_block=0, argument_filters={"epoch": epoch})

    def settle_rows(epoch: int) -> list[Action]:
        with sessions() as session:
            rows = session.scalars(
                select(Action).where(Action.kind == ActionKind.SETTLE_EPOCH.value)
            ).all()
        return [r for r in rows if int(r.params["epoch"]) == epoch]

    try:
        for name, key in zip(NAMES, dev_oracle_keys(), strict=True):
            processes[name] = oracle_process(live_deployment, stack.redis, oracles_dir, key, name)
        # The first epoch the oracles attest is the latest ended one; the node is billed
        # from the epoch after the one its terms were set in: T is attested and settled.
        end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() > 0, 90, "the first attestation")
        target = end_epoch(hub)
        wait_for(lambda: settlement.lastSettledEpoch(node) == target, 90, f"epoch {target} settled")
        root = hub.epochAttestation(target)[0]
        [event] = attested(target)
        [settled] = wait_for(
            lambda: (rows := settle_rows(target)) and rows[0].status == "confirmed" and rows,
            30,
            "the settlement row to be confirmed",
        )
        paid = s.stablecoin.balanceOf(buyer)
        # Every oracle has recorded T's attestation (the transmitter at once, the others
        # on their next step, which also writes the receipt into their proofs file).
        wait_for(
            lambda: all(
                (oracles_dir / n / "epochs" / f"{target}.json").exists()
                and json.loads((oracles_dir / n / "epochs" / f"{target}.json").read_text())[
                    "attestation"
                ]
                for n in NAMES
            ),
            30,
            "every oracle to record the attestation",
        )

        # The settlements the reorg takes away: T's, and T-1's too when the worker mined
        # it after T's attestation (on a busy machine it can be that late).
        with sessions() as session:
            lost = session.scalars(
                select(Action.id).where(
                    Action.kind == ActionKind.SETTLE_EPOCH.value,
                    Action.block_number >= event["blockNumber"],
                )
            ).all()
        assert settled.id in lost
        head = reorg_away(event["blockNumber"])
        # Read at the reorged head: an oracle or the worker may already be sending again.
        assert hub.lastAttestedEpoch(block_identifier=head) == target - 1
        assert settlement.lastSettledEpoch(node, block_identifier=head) < target
        # The settlement's charge is gone too.
        assert s.stablecoin.balanceOf(buyer, block_identifier=head) > paid
        if hub.currentEpoch() <= target:  # the surviving chain's clock is behind T's end
            end_epoch(hub)

        wait_for(lambda: hub.lastAttestedEpoch() >= target, 90, f"epoch {target} attested again")
        assert hub.epochAttestation(target)[0] == root
        assert len(attested(target)) == 1
        wait_for(
            lambda: settlement.lastSettledEpoch(node) >= target, 90, f"epoch {target} re-settled"
        )
        assert s.stablecoin.balanceOf(buyer) == paid  # charged once, as before the reorg
        confirmed = wait_for(
            lambda: [r for r in settle_rows(target) if r.status == "confirmed"],
            30,
            "a settlement row of the epoch to be confirmed",
        )
        # Either the same row, re-opened and executed once more, or (when the worker
        # re-sent it before the oracles attested again) that row failed on the surviving
        # chain with OracleInvalidProof and the keeper settled with a new one at once.
        rows = {r.id: r for r in settle_rows(target)}
        assert len(confirmed) == 1 and len(rows) <= 2, rows
        if confirmed[0].id != settled.id:
            assert rows[settled.id].status == "failed", rows
            assert rows[settled.id].error_code == "OracleInvalidProof", rows

        # And on: the next epoch is attested and settled.
        following = end_epoch(hub)
        wait_for(
            lambda: settlement.lastSettledEpoch(node) >= following,
            90,
            f"epoch {following} attested and settled",
        )
        assert len(attested(following)) == 1
        assert all(p.poll() is None for p in processes.values()), logs()
        stop_cleanly(processes, NAMES)
    finally:
        kill_leftovers(processes)

    text = logs()
    again_lines = [
        line
        for t in text.values()
        for line in t.splitlines()
        if "attested again after a reorg" in line
    ]
    assert len(again_lines) == 1, text  # one oracle re-sent it; the others found it done
    assert any(f"epoch {target}: its attestation" in t for t in text.values()), text
    assert all("Traceback" not in t for t in text.values()), text
    reorgs = stack.get("/health").json()["checks"]["reorgs"]  # the lost settlements
    assert reorgs["reopened_last_hour"] == len(lost) and reorgs["reopened_open"] == 0, reorgs
