"""`make demo`'s world, as a person would use it: start, use the API, stop.

Runs `python -m devnet` (what `make demo` runs after set-up) on free ports in
a private directory, drives the faucet through the API it prints, checks that
a second demo says so instead of failing obscurely, and that Ctrl-C (SIGINT)
stops every process it started.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests
from web3 import Web3

from gpucap import devchain
from gpucap.deployment import Deployment

ROOT = devchain.REPO_ROOT
ADDRESS = "0x000000000000000000000000000000000000dEaD"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo")
    ports = {
        "GPUCAP_DEMO_CHAIN_PORT": devchain.free_port(),
        "GPUCAP_DEMO_REDIS_PORT": devchain.free_port(),
        "GPUCAP_DEMO_API_PORT": devchain.free_port(),
    }
    env = devchain.env_with_toolchain()
    env.update({k: str(v) for k, v in ports.items()})
    env["GPUCAP_DEMO_DIR"] = str(run_dir)
    out = open(run_dir / "stdout.txt", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "devnet"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    api = f"http://127.0.0.1:{ports['GPUCAP_DEMO_API_PORT']}"
    try:
        _wait_for(
            lambda: (
                proc.poll() is not None or "gpucap is up" in (run_dir / "stdout.txt").read_text()
            ),
            240,
            "the demo to come up",
        )
        assert proc.poll() is None, (run_dir / "stdout.txt").read_text()
        yield {"proc": proc, "api": api, "env": env, "dir": run_dir}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        out.close()


def test_prints_where_to_look(demo):
    text = (demo["dir"] / "stdout.txt").read_text()
    assert f"{demo['api']}/docs" in text
    assert requests.get(f"{demo['api']}/docs", timeout=5).status_code == 200


def test_health_reports_every_part_up(demo):
    body = _wait_for(
        lambda: (
            (r := requests.get(f"{demo['api']}/health", timeout=5)).status_code == 200 and r.json()
        ),
        60,
        "a healthy /health",
    )
    assert {"chain", "redis", "database", "worker"} <= set(body["checks"])


def test_faucet_through_the_demo(demo):
    resp = requests.post(f"{demo['api']}/faucet", json={"address": ADDRESS}, timeout=10)
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    action = _wait_for(
        lambda: (
            (a := requests.get(f"{demo['api']}/actions/{action_id}", timeout=5).json())["status"]
            in ("confirmed", "failed")
            and a
        ),
        60,
        "the faucet action to finish",
    )
    assert action["status"] == "confirmed", action


def test_oracle_attests_epochs(demo):
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{demo['env']['GPUCAP_DEMO_CHAIN_PORT']}"))
    hub = Deployment.load(demo["dir"] / "deployment.json").contract(w3, "OracleHub")
    # The demo deploys 30-second epochs; the daemon attests each one after it ends.
    _wait_for(lambda: hub.functions.lastAttestedEpoch().call() >= 1, 90, "an attested epoch")
    proofs = list((demo["dir"] / "oracle" / "epochs").glob("*.json"))
    assert proofs, "the oracle publishes each epoch's leaves and proofs"
    # The worker's indexer verifies the published leaves against the attested root and
    # serves them as metrics; a served leaf and proof verify on-chain.
    fleet = _wait_for(
        lambda: requests.get(f"{demo['api']}/api/v1/fleet/metrics?epochs=1", timeout=5).json(),
        60,
        "the fleet metrics of an attested epoch",
    )
    epoch = fleet[0]["epoch"]
    assert fleet[0]["nodes"] >= 1 and fleet[0]["classes"]
    nodes = [n["node_id"] for n in requests.get(f"{demo['api']}/api/v1/nodes", timeout=5).json()]
    served = [
        r.json()
        for n in nodes
        if (
            r := requests.get(f"{demo['api']}/api/v1/nodes/{n}/leaves/{epoch}", timeout=5)
        ).status_code
        == 200
    ]
    assert len(served) == fleet[0]["nodes"]  # the others were excluded by the oracle
    for body in served:
        leaf = tuple(body["leaf"].values())  # IOracleHub.NodeLeaf order
        assert hub.functions.verifyLeaf(leaf, body["proof"]).call()


def test_second_demo_says_one_is_running(demo):
    result = subprocess.run(
        [sys.executable, "-m", "devnet"],
        cwd=ROOT,
        env=demo["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "already running" in result.stdout
    assert str(demo["proc"].pid) in result.stdout


def test_ctrl_c_stops_every_process(demo):
    proc = demo["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 5  # anvil, redis, worker, api, oracle
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [p.info for p in alive] if alive else None
    lock = demo["dir"] / "demo.lock"
    assert not lock.exists() or json.loads(lock.read_text() or "{}") == {}
