"""End to end: three oracle processes, quorum 2 of 3, on anvil, one killed mid-epoch.

Also: the board's Redis stopped (SIGSTOP) across an epoch boundary; every oracle
logs why its step failed, keeps running, and the quorum attests once it is back.
And an oracle started while the node is unreachable waits for it instead of exiting.
And the chain node stopped (SIGSTOP) across an epoch boundary: the oracles wait it
out and attest what ended meanwhile, in order, once each.
And an oracle stopped across two epochs writes, once back, the proofs files of the
epochs the others attested meanwhile, each rebuilt from the board and matching the
on-chain root; a board entry that does not rebuild the root is never written.

The epoch's primary transmitter publishes its signature and is then killed with
SIGKILL before a quorum exists; the two others reach the quorum through Redis,
the next in the rotation takes over after the fallback delay, the epoch is
attested exactly once, and a node's proof from an oracle's proofs file verifies
on-chain with OracleHub.verifyLeaf.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from eth_account import Account

from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain
from gpucap.attestation import NodeLeaf, build_commitment, dev_oracle_keys
from gpucap.deployment import REPO_ROOT
from oracle.chain import ChainClient
from oracle.config import OracleSettings
from oracle.proofs import proofs_path, read_proofs
from oracle.reporter import ReportStatus, build_reporter
from tests.oracle.hub_helpers import end_epoch
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

NODES = 6
FALLBACK_S = 3
# Every proofs folder an oracle of this module's deployment wrote: the tests share one
# hub, and an oracle builds its cumulative counters on attested leaves it may find only
# in an earlier test's folders (GPUCAP_ORACLE_PEER_PROOFS_DIRS, as a deployment's
# oracles read each other's published folders).
FOLDERS: list[str] = []


def published_folder(folder) -> str:
    FOLDERS.append(str(folder))
    return json.dumps(FOLDERS)


@pytest.fixture(scope="module")
def world(live_deployment, operator):
    system = live_deployment.system
    classes = list(system.class_ids.values())
    for i in range(NODES):
        system.registry.registerNode(
            classes[i % len(classes)],
            8,
            b"eu-west".ljust(32, b"\0"),
            250_000 * 10**6,
            1_700_000_000,
            f"0x{0xB0 + i:040x}",
            {"from": operator},
        )
    return live_deployment


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(devchain.free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def oracle_process(
    world, redis_server, tmp_path, key: str, name: str, **extra: str
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        GPUCAP_ORACLE_RPC_URL=world.rpc_url,
        GPUCAP_ORACLE_MANIFEST_PATH=str(world.manifest_path),
        GPUCAP_ORACLE_PROOFS_DIR=str(tmp_path / name / "epochs"),
        GPUCAP_ORACLE_PEER_PROOFS_DIRS=published_folder(tmp_path / name / "epochs"),
        GPUCAP_ORACLE_STATE_PATH=str(tmp_path / name / "state.sqlite3"),
        GPUCAP_ORACLE_KEYS=key,
        GPUCAP_ORACLE_QUORUM_REDIS_URL=redis_server.url,
        GPUCAP_ORACLE_TRANSMIT_FALLBACK_SECONDS=str(FALLBACK_S),
        GPUCAP_ORACLE_POLL_INTERVAL_SECONDS="0.2",
        GPUCAP_ORACLE_RETRY_DELAY_SECONDS="0.5",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "oracle", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_cleanly(processes: dict[str, subprocess.Popen], names) -> None:
    """SIGTERM: each daemon finishes its step and exits 0."""
    for name in names:
        processes[name].send_signal(signal.SIGTERM)
    for name in names:
        assert processes[name].wait(timeout=30) == 0


def kill_leftovers(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_quorum_survives_the_primary_killed_mid_epoch(world, redis_server, tmp_path):
    hub = world.system.oracle_hub
    settings = OracleSettings(
        rpc_url=world.rpc_url,
        manifest_path=world.manifest_path,
        proofs_dir=tmp_path / "bootstrap",
        state_path=tmp_path / "bootstrap.sqlite3",
        peer_proofs_dirs=json.loads(published_folder(tmp_path / "bootstrap")),
    )
    # One epoch attested first, so every oracle agrees the next one is last + 1.
    end_epoch(hub)
    bootstrap = build_reporter(settings)
    assert bootstrap.report_once().status is ReportStatus.ATTESTED
    assert hub.quorum() == 2 and len(hub.oracles()) == 3

    end_epoch(hub)
    target = hub.lastAttestedEpoch() + 1
    keys = sorted(dev_oracle_keys(), key=lambda k: int(Account.from_key(k).address, 16))
    primary, rank1, rank2 = (keys[(target + r) % 3] for r in range(3))
    address = {k: Account.from_key(k).address for k in keys}
    board = redis.Redis.from_url(redis_server.url)

    def published() -> set[str]:
        found: set[str] = set()
        for key in board.scan_iter(f"gpucap:oracle:*:epoch:{target}"):
            found |= {signer.decode() for signer in board.hkeys(key)}
        return found

    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["primary"] = oracle_process(world, redis_server, tmp_path, primary, "primary")
        wait_for(lambda: address[primary] in published(), 60, "the primary's signature")
        time.sleep(0.5)
        assert hub.lastAttestedEpoch() == target - 1  # alone it is below quorum
        processes["primary"].kill()  # SIGKILL mid-epoch
        processes["primary"].wait()

        processes["rank1"] = oracle_process(world, redis_server, tmp_path, rank1, "rank1")
        processes["rank2"] = oracle_process(world, redis_server, tmp_path, rank2, "rank2")
        wait_for(lambda: hub.lastAttestedEpoch() >= target, 90, f"epoch {target} attested")
        time.sleep(2 * FALLBACK_S + 1)  # long enough for rank 2 to have acted, had it wanted to

        events = bootstrap.chain.hub.events.EpochAttested.get_logs(
            from_block=0, argument_filters={"epoch": target}
        )
        assert len(events) == 1
        assert events[0]["args"]["transmitter"] == address[rank1]
        stop_cleanly(processes, ("rank1", "rank2"))
    finally:
        kill_leftovers(processes)

    logs = {name: (tmp_path / f"{name}.log").read_text() for name in processes}
    assert "transmitting as fallback rank 1" in logs["rank1"], logs["rank1"]
    assert f"epoch {target} attested:" in logs["rank1"]
    assert f"epoch {target} attested" not in logs["rank2"]
    assert "DISAGREES" not in logs["rank1"] + logs["rank2"]

    # Any node's proof, from either surviving oracle's file, verifies on-chain.
    root = hub.epochAttestation(target)[0]
    for name in ("rank1", "rank2"):
        doc = read_proofs(tmp_path / name / "epochs", target)
        assert doc["report"]["root"] == root
        # the non-transmitter recorded the winning transaction too
        assert doc["attestation"]["txHash"] == events[0]["transactionHash"].to_0x_hex()
        assert len(doc["leaves"]) == NODES
        leaf = doc["leaves"][-1]
        values = NodeLeaf.from_json(leaf).values()
        assert hub.verifyLeaf(values, leaf["proof"])
    tampered = (*values[:3], values[3] + 1, *values[4:])  # utilization one bps higher
    assert not hub.verifyLeaf(tampered, leaf["proof"])


def test_oracles_survive_a_redis_stall_across_an_epoch_boundary(world, redis_server, tmp_path):
    hub = world.system.oracle_hub
    keys = dev_oracle_keys()
    names = [f"oracle{i}" for i in range(len(keys))]
    processes: dict[str, subprocess.Popen] = {}
    assert redis_server.process is not None

    def logs() -> dict[str, str]:
        return {n: (tmp_path / f"{n}.log").read_text() for n in names}

    try:
        for name, key in zip(names, keys, strict=True):
            processes[name] = oracle_process(
                world,
                redis_server,
                tmp_path,
                key,
                name,
                GPUCAP_ORACLE_QUORUM_REDIS_TIMEOUT_SECONDS="1",
            )
        before = end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() >= before, 90, f"epoch {before} attested")

        # The board stalls (no reset, no refusal: reads time out) as the next epoch ends.
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            stalled = end_epoch(hub)

            wait_for(
                lambda: all("quorum board unreachable" in text for text in logs().values()),
                60,
                "every oracle to report the stalled board",
            )
            assert hub.lastAttestedEpoch() < stalled
            assert all(p.poll() is None for p in processes.values()), logs()
        finally:
            redis_server.process.send_signal(signal.SIGCONT)

        wait_for(lambda: hub.lastAttestedEpoch() >= stalled, 90, f"epoch {stalled} attested")
        after = end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() >= after, 90, f"epoch {after} attested")
        for name in names:
            assert processes[name].poll() is None, logs()[name]
        stop_cleanly(processes, names)
    finally:
        kill_leftovers(processes)
    text = logs()
    assert all("TimeoutError" in text[n] for n in names), text
    assert all("Traceback" not in text[n] for n in names), text


def test_oracles_ride_out_a_stopped_chain_across_an_epoch_boundary(world, redis_server, tmp_path):
    """anvil stopped (SIGSTOP: requests hang, nothing refuses) as an epoch ends: every
    oracle logs why its steps fail and stays up; after SIGCONT the quorum attests the
    epoch that ended meanwhile and the next one, in order, each exactly once."""
    from brownie import chain
    from brownie.network import rpc

    hub = world.system.oracle_hub
    keys = dev_oracle_keys()
    names = [f"oracle{i}" for i in range(len(keys))]
    processes: dict[str, subprocess.Popen] = {}
    anvil = rpc.process
    assert anvil is not None

    def logs() -> dict[str, str]:
        return {n: (tmp_path / f"{n}.log").read_text() for n in names}

    try:
        for name, key in zip(names, keys, strict=True):
            processes[name] = oracle_process(
                world, redis_server, tmp_path, key, name, GPUCAP_ORACLE_RPC_TIMEOUT_SECONDS="1"
            )
        before = end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() >= before, 90, f"epoch {before} attested")

        # The current epoch ends two seconds of wall clock from now: while anvil is stopped.
        crossing = hub.currentEpoch()
        chain.sleep(max(0, hub.epochEnd(crossing) - chain[-1].timestamp - 2))
        chain.mine()
        assert hub.currentEpoch() == crossing
        anvil.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: all("chain unreachable" in text for text in logs().values()),
                60,
                "every oracle to report the stalled node",
            )
            assert all(p.poll() is None for p in processes.values()), logs()
        finally:
            anvil.send_signal(signal.SIGCONT)
        chain.mine()  # the chain's clock went on: the first block after it is past the end
        assert hub.currentEpoch() > crossing
        chain.sleep(int(hub.epochLengthSeconds()))  # and one more epoch ends before catch-up
        chain.mine()
        target = hub.currentEpoch() - 1
        assert target > crossing
        wait_for(lambda: hub.lastAttestedEpoch() >= target, 120, f"epochs up to {target}")
        for name in names:
            assert processes[name].poll() is None, logs()[name]
        stop_cleanly(processes, names)
    finally:
        anvil.send_signal(signal.SIGCONT)
        kill_leftovers(processes)

    # Every epoch from the one before the stop to the target: attested once, none skipped.
    client = ChainClient.connect(world.rpc_url, str(world.manifest_path))
    for epoch in range(before, target + 1):
        events = client.hub.events.EpochAttested.get_logs(
            from_block=0, argument_filters={"epoch": epoch}
        )
        assert len(events) == 1, (epoch, events)
        assert hub.epochAttestation(epoch)[0] != "0x" + "00" * 32
    text = logs()
    assert all("Traceback" not in text[n] for n in names), text


def test_an_oracle_started_while_the_node_is_down_waits_for_it(world, tmp_path):
    """Started with the node unreachable, the daemon says why and retries instead of
    exiting; once the node answers it attests (alone: all three dev keys, no board)."""
    hub = world.system.oracle_hub
    proxy = TcpProxy(int(world.rpc_url.rsplit(":", 1)[1]))  # cut until restored
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        GPUCAP_ORACLE_RPC_URL=f"http://127.0.0.1:{proxy.port}",
        GPUCAP_ORACLE_MANIFEST_PATH=str(world.manifest_path),
        GPUCAP_ORACLE_PROOFS_DIR=str(tmp_path / "epochs"),
        GPUCAP_ORACLE_PEER_PROOFS_DIRS=published_folder(tmp_path / "epochs"),
        GPUCAP_ORACLE_STATE_PATH=str(tmp_path / "state.sqlite3"),
        GPUCAP_ORACLE_POLL_INTERVAL_SECONDS="0.2",
        GPUCAP_ORACLE_RETRY_DELAY_SECONDS="0.5",
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "oracle.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "oracle", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: log_path.read_text().count("cannot start yet") >= 2,
            60,
            "the daemon to retry its start",
        )
        assert process.poll() is None, log_path.read_text()
        proxy.restore()
        ended = end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() >= ended, 90, f"epoch {ended} attested")
        stop_cleanly({"oracle": process}, ["oracle"])
    finally:
        proxy.cut()
        kill_leftovers({"oracle": process})


def test_an_oracle_back_from_a_restart_writes_the_epochs_it_missed(world, redis_server, tmp_path):
    hub = world.system.oracle_hub
    keys = dev_oracle_keys()
    names = [f"oracle{i}" for i in range(len(keys))]
    processes: dict[str, subprocess.Popen] = {}
    board = redis.Redis.from_url(redis_server.url)
    folder = {name: tmp_path / name / "epochs" for name in names}
    restarted = names[0]

    def start(name: str, key: str) -> None:
        processes[name] = oracle_process(world, redis_server, tmp_path, key, name)

    def root_of(epoch: int) -> str:
        return hub.epochAttestation(epoch)[0]

    try:
        for name, key in zip(names, keys, strict=True):
            start(name, key)
        before = end_epoch(hub)
        wait_for(lambda: hub.lastAttestedEpoch() >= before, 90, f"epoch {before} attested")

        stop_cleanly(processes, [restarted])
        missed = []
        for _ in range(2):  # the two others attest while it is down
            missed.append(end_epoch(hub))
            wait_for(lambda: hub.lastAttestedEpoch() >= missed[-1], 90, f"epoch {missed[-1]}")
        assert not any(proofs_path(folder[restarted], e).exists() for e in missed)
        # The others stop too (their last step done), so none re-publishes what follows.
        stop_cleanly(processes, names[1:])

        # The board's entries for the second missed epoch are tampered with (one leaf
        # credited a GPU-hour more, report rebuilt to match): they no longer lead to the
        # attested root, so that epoch must not be written from them.
        tampered = missed[1]
        [key] = list(board.scan_iter(f"gpucap:oracle:*:epoch:{tampered}"))
        genuine = board.hgetall(key)
        for signer, raw in genuine.items():
            entry = json.loads(raw)
            entry["leaves"][0][10] += 1  # milliGpuHours
            entry["leaves"][0][11] += 1  # cumMilliGpuHours
            leaves = [NodeLeaf.from_values(row) for row in entry["leaves"]]
            forged = build_commitment(tampered, leaves, entry["report"]["configVersion"])
            entry["report"]["root"] = "0x" + forged.report.root.hex()
            board.hset(key, signer, json.dumps(entry))

        for name, key in zip(names, keys, strict=True):
            start(name, key)
        wait_for(
            lambda: proofs_path(folder[restarted], missed[0]).exists(),
            60,
            f"epoch {missed[0]}'s file in the restarted oracle's folder",
        )
        log_path = tmp_path / f"{restarted}.log"
        wait_for(
            lambda: (
                f"epoch {tampered}: no proofs file here and no board entry" in log_path.read_text()
            ),
            60,
            "the tampered epoch refused",
        )
        assert not proofs_path(folder[restarted], tampered).exists()

        for signer, raw in genuine.items():
            board.hset(key, signer, raw)
        after = end_epoch(hub)  # and it takes part in attesting again
        wait_for(lambda: hub.lastAttestedEpoch() >= after, 90, f"epoch {after} attested")
        stop_cleanly(processes, names)
    finally:
        kill_leftovers(processes)

    text = log_path.read_text()
    assert f"epoch {missed[0]}: proofs file recovered from the quorum board" in text, text
    assert "Traceback" not in text, text
    # Every file in the restarted oracle's folder commits to the attested root and its
    # leaves verify on-chain; the recovered one names the attesting transaction.
    files = sorted(folder[restarted].glob("*.json"))
    assert {f"{e}.json" for e in (before, missed[0], after)} <= {f.name for f in files}
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["report"]["root"] == root_of(doc["epoch"]), path
        leaf = doc["leaves"][0]
        assert hub.verifyLeaf(NodeLeaf.from_json(leaf).values(), leaf["proof"])
    recovered = read_proofs(folder[restarted], missed[0])
    assert recovered["recovered"]["from"] == "quorum board"
    chain = ChainClient.connect(world.rpc_url, str(world.manifest_path))
    [event] = chain.hub.events.EpochAttested.get_logs(
        from_block=0, argument_filters={"epoch": missed[0]}
    )
    assert recovered["attestation"]["txHash"] == event["transactionHash"].to_0x_hex()
    assert len(recovered["signers"]) >= hub.quorum()
