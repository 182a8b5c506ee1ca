"""The oracle daemon against a live deployment: report_once, the CLI, the loop.

No fn_isolation here: the daemon acts on the chain from its own connection (and
in two tests from its own process), so a snapshot revert would pull state from
under it. Tests in this module run in order and build on each other's epochs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests
from brownie import chain, web3
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from web3.exceptions import TimeExhausted
from web3.middleware import Web3Middleware

from gpucap.attestation import EpochReport, NodeLeaf, dev_oracle_keys
from gpucap.deployment import REPO_ROOT
from gpucap.devchain import dev_private_key, free_port
from oracle.chain import ChainClient
from oracle.collectors import SimulatedFleet
from oracle.config import OracleSettings
from oracle.daemon import Daemon
from oracle.errors import AttestationRejected, ChainMovedBack, ChainReset, QuorumUnavailable
from oracle.proofs import read_proofs
from oracle.reporter import Reporter, ReportStatus, build_reporter
from oracle.state import ProgressStore
from tests.oracle.hub_helpers import end_epoch

pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

ACQUISITION_COST = 250_000 * 10**6
ACQUIRED_AT = 1_700_000_000
TRANSMITTER = Account.from_key(dev_oracle_keys()[0]).address


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
        rpc_url=world.rpc_url,
        manifest_path=world.manifest_path,
        proofs_dir=proofs_dir,
        state_path=proofs_dir / "state.sqlite3",
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
        GPUCAP_ORACLE_STATE_PATH=str(proofs_dir / "state.sqlite3"),
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
        values = NodeLeaf.from_json(leaf).values()
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


def test_a_block_replaced_while_the_hub_is_read_is_a_reorg_not_a_crash(reporter):
    """anvil_reorg unwinds, then mines back to the same height: a read at the old block
    fails although the head's number is where it was. The step must see a reorg (retried,
    a warning) rather than an unforeseen error (a traceback in the daemon's log)."""
    w3 = reporter.chain.w3
    raw = w3.provider.make_request
    snapshot = raw("evm_snapshot", [])["result"]
    raw("evm_mine", [])  # block N, about to be replaced
    replaced = w3.eth.get_block("latest")
    steps: list[dict] = []

    class Reorg(Web3Middleware):  # the node's side of the race, at the first read
        def wrap_make_request(self, make_request):
            def request(method, params):
                if method != "eth_call" or steps:
                    return make_request(method, params)
                steps.append(raw("evm_revert", [snapshot]))  # the head went away ...
                try:
                    return make_request(method, params)
                finally:  # ... and another block took its height before the step looked again
                    steps.append(raw("evm_mine", [replaced["timestamp"] + 1]))

            return request

    w3.middleware_onion.add(Reorg, name="reorg")
    try:
        with pytest.raises(ChainMovedBack) as moved:
            reporter.chain.hub_state()
    finally:
        w3.middleware_onion.remove("reorg")
    assert steps[0]["result"] is True and moved.value.block == replaced["number"]
    head = w3.eth.get_block("latest")
    assert head["number"] == replaced["number"] and head["hash"] != replaced["hash"]
    assert reporter.chain.hub_state().last_attested_epoch == hub_last(reporter)  # read again: fine


def hub_last(reporter) -> int:
    return reporter.chain.hub.functions.lastAttestedEpoch().call()


def test_epoch_windows_come_from_the_hub_schedule_read_once(hub, settings):
    """OracleHub's genesis and epoch length are immutable: a client reads them once, then
    derives every window (a backlog's ticks look at many) without asking the node."""
    client = ChainClient.connect(settings.rpc_url, str(settings.manifest_path))
    calls: list[dict] = []

    class Count(Web3Middleware):
        def wrap_make_request(self, make_request):
            def request(method, params):
                if method == "eth_call":
                    calls.append(params[0])
                return make_request(method, params)

            return request

    client.w3.middleware_onion.add(Count, name="count")
    windows = [client.epoch_window(epoch) for epoch in (1, 2, 7, 1_000)]
    read_once = [client.hub.encode_abi(name) for name in ("genesisTimestamp", "epochLengthSeconds")]
    assert [call["data"] for call in calls] == read_once
    for window in windows:
        assert window.end == hub.epochEnd(window.epoch)
        assert window.seconds == hub.epochLengthSeconds()


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
    port = free_port()
    env = oracle_env(
        world,
        proofs_dir,
        GPUCAP_ORACLE_POLL_INTERVAL_SECONDS="0.2",
        GPUCAP_ORACLE_METRICS_PORT=str(port),
    )
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

        metrics = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in text_string_to_metric_families(
                requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            )
            for s in m.samples
        }
        assert metrics[("gpucap_oracle_last_attested_epoch", ())] == target
        assert metrics[("gpucap_oracle_last_posted_epoch", ())] == target
        assert metrics[("gpucap_oracle_epoch_lag", ())] == 0
        assert metrics[("gpucap_oracle_reports_total", (("status", "attested"),))] == 1
        assert metrics[("gpucap_oracle_reports_total", (("status", "nothing_to_do"),))] >= 2
        transmitter = (
            "gpucap_oracle_signer_info",
            (("address", TRANSMITTER), ("role", "transmitter")),
        )
        assert metrics[transmitter] == 1
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["lastAttestedEpoch"] == target
        assert health.json()["transmitter"] == TRANSMITTER
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


