"""The oracle daemon against a live deployment: report_once, the CLI, the loop.

No fn_isolation here: the daemon acts on the chain from its own connection (and
in two tests from its own process), so a snapshot revert would pull state from
under it. Tests in this module run in order and build on each other's epochs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from brownie import chain

from gpucap.attestation import EpochReport
from gpucap.deployment import REPO_ROOT
from gpucap.devchain import dev_private_key
from oracle.chain import ChainClient
from oracle.collectors import SimulatedFleet
from oracle.config import OracleSettings
from oracle.errors import AttestationRejected, QuorumUnavailable
from oracle.proofs import read_proofs
from oracle.reporter import Reporter, ReportStatus, build_reporter
from tests.oracle.hub_helpers import end_epoch

pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

ACQUISITION_COST = 250_000 * 10**6
ACQUIRED_AT = 1_700_000_000


@pytest.fixture(scope="module")
def world(live_deployment, operator):
    """The live deployment with two registered 8-GPU H100 nodes (ids 1 and 2)."""
    system = live_deployment.system
    h100 = system.class_ids["H100-SXM-80GB"]
    for key in (0xA1, 0xA2):
        system.registry.registerNode(
            h100,
            8,
            b"eu-west".ljust(32, b"\0"),
            ACQUISITION_COST,
            ACQUIRED_AT,
            f"0x{key:040x}",
            {"from": operator},
        )
    return live_deployment


@pytest.fixture(scope="module")
def hub(world):
    return world.system.oracle_hub


@pytest.fixture(scope="module")
def proofs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("oracle-epochs")


@pytest.fixture(scope="module")
def settings(world, proofs_dir):
    return OracleSettings(
        rpc_url=world.rpc_url, manifest_path=world.manifest_path, proofs_dir=proofs_dir
    )


@pytest.fixture(scope="module")
def reporter(settings):
    return build_reporter(settings)


def oracle_env(world, proofs_dir, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        GPUCAP_ORACLE_RPC_URL=world.rpc_url,
        GPUCAP_ORACLE_MANIFEST_PATH=str(world.manifest_path),
        GPUCAP_ORACLE_PROOFS_DIR=str(proofs_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def test_nothing_to_do_while_first_epoch_runs(hub, reporter):
    assert hub.currentEpoch() == 1
    outcome = reporter.report_once()
    assert outcome.status is ReportStatus.NOTHING_TO_DO
    assert hub.lastAttestedEpoch() == 0


def test_attests_ended_epoch_and_writes_verifiable_proofs(hub, reporter, proofs_dir, world):
    epoch = end_epoch(hub)
    outcome = reporter.report_once()

    assert outcome.status is ReportStatus.ATTESTED
    assert outcome.epoch == epoch
    assert hub.lastAttestedEpoch() == epoch
    receipt = chain.get_transaction(outcome.tx_hash)
    assert receipt.status == 1
    assert receipt.events["EpochAttested"]["transmitter"] == reporter.transmitter.address

    doc = read_proofs(proofs_dir, epoch)
    assert outcome.proofs_path == proofs_dir / f"{epoch}.json"
    assert doc["report"]["root"] == hub.epochAttestation(epoch)[0]
    assert doc["attestation"]["txHash"] == outcome.tx_hash
    assert doc["chainId"] == chain.id and doc["oracleHub"] == hub.address
    assert [leaf["nodeId"] for leaf in doc["leaves"]] == [1, 2]
    assert doc["tree"]["format"] == "standard-v1"
    for leaf in doc["leaves"]:
        values = (
            leaf["nodeId"],
            leaf["epoch"],
            leaf["uptimeBps"],
            leaf["utilizationBps"],
            leaf["sampleCoverageBps"],
            leaf["energyWh"],
            leaf["milliGpuHours"],
        )
        assert hub.verifyLeaf(values, leaf["proof"])
        hub.requireLeaf(values, leaf["proof"])
    # 8 GPUs up (at most) for a 60 s epoch: ≤ 8 × 60 s → ≤ 133 milli-GPU-hours each
    assert all(0 < leaf["milliGpuHours"] <= 133 for leaf in doc["leaves"])
    assert doc["excluded"] == []
    assert set(doc["efficiency"]) == {"1", "2"}
    assert all(e["busyGpuHoursPerMWh"] > 0 for e in doc["efficiency"].values())


def test_running_again_for_the_same_epoch_posts_nothing(hub, reporter):
    last = hub.lastAttestedEpoch()
    height = chain.height
    nonce = reporter.chain.w3.eth.get_transaction_count(reporter.transmitter.address)

    outcome = reporter.report_once()

    assert outcome.status is ReportStatus.NOTHING_TO_DO
    assert hub.lastAttestedEpoch() == last
    assert chain.height == height
    assert reporter.chain.w3.eth.get_transaction_count(reporter.transmitter.address) == nonce


def test_catches_up_missed_epochs_in_order(hub, reporter):
    last = hub.lastAttestedEpoch()
    for _ in range(3):
        end_epoch(hub)
    epochs = [reporter.report_once().epoch for _ in range(3)]
    assert epochs == [last + 1, last + 2, last + 3]
    assert reporter.report_once().status is ReportStatus.NOTHING_TO_DO


def test_rejection_carries_the_decoded_custom_error(hub, reporter):
    current = hub.currentEpoch()
    report = EpochReport(current, b"\x01" * 32, 1, 1, 1, hub.configVersion())
    with pytest.raises(AttestationRejected) as info:
        reporter.chain.post_attestation(report, [], reporter.transmitter, 30)
    assert info.value.error_name == "OracleEpochNotEnded"
    assert info.value.reason.args == {"epoch": current, "endsAt": hub.epochEnd(current)}
    assert "OracleEpochNotEnded(epoch=" in str(info.value)


def test_keys_that_cannot_reach_quorum_post_nothing(hub, settings):
    end_epoch(hub)
    last = hub.lastAttestedEpoch()
    chain_client = ChainClient.connect(settings.rpc_url, str(settings.manifest_path))
    outsider = Reporter(chain_client, SimulatedFleet(), [dev_private_key(5)], settings.proofs_dir)
    with pytest.raises(QuorumUnavailable) as info:
        outsider.report_once()
    assert (info.value.members, info.value.quorum) == (0, 2)
    assert hub.lastAttestedEpoch() == last


def test_cli_run_once_in_a_subprocess(hub, world, proofs_dir):
    """Attests the epoch the previous test left pending."""
    last = hub.lastAttestedEpoch()
    result = subprocess.run(
        [sys.executable, "-m", "oracle", "run", "--once"],
        cwd=REPO_ROOT,
        env=oracle_env(world, proofs_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert hub.lastAttestedEpoch() == last + 1
    assert (proofs_dir / f"{last + 1}.json").exists()
    assert f"epoch {last + 1} attested" in result.stderr


def test_daemon_loop_attests_then_stops_on_sigterm(hub, world, proofs_dir):
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    env = oracle_env(world, proofs_dir, GPUCAP_ORACLE_POLL_INTERVAL_SECONDS="0.2")
    process = subprocess.Popen(
        [sys.executable, "-m", "oracle", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while hub.lastAttestedEpoch() < target and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hub.lastAttestedEpoch() == target
        time.sleep(1.0)  # several more ticks: nothing left to post
        assert hub.lastAttestedEpoch() == target
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "received SIGTERM" in output
    assert "oracle daemon stopped" in output
    assert output.count(" attested: ") == 1
