"""Node agents as real processes on the simulated fleet (CPU path), judged by the oracle.

Six nodes are registered with their own node keys; one agent process per node
serves over real HTTP. The oracle's agent source (built from settings as the
daemon builds it) polls them, challenges each, and measures a window: the
honest node is credited, every liar gets no GPU-hours and a logged reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time

import pytest
import requests
from eth_account import Account
from eth_utils import keccak

from gpucap.devchain import free_port
from gpucap.gpu_ids import gpu_id
from oracle.challenges import ChallengeLedger, Challenger
from oracle.collectors.agent import AgentCollector
from oracle.config import OracleSettings
from oracle.reporter import build_reporter
from oracle.sources import build_source
from oracle.telemetry import EpochWindow

ACQUISITION_COST = 250_000 * 10**6
ACQUIRED_AT = 1_700_000_000


def sim_gpus(node_id: int) -> list[str]:
    """The simulated agent's UUIDs for a node (fleet seed 0, agent/gpus.py)."""
    return [f"GPU-sim0000-{node_id:08x}-{i:04x}" for i in range(8)]


NODE_1_GPUS = sim_gpus(1)


def node_key(node_id: int) -> str:
    return "0x" + keccak(f"gpucap test node key {node_id}".encode()).hex()


# node id -> (behaviour, extra agent settings, beside its own node key).
AGENTS = {
    1: ("honest", {}),
    2: ("fake_work", {}),
    3: ("replay", {}),
    4: ("throttle", {"GPUCAP_AGENT_THROTTLE_SECONDS": "1.0"}),
    5: ("honest", {"GPUCAP_AGENT_KEY": node_key(1)}),
    6: ("stale", {}),
    7: ("throttle", {"GPUCAP_AGENT_THROTTLE_SECONDS": "6.0"}),
    8: ("boast", {}),
    # Lists node 1's GPUs (bound to node 1 in the registry) as its own; left out of the
    # oracle's targets (its own test).
    9: ("honest", {"GPUCAP_AGENT_GPU_UUIDS": ",".join(NODE_1_GPUS)}),
}
THIEF = 9


@pytest.fixture(scope="module")
def world(live_deployment, operator):
    system = live_deployment.system
    h100 = system.class_ids["H100-SXM-80GB"]
    for node_id in AGENTS:
        system.registry.registerNode(
            h100,
            8,
            b"eu-west".ljust(32, b"\0"),
            ACQUISITION_COST,
            ACQUIRED_AT,
            Account.from_key(node_key(node_id)).address,
            {"from": operator},
        )
        # The operator binds its node's GPUs in the registry (none for the thief, whose
        # agent lists node 1's).
        if node_id != THIEF:
            gpus = [gpu_id(u) for u in sim_gpus(node_id)]
            system.registry.bindGpus(node_id, gpus, {"from": operator})
    return live_deployment