# -- crash safety ----------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying (not an exception the daemon could catch)."""


def attested_events(reporter, epoch: int) -> int:
    """How many EpochAttested events the hub ever emitted for ``epoch``."""
    events = reporter.chain.hub.events.EpochAttested.get_logs(
        from_block=0, argument_filters={"epoch": epoch}
    )
    return len(events)


def sent_rows(proofs_dir, epoch: int) -> list[tuple[str, str]]:
    with sqlite3.connect(proofs_dir / "state.sqlite3") as db:
        return db.execute(
            "SELECT tx_hash, status FROM attempts WHERE epoch = ? ORDER BY created_at", (epoch,)
        ).fetchall()


def test_crash_between_persisting_and_sending_resends_the_same_bytes(hub, settings, proofs_dir):
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    first = build_reporter(settings)
    nonce = first.chain.w3.eth.get_transaction_count(first.transmitter.address)

    def die(signed):
        raise Crash

    first.chain.send = die
    with pytest.raises(Crash):
        first.report_once()
    [(tx_hash, status)] = sent_rows(proofs_dir, target)
    assert status == "sent" and hub.lastAttestedEpoch() == target - 1

    outcome = build_reporter(settings).report_once()  # the restarted daemon

    assert outcome.status is ReportStatus.ATTESTED and outcome.epoch == target
    assert outcome.tx_hash == tx_hash  # the persisted transaction, not a new one
    assert sent_rows(proofs_dir, target) == [(tx_hash, "confirmed")]
    assert first.chain.w3.eth.get_transaction_count(first.transmitter.address) == nonce + 1
    assert read_proofs(proofs_dir, target)["attestation"]["txHash"] == tx_hash