@pytest.fixture(scope="module")
def agents(world, tmp_path_factory):
    """One `python -m agent run` process per node; {node id: base URL}."""
    from brownie import chain

    logs = tmp_path_factory.mktemp("agent-logs")
    procs, urls = [], {}
    for node_id, (behaviour, extra) in AGENTS.items():
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
        env.update(
            GPUCAP_AGENT_NODE_ID=str(node_id),
            GPUCAP_AGENT_CHAIN_ID=str(chain.id),
            GPUCAP_AGENT_PORT=str(port),
            GPUCAP_AGENT_KEY=node_key(node_id),
            GPUCAP_AGENT_BEHAVIOUR=behaviour,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        with open(logs / f"agent-{node_id}.log", "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "agent", "run"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        urls[node_id] = f"http://127.0.0.1:{port}"
    try:
        for url in urls.values():
            # Nine interpreters importing numpy at once on a shared machine: generous.
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(f"{url}/health", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"agent at {url} never came up"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for node_id, proc in zip(AGENTS, procs, strict=True):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                text = (logs / f"agent-{node_id}.log").read_text()
                raise AssertionError(f"agent {node_id} ignored SIGTERM:\n{text[-3000:]}") from None


@pytest.fixture(scope="module")
def oracle(world, agents, tmp_path_factory):
    state = tmp_path_factory.mktemp("oracle-agent")
    settings = OracleSettings(
        rpc_url=world.rpc_url,
        manifest_path=world.manifest_path,
        proofs_dir=state / "epochs",
        state_path=state / "state.sqlite3",
        source="agent",
        agent_targets=",".join(f"{n}={url}" for n, url in agents.items() if n != THIEF),
        sample_interval_seconds=1.0,
        # Challenges are sent by the test, not the random schedule.
        challenge_mean_interval_seconds=10**9,
        # CPU-sized work (n = 63 for an H100) with room for a loaded test machine.
        challenge_target_seconds=1e-9,
        challenge_kernel_slack_seconds=0.3,
        challenge_overhead_seconds=2.0,
    )
    source, sampler = build_source(settings)
    yield settings, source, sampler
    # The test polls by hand (the sampler thread never ran): release what it holds.
    sampler.collector.close()
    sampler.store.close()
    source.ledger.close()


def test_only_samples_signed_by_the_registered_key_and_fresh_count(oracle, caplog):
    _, source, sampler = oracle
    collector = sampler.collector
    with caplog.at_level(logging.WARNING, logger="gpucap.oracle.collectors.agent"):
        sampler.poll_once()
    now = time.time()
    seen = {n for n in AGENTS if source.store.window(n, now - 60, now + 1)}
    assert seen == {1, 2, 3, 4, 7, 8}
    assert collector.rejections["wrong_key"] == 1 and collector.rejections["stale"] == 1
    assert "node 5: agent sample rejected (wrong_key)" in caplog.text
    assert "node 6: agent sample rejected (stale)" in caplog.text
    # Devices are the GPUs' UUIDs, as the agent signed them.
    assert collector.gpus_of(1) == set(NODE_1_GPUS)


def test_a_sample_listing_gpus_bound_to_another_node_gets_no_credit(oracle, agents, caplog):
    """Node 9's agent lists node 1's GPUs, which the registry binds to node 1: a collector
    of its own (no memory of what node 1 listed: the registry alone decides) takes no
    reading from it, its challenges fail, and node 1 keeps its GPUs."""
    _, _, sampler = oracle
    first = sampler.collector
    thief = AgentCollector({THIEF: agents[THIEF]}, first.registry, first.chain_id)
    try:
        with caplog.at_level(logging.WARNING, logger="gpucap.oracle.collectors.agent"):
            assert thief.poll(time.time()) == []
        assert thief.rejections["gpu_of_another_node"] == 8
        assert thief.rejections["no_bound_gpu"] == 1
        assert f"node {THIEF}: agent readings of GPUs bound to other nodes" in caplog.text
        assert f"'{NODE_1_GPUS[0]}': 1" in caplog.text
        assert f"node {THIEF}: agent sample rejected (no_bound_gpu)" in caplog.text
        assert thief.gpus_of(THIEF) == set()
        judge = Challenger(
            {THIEF: agents[THIEF]},
            first.registry,
            first.chain_id,
            first.challenger.policy,
            ChallengeLedger(":memory:"),
            thief.gpus_of,
        )
        assert judge.challenge(THIEF).reason == "unknown_gpu"
    finally:
        thief.close()
    sampler.poll_once()
    assert first.gpus_of(1) == set(NODE_1_GPUS)


def test_challenges_credit_the_honest_node_and_catch_every_liar(oracle, caplog):
    _, _, sampler = oracle
    challenger = sampler.collector.challenger
    with caplog.at_level(logging.WARNING, logger="gpucap.oracle.challenges"):
        verdicts = {n: challenger.challenge(n) for n in challenger.targets}
        replayed = challenger.challenge(3)  # the first answer was honest; now it replays it
    assert verdicts[1].passed, verdicts[1]
    assert verdicts[3].passed, verdicts[3]
    reasons = {n: v.reason for n, v in verdicts.items() if not v.passed}
    assert reasons == {
        2: "wrong_row",  # committed to rows it never computed
        4: "too_slow_for_class",  # a slower machine claiming an H100
        5: "wrong_key",  # signed with another node's (node 1's) key
        6: "unknown_gpu",  # its samples were never accepted, so no GPU of its is known
        7: "missed_deadline",
        8: "impossible_time",  # did the work, claims a time faster than an H100's peak
    }
    assert (replayed.passed, replayed.reason) == (False, "replayed")
    assert "node 2 FAILED a challenge: wrong_row" in caplog.text
    assert "node 7 FAILED a challenge: missed_deadline" in caplog.text
    assert "node 3 FAILED a challenge: replayed" in caplog.text


def test_a_failed_challenge_costs_the_epoch_its_gpu_hours(oracle, caplog):
    settings, source, sampler = oracle
    ledger_times = source.ledger.counts(AGENTS, 0, time.time() + 1)
    assert ledger_times[1] == {"passed": 1, "failed": 0, "failures": []}
    sampler.poll_once()
    sampler.poll_once()
    reporter = build_reporter(settings, source)
    nodes = reporter.chain.measurable_nodes()
    # A window around what this oracle saw (wall clock, as live samples are stamped).
    end = int(time.time()) + 1
    window = EpochWindow(1, end - 120, end)
    with caplog.at_level(logging.WARNING, logger="gpucap.oracle"):
        leaves, excluded, _, challenges = reporter.measure(nodes, window)
    delivered = {leaf.node_id: leaf.milli_gpu_hours for leaf in leaves}
    assert not excluded
    assert delivered[1] > 0
    for liar in (2, 3, 4, 7, 8):  # measured, but failed a challenge
        assert delivered[liar] == 0
    assert delivered[5] == delivered[6] == 0  # no accepted sample at all: no coverage
    assert challenges["1"] == {"passed": 1, "failed": 0, "failures": []}
    assert challenges["3"]["passed"] == 1 and challenges["3"]["failed"] == 1
    assert challenges["2"]["failures"][0].startswith("wrong_row")
    assert "node 2 failed 1 challenge(s) (wrong_row" in caplog.text


def test_the_daemon_challenges_at_random_times_and_counts_verdicts(world, agents, tmp_path):
    """`python -m oracle run` with source=agent: its own schedule, visible in /metrics."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        GPUCAP_ORACLE_RPC_URL=world.rpc_url,
        GPUCAP_ORACLE_MANIFEST_PATH=str(world.manifest_path),
        GPUCAP_ORACLE_PROOFS_DIR=str(tmp_path / "epochs"),
        GPUCAP_ORACLE_STATE_PATH=str(tmp_path / "state.sqlite3"),
        GPUCAP_ORACLE_SOURCE="agent",
        # The honest agent and the one faking its work, challenged about every 0.2 s.
        GPUCAP_ORACLE_AGENT_TARGETS=f"1={agents[1]},2={agents[2]}",
        GPUCAP_ORACLE_SAMPLE_INTERVAL_SECONDS="1",
        GPUCAP_ORACLE_CHALLENGE_MEAN_INTERVAL_SECONDS="0.2",
        GPUCAP_ORACLE_CHALLENGE_TARGET_SECONDS="1e-9",
        GPUCAP_ORACLE_CHALLENGE_KERNEL_SLACK_SECONDS="0.3",
        GPUCAP_ORACLE_METRICS_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "oracle.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oracle", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wanted = (
            'gpucap_oracle_challenges_total{outcome="passed",reason="ok"}',
            'gpucap_oracle_challenges_total{outcome="failed",reason="wrong_row"}',
        )
        deadline = time.monotonic() + 90
        text = ""
        while not all(w in text for w in wanted):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, text + log_path.read_text()
            with contextlib.suppress(requests.ConnectionError):
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            time.sleep(0.2)
        assert "gpucap_oracle_challenge_round_trip_seconds_total" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = log_path.read_text()
    assert "node 2 FAILED a challenge: wrong_row" in log
    assert "challenge load so far" in log


def test_bad_requests_are_refused_with_a_code_and_reason(agents):
    url = agents[1]
    cases = [
        ("/challenges", {"nonce": "0x12", "n": 8, "deadlineSeconds": 1}, 400, "bad_challenge"),
        ("/challenges/go", {"nonce": "0x" + "00" * 32}, 400, "bad_go"),
        (
            "/challenges/go",
            {"nonce": "0x" + "00" * 32, "go": "0x" + "11" * 32},
            404,
            "unknown_challenge",
        ),
        ("/challenges/rows", {"nonce": "0x" + "00" * 32, "rows": [-1]}, 400, "bad_rows"),
        ("/challenges/rows", {"nonce": "0x" + "00" * 32, "rows": [0]}, 404, "unknown_challenge"),
    ]
    for path, body, status, code in cases:
        response = requests.post(f"{url}{path}", json=body, timeout=10)
        assert (response.status_code, response.json()["code"]) == (status, code), path
        assert response.json()["reason"]
    response = requests.post(f"{url}/challenges", data=b"{not json", timeout=10)
    assert (response.status_code, response.json()["code"]) == (400, "bad_json")


def test_a_gpu_not_bound_in_the_registry_is_missing(world, oracle, agents, operator, caplog):
    """Node 1's operator unbinds one GPU: once the registry is read again, that GPU's
    readings are missing (logged with its UUID) and the other seven count."""
    _, _, sampler = oracle
    registry = world.system.registry
    first = sampler.collector
    released = gpu_id(NODE_1_GPUS[7])
    registry.unbindGpus(1, [released], {"from": operator})
    # A fresh cache: the daemon's would see the change within its TTL.
    collector = AgentCollector({1: agents[1]}, first.registry._registry, first.chain_id)
    try:
        with caplog.at_level(logging.WARNING, logger="gpucap.oracle.collectors.agent"):
            readings = collector.poll(time.time())
        assert {r.device for r in readings} == set(NODE_1_GPUS[:7])
        assert collector.gpus_of(1) == set(NODE_1_GPUS[:7])
        assert collector.rejections["gpu_unbound"] == 1
        assert f"(gpu_unbound): ['{NODE_1_GPUS[7]}']" in caplog.text
    finally:
        collector.close()
        registry.bindGpus(1, [released], {"from": operator})