def _start_daemon_then_kill_9_in_flight(hub, world, proofs_dir, target):
    """Automine off: the daemon sends and waits for a receipt that cannot come; kill -9."""
    web3.provider.make_request("evm_setAutomine", [False])
    env = oracle_env(world, proofs_dir, GPUCAP_ORACLE_POLL_INTERVAL_SECONDS="0.2")
    process = subprocess.Popen(
        [sys.executable, "-m", "oracle", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not sent_rows(proofs_dir, target) and time.monotonic() < deadline:
            time.sleep(0.1)
        [(tx_hash, status)] = sent_rows(proofs_dir, target)
        assert status == "sent"
        while time.monotonic() < deadline:  # persisted first, then broadcast
            try:
                web3.eth.get_transaction(tx_hash)
                break
            except Exception:  # noqa: BLE001 - not in the pool yet
                time.sleep(0.1)
    finally:
        process.kill()  # SIGKILL: no handler runs
        process.wait()
    return tx_hash


def _run_once(world, proofs_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "oracle", "run", "--once"],
        cwd=REPO_ROOT,
        env=oracle_env(world, proofs_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kill_9_while_in_flight_then_mined_while_down(hub, world, proofs_dir, reporter):
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    nonce = web3.eth.get_transaction_count(reporter.transmitter.address)
    try:
        tx_hash = _start_daemon_then_kill_9_in_flight(hub, world, proofs_dir, target)
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
    web3.provider.make_request("evm_mine", [])
    assert hub.lastAttestedEpoch() == target  # it landed while no daemon ran

    result = _run_once(world, proofs_dir)

    assert result.returncode == 0, result.stderr
    assert f"epoch {target} attested (recovered after restart): tx {tx_hash}" in result.stderr
    assert sent_rows(proofs_dir, target) == [(tx_hash, "confirmed")]
    assert web3.eth.get_transaction_count(reporter.transmitter.address) == nonce + 1
    assert attested_events(reporter, target) == 1


def test_kill_9_while_in_flight_and_tx_lost_resends_it(hub, world, proofs_dir, reporter):
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    nonce = web3.eth.get_transaction_count(reporter.transmitter.address)
    try:
        tx_hash = _start_daemon_then_kill_9_in_flight(hub, world, proofs_dir, target)
        web3.provider.make_request("anvil_dropTransaction", [tx_hash])  # the node forgot it
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
    assert hub.lastAttestedEpoch() == target - 1

    result = _run_once(world, proofs_dir)

    assert result.returncode == 0, result.stderr
    assert f"re-sending tx {tx_hash}" in result.stderr
    assert hub.lastAttestedEpoch() == target
    assert sent_rows(proofs_dir, target) == [(tx_hash, "confirmed")]
    assert web3.eth.get_transaction_count(reporter.transmitter.address) == nonce + 1
    assert attested_events(reporter, target) == 1


def _signed_tx(proofs_dir, tx_hash: str) -> dict:
    """The transaction as the oracle signed and persisted it."""
    with sqlite3.connect(proofs_dir / "state.sqlite3") as db:
        (raw,) = db.execute("SELECT raw_tx FROM attempts WHERE tx_hash = ?", (tx_hash,)).fetchone()
    return TypedTransaction.from_bytes(HexBytes(raw)).as_dict()


def test_stuck_attestation_is_replaced_with_higher_fees(hub, settings, proofs_dir, reporter):
    """Mining paused: the posted attestation stays pending; past replace_after it is
    re-signed at the same nonce with fees raised >= 25 %, and the chain takes the
    replacement. The epoch is attested once; the first attempt is retired."""
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    impatient = build_reporter(
        settings.model_copy(update={"receipt_timeout_seconds": 0.5, "replace_after_seconds": 0.2})
    )
    nonce = web3.eth.get_transaction_count(impatient.transmitter.address)
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        with pytest.raises(TimeExhausted):
            impatient.report_once()  # sent; no block comes
        [(first, status)] = sent_rows(proofs_dir, target)
        assert status == "sent"
        time.sleep(0.3)
        with pytest.raises(TimeExhausted):
            impatient.report_once()  # replaced; still no block
        rows = sent_rows(proofs_dir, target)
        assert [s for _, s in rows] == ["sent", "sent"] and rows[0][0] == first
        second = rows[1][0]
        old, new = _signed_tx(proofs_dir, first), _signed_tx(proofs_dir, second)
        assert new["nonce"] == old["nonce"] == nonce
        assert web3.eth.get_transaction(second)  # the pool swapped the original for it
        assert new["maxFeePerGas"] >= old["maxFeePerGas"] * 125 // 100
        assert new["maxPriorityFeePerGas"] >= old["maxPriorityFeePerGas"] * 125 // 100
        web3.provider.make_request("evm_mine", [])
    finally:
        web3.provider.make_request("evm_setAutomine", [True])

    outcome = impatient.report_once()

    assert outcome.status is ReportStatus.ATTESTED and outcome.epoch == target
    assert outcome.tx_hash == second
    assert sent_rows(proofs_dir, target) == [(first, "retired"), (second, "confirmed")]
    assert web3.eth.get_transaction_count(impatient.transmitter.address) == nonce + 1
    assert attested_events(impatient, target) == 1


def test_restart_after_others_attested_retires_the_stale_tx(hub, settings, proofs_dir, reporter):
    """Our tx never left; meanwhile another transmitter attested the epoch: nothing is sent."""
    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    ours = build_reporter(settings)
    ours.chain.send = lambda signed: (_ for _ in ()).throw(Crash())
    with pytest.raises(Crash):
        ours.report_once()
    # another oracle process: its own state, another transmitter (first key) than ours
    other_keys = ",".join(reversed(dev_oracle_keys()))
    other = build_reporter(
        settings.model_copy(
            update={"state_path": proofs_dir / "other.db", "keys": SecretStr(other_keys)}
        )
    )
    assert other.transmitter.address != ours.transmitter.address
    assert other.report_once().status is ReportStatus.ATTESTED
    [(stale, _)] = sent_rows(proofs_dir, target)

    outcome = build_reporter(settings).report_once()

    # nothing more for this epoch (a later one may have ended meanwhile)
    assert outcome.epoch is None or outcome.epoch > target
    assert sent_rows(proofs_dir, target) == [(stale, "retired")]
    assert attested_events(reporter, target) == 1


def reorg_away(block_number: int) -> None:
    """anvil_reorg: every block from ``block_number`` to the head replaced by an empty one
    (the same height); their transactions are gone, from the pool too."""
    depth = web3.eth.block_number - block_number + 1
    web3.provider.make_request("anvil_reorg", [depth, []])  # type: ignore[arg-type]


def test_a_reorg_that_removes_attestations_has_them_attested_again_once(
    hub, settings, proofs_dir, reporter
):
    """anvil_reorg takes away the blocks of two attestations. The oracles notice (the
    blocks' hashes changed) and send the same quorum-signed reports again, oldest first;
    any one may: here one oracle re-attests the first epoch, the other the second, and
    neither sends what the chain already holds again. The chain ends as if the reorg had
    not happened, and attestation goes on."""
    other = build_reporter(
        settings.model_copy(
            update={
                "state_path": proofs_dir / "reorg-other.sqlite3",
                "proofs_dir": proofs_dir / "reorg-other",
                "keys": SecretStr(",".join(reversed(dev_oracle_keys()))),
            }
        )
    )
    assert other.transmitter.address != reporter.transmitter.address
    posted = []
    for _ in range(2):
        end_epoch(hub)
        outcome = reporter.report_once()
        assert outcome.status is ReportStatus.ATTESTED
        posted.append(outcome)
    first, second = (p.epoch for p in posted)
    assert second == first + 1
    assert other.report_once().status is ReportStatus.NOTHING_TO_DO  # it recorded both
    roots = {e: bytes(hub.epochAttestation(e)[0]) for e in (first, second)}

    reorg_away(web3.eth.get_transaction_receipt(posted[0].tx_hash)["blockNumber"])
    assert hub.lastAttestedEpoch() == first - 1
    assert hub.epochAttestation(first)[0] == hub.epochAttestation(second)[0] == "0x" + "00" * 32

    # The empty blocks' clock is behind the time jumps end_epoch made: until the surviving
    # chain has ended `second` again, it cannot be attested there (the oracle waits).
    while hub.currentEpoch() <= first:
        end_epoch(hub)
    again = other.report_once()
    assert (again.status, again.epoch) == (ReportStatus.ATTESTED, first)
    if hub.currentEpoch() <= second:
        assert reporter.report_once().status is ReportStatus.NOTHING_TO_DO
        end_epoch(hub)
    assert web3.eth.get_transaction(again.tx_hash)["from"] == other.transmitter.address
    then = reporter.report_once()  # sees `first` back on-chain, re-sends `second` only
    assert (then.status, then.epoch) == (ReportStatus.ATTESTED, second)
    # `other` had `second` down as removed too: it finds it back and sends nothing.
    sent_by_other = web3.eth.get_transaction_count(other.transmitter.address)
    assert other.report_once().status is ReportStatus.ALREADY_ATTESTED
    assert other.report_once().status is ReportStatus.NOTHING_TO_DO
    assert web3.eth.get_transaction_count(other.transmitter.address) == sent_by_other
    for epoch in (first, second):
        assert bytes(hub.epochAttestation(epoch)[0]) == roots[epoch]
        assert attested_events(reporter, epoch) == 1  # on the surviving chain
    assert hub.lastAttestedEpoch() == second
    doc = read_proofs(proofs_dir, second)
    assert doc["attestation"]["txHash"] == then.tx_hash
    assert (
        doc["attestation"]["blockNumber"] == web3.eth.get_transaction(then.tx_hash)["blockNumber"]
    )
    assert sent_rows(proofs_dir, first)[-1][1] == "orphaned"
    # The same signed report once more is refused by the hub, by name.
    recorded = reporter.progress.attestation(first)
    with pytest.raises(AttestationRejected) as refused:
        reporter.chain.prepare_again(first, recorded.call_data, reporter.transmitter)
    assert refused.value.error_name == "OracleEpochAlreadyAttested"

    end_epoch(hub)
    after = reporter.report_once()
    assert (after.status, after.epoch) == (ReportStatus.ATTESTED, second + 1)


def test_a_state_of_another_chain_stops_the_daemon(hub, settings, proofs_dir, caplog):
    """A genesis block other than the one the state was recorded on is a reset, not a
    reorg: nothing is posted, and the daemon stops with the reason (exit code 2)."""
    chain = ChainClient.connect(settings.rpc_url, str(settings.manifest_path))
    chain_id, _, hub_address = chain.chain_identity().split(":")
    elsewhere = ProgressStore(":memory:", f"{chain_id}:0x{'11' * 32}:{hub_address}")
    stale = Reporter(
        chain, SimulatedFleet(), dev_oracle_keys(), proofs_dir / "elsewhere", progress=elsewhere
    )
    end_epoch(hub)
    nonce = web3.eth.get_transaction_count(stale.transmitter.address)
    with pytest.raises(ChainReset, match="genesis block is now"):
        stale.report_once()

    daemon = Daemon(stale, poll_interval=0.1, retry_delay=0.1)
    daemon.run()  # returns after its first step: retrying cannot help

    assert daemon.exit_code == 2
    assert "stopping: the chain's genesis block is now" in caplog.text
    assert web3.eth.get_transaction_count(stale.transmitter.address) == nonce
