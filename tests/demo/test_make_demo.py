"""`make demo`'s world, as a person would use it: start, use the API, stop.

Runs `python -m devnet` (what `make demo` runs after set-up) on free ports in
a private directory, with a small world (20 nodes, the same seeding path as the
default 1,000), drives the faucet through the API it prints, checks that the
world has bonded nodes, offers and bound pools, that three oracles in quorum
attest, that the activity process acts through the API, that users trade on the
market (a book with resting orders from the start, takes that fill), that a
second demo says so instead of failing obscurely, that a worker or an oracle
killed with SIGKILL is restarted (and the world goes on), and that Ctrl-C
(SIGINT) stops every process it started.
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal

import psutil
import pytest
import requests
from eth_account import Account
from web3 import Web3

from backend.risk.formulas import MONTH_SECONDS
from devnet.world import USAGE_PAYER
from gpucap import devchain
from gpucap.deployment import Deployment
from oracle.proofs import proofs_path

ROOT = devchain.REPO_ROOT
ADDRESS = "0x000000000000000000000000000000000000dEaD"
NODES = 20
# The demo's timelock delay here: short, so the activity executes the scheduled change
# within the test (make demo's default is 90 s).
TIMELOCK_DELAY = 20
SUCCEEDED = 2  # RevenuePool.RoundStatus


def _wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
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
    env["GPUCAP_DEMO_NODES"] = str(NODES)
    env["GPUCAP_DEMO_TIMELOCK_DELAY"] = str(TIMELOCK_DELAY)
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


def _chain(demo) -> tuple[Web3, Deployment]:
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{demo['env']['GPUCAP_DEMO_CHAIN_PORT']}"))
    return w3, Deployment.load(demo["dir"] / "deployment.json")


def test_prints_where_to_look(demo):
    text = (demo["dir"] / "stdout.txt").read_text()
    for where in ("/docs", "/health", "/dashboard"):
        assert f"{demo['api']}{where}" in text
    assert requests.get(f"{demo['api']}/docs", timeout=5).status_code == 200


def test_world_is_seeded(demo):
    w3, deployment = _chain(demo)
    registry = deployment.contract(w3, "NodeRegistry")
    capacity = deployment.contract(w3, "CapacityToken")
    settlement = deployment.contract(w3, "EpochSettlement")
    world = json.loads((demo["dir"] / "world.json").read_text())
    assert registry.functions.nodeCount().call() == NODES == len(world["nodes"])
    assert {n["class_name"] for n in world["nodes"]} >= {"H100-SXM-80GB", "A100-SXM-80GB"}
    for node in world["nodes"]:
        # Active, with the planned bond; every node offers the next windows.
        assert registry.functions.nodeStatus(node["node_id"]).call() == 1
        assert registry.functions.bondOf(node["node_id"]).call()[0] == node["bond"]
    assert capacity.functions.offerCount().call() == 3 * NODES
    pool_abi = json.loads((ROOT / "build/contracts/RevenuePool.json").read_text())["abi"]
    statuses = []
    for pool in world["pools"]:
        assert settlement.functions.poolOf(pool["node_id"]).call() == pool["address"]
        contract = w3.eth.contract(address=pool["address"], abi=pool_abi)
        statuses.append(contract.functions.roundStatus().call())
        if statuses[-1] == SUCCEEDED:
            assert contract.functions.totals().call()[7] > 0  # staked shares
            # its node is rented whole: the renter pays the node's ask per attested GPU-hour
            node = next(n for n in world["nodes"] if n["node_id"] == pool["node_id"])
            payer, price = settlement.functions.usageTerms(pool["node_id"]).call()
            renter = Account.from_key(devchain.dev_private_key(USAGE_PAYER)).address
            assert (payer, price) == (renter, node["price_per_gpu_hour"])
            # ...and agreed to it on-chain, from its own account
            consent = settlement.functions.usageConsent(pool["node_id"], renter).call()
            assert consent == node["price_per_gpu_hour"]
        # the loan runs in real time: tenor_months of 30 days, in the hub's epochs
        *_, tenor_epochs, rate_bps = contract.functions.terms().call()
        epoch_seconds = contract.functions.epochSchedule().call()[1]
        assert tenor_epochs == pool["tenor_months"] * MONTH_SECONDS // epoch_seconds
        assert rate_bps == pool["rate_bps"]
    assert SUCCEEDED in statuses and 0 in statuses  # funded pools and one still raising


def test_admin_powers_are_with_the_timelock_after_seeding(demo):
    """The deployer seeded the world, then handed every admin power over: it holds no
    role on any contract or pool, the timelock is every one's admin, and the change it
    scheduled waits the demo's delay."""
    w3, deployment = _chain(demo)
    manifest = json.loads((demo["dir"] / "deployment.json").read_text())
    timelock = manifest["timelock"]
    assert deployment.contracts["GpucapTimelock"].address == timelock
    deployer = Account.from_key(devchain.dev_private_key(0)).address
    admin = b"\0" * 32
    pool_abi = json.loads((ROOT / "build/contracts/RevenuePool.json").read_text())["abi"]
    world = json.loads((demo["dir"] / "world.json").read_text())
    handles = [
        deployment.contract(w3, name)
        for name in ("NodeRegistry", "OracleHub", "CapacityToken", "EpochSettlement", "Market")
    ] + [w3.eth.contract(address=p["address"], abi=pool_abi) for p in world["pools"]]
    for contract in handles:
        assert contract.functions.hasRole(admin, timelock).call(), contract.address
        assert not contract.functions.hasRole(admin, deployer).call(), contract.address
    settlement = deployment.contract(w3, "EpochSettlement")
    for role in ("TERMS_ROLE", "TREASURER_ROLE", "SETTLER_ROLE"):
        role_id = getattr(settlement.functions, role)().call()
        assert not settlement.functions.hasRole(role_id, deployer).call(), role
    lock = deployment.contract(w3, "GpucapTimelock")
    assert lock.functions.getMinDelay().call() == TIMELOCK_DELAY


def test_the_scheduled_change_is_listed_then_executed_by_a_user(demo):
    """The change the hand-over scheduled (usage terms of a node still raising) is listed
    by the API, decoded, with its time of effect; once due, the activity's users execute
    it and it takes effect on-chain."""
    w3, deployment = _chain(demo)
    world = json.loads((demo["dir"] / "world.json").read_text())

    def changes():
        resp = requests.get(f"{demo['api']}/api/v1/governance/changes", timeout=5)
        return resp.json() if resp.status_code == 200 and resp.json() else None

    change = _wait_for(changes, 60, "the scheduled change to be indexed")[0]
    assert (change["contract"], change["function"]) == ("EpochSettlement", "setUsageTerms")
    assert change["delay_seconds"] == TIMELOCK_DELAY
    assert change["eta"] == change["scheduled_at"] + TIMELOCK_DELAY
    raising = [p for p in world["pools"] if sum(p["deposits"]) != p["target_assets"]]
    assert change["args"]["nodeId"] == raising[0]["node_id"]
    _wait_for(lambda: changes()[0]["status"] == "executed", 120, "a user to execute the due change")
    settlement = deployment.contract(w3, "EpochSettlement")
    payer = settlement.functions.usageTerms(change["args"]["nodeId"]).call()[0]
    assert payer == change["args"]["payer"]


def test_stress_over_the_demo_pools(demo):
    """The dashboard's question, through the API: each drawn pool's loan projected in
    months from the index, under base and 40 %/yr deflation."""
    world = json.loads((demo["dir"] / "world.json").read_text())
    drawn = {p["node_id"] for p in world["pools"] if sum(p["deposits"]) == p["target_assets"]}
    # the indexer binds pools as it reaches their PoolSet: wait until it has every one
    pooled = {p["node_id"] for p in world["pools"]}
    _wait_for(
        lambda: (
            {
                p["node_id"]
                for p in requests.get(f"{demo['api']}/api/v1/pools?limit=1000", timeout=5).json()
            }
            == pooled
        ),
        60,
        "every pool to be indexed",
    )
    body = {"scope": "pools", "scenarios": ["base", "deflation_40"], "horizon_months": 60}
    resp = requests.post(f"{demo['api']}/api/v1/risk/scenarios", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    base, deflation = resp.json()["results"]
    assert {n["node_id"] for n in base["nodes"]} == pooled
    assert {n["node_id"] for n in base["nodes"] if n["has_pool"]} == drawn
    worst = {n["node_id"]: n["min_dscr_bps"] for n in deflation["nodes"] if n["has_pool"]}
    for node in base["nodes"]:
        if node["has_pool"]:
            assert worst[node["node_id"]] <= node["min_dscr_bps"]


def test_health_reports_every_part_up(demo):
    body = _wait_for(
        lambda: (
            (r := requests.get(f"{demo['api']}/health", timeout=5)).status_code == 200 and r.json()
        ),
        60,
        "a healthy /health",
    )
    assert {"chain", "redis", "database", "worker"} <= set(body["checks"])
    # The work, not only the parts: every oracle's own health, attestation, settlement.
    assert {"oracles", "attestation", "keeper", "relayer"} <= set(body["checks"])
    assert body["checks"]["oracles"]["detail"] == "3 of 3 oracle(s) healthy"


def _drip(demo, address: str, timeout: float = 60) -> dict:
    """Ask the demo's faucet for ``address``; the action once it finished."""
    resp = requests.post(f"{demo['api']}/faucet", json={"address": address}, timeout=10)
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    return _wait_for(
        lambda: (
            (a := requests.get(f"{demo['api']}/actions/{action_id}", timeout=5).json())["status"]
            in ("confirmed", "failed")
            and a
        ),
        timeout,
        "the faucet action to finish",
    )


def test_faucet_through_the_demo(demo):
    action = _drip(demo, ADDRESS)
    assert action["status"] == "confirmed", action


def test_three_oracles_attest_in_quorum(demo):
    w3, deployment = _chain(demo)
    hub = deployment.contract(w3, "OracleHub")
    # The demo deploys 30-second epochs; the daemons attest each one after it ends.
    _wait_for(lambda: hub.functions.lastAttestedEpoch().call() >= 1, 90, "an attested epoch")
    epoch = hub.functions.lastAttestedEpoch().call()
    # Each daemon signs with its own key and publishes the proofs of what it signed.
    signed = _wait_for(
        lambda: all((demo["dir"] / f"oracle-{n}" / "epochs").glob("*.json") for n in (1, 2, 3)),
        60,
        "proofs from all three oracles",
    )
    assert signed
    # Each holds one key of the 2-of-3 set, so an attestation took two of them.
    assert (len(hub.functions.oracles().call()), hub.functions.quorum().call()) == (3, 2)
    root, node_count = hub.functions.epochAttestation(epoch).call()[:2]
    assert root != bytes(32) and node_count >= NODES - 2  # a node's telemetry may be left out
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


def test_users_act_through_the_api(demo):
    log = demo["dir"] / "logs" / "activity.log"
    acted = _wait_for(
        lambda: (
            log.exists()
            and any(
                word in log.read_text()
                for word in (" bought ", " redeemed ", " offered ", " deposited ", " staked ")
            )
        ),
        120,
        "a user action to be confirmed",
    )
    assert acted


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


def _readme_cli_lines() -> list[str]:
    """The commands of the README's ``python -m gpucap`` block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From a terminal: `python -m gpucap`") :]
    block = section[section.index("```sh\n") + 6 : section.index("\n```", section.index("```sh"))]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_cli_examples_run_against_the_demo(demo):
    """Every command the README shows, as written, with its placeholders filled from the
    world it describes: each exits 0."""
    env = {
        **demo["env"],
        "GPUCAP_API_URL": demo["api"],
        "GPUCAP_RPC_URL": f"http://127.0.0.1:{demo['env']['GPUCAP_DEMO_CHAIN_PORT']}",
    }

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert argv[:3] == [".venv/bin/python", "-m", "gpucap"], argv
        return subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    lines = _readme_cli_lines()
    assert any("buy" in line for line in lines) and any("redeem" in line for line in lines)
    listed = run([".venv/bin/python", "-m", "gpucap", "--json", "offers"])
    assert listed.returncode == 0, listed.stderr
    buy = next(line.split() for line in lines if line.split()[3] == "buy")
    amount = int(buy[5])
    # The latest window: its redeem deadline is furthest away.
    offer = max(
        (o for o in json.loads(listed.stdout) if o["amount"] - o["sold"] >= amount + 5),
        key=lambda o: (o["window_start"], o["amount"] - o["sold"]),
    )
    token = (offer["class_id"] << 64) | offer["window_start"]
    fill = {
        "<offer-id>": str(offer["offer_id"]),
        "<token-id>": str(token),
        "<node-id>": str(offer["node_id"]),
    }
    for line in lines:
        argv = [fill.get(word, word) for word in line.split()]
        done = run(argv)
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])


def _is_child(demo, argv_tail: list[str], env: tuple[str, str] | None = None):
    for child in psutil.Process(demo["proc"].pid).children():
        try:
            if child.cmdline()[-len(argv_tail) :] != argv_tail:
                continue
            if env is None or env[1] in child.environ().get(env[0], ""):
                return child
        except psutil.Error:
            continue
    return None


def test_supervisor_restarts_a_killed_worker_and_oracle(demo):
    w3, deployment = _chain(demo)
    hub = deployment.contract(w3, "OracleHub")
    worker = _is_child(demo, ["backend", "worker", "--no-beat"])
    oracle = _is_child(demo, ["oracle", "run"], ("GPUCAP_ORACLE_PROOFS_DIR", "oracle-2"))
    assert worker is not None and oracle is not None
    worker.kill()
    oracle.kill()
    stdout = demo["dir"] / "stdout.txt"
    _wait_for(
        lambda: all(f"{n} restarted" in stdout.read_text() for n in ("worker", "oracle-2")),
        60,
        "the supervisor to restart the worker and oracle-2",
    )
    text = stdout.read_text()
    assert "worker exited with code -9; restarting in 1 s" in text
    assert "oracle-2 exited with code -9; restarting in 1 s" in text
    assert "Stopping the gpucap world" not in text
    assert demo["proc"].poll() is None
    new_worker = _is_child(demo, ["backend", "worker", "--no-beat"])
    assert new_worker is not None and new_worker.pid != worker.pid
    log = (demo["dir"] / "logs" / "oracle-2.log").read_text()
    assert "[supervisor] oracle-2 restarted (restart 1" in log

    # The world goes on: the new worker relays a faucet drip, the new oracle attests.
    action = _drip(demo, Account.create().address, timeout=90)
    assert action["status"] == "confirmed", action
    after = hub.functions.lastAttestedEpoch().call() + 1
    _wait_for(
        lambda: proofs_path(demo["dir"] / "oracle-2" / "epochs", after).exists(),
        120,
        f"the restarted oracle-2 to sign epoch {after}",
    )


def _instruments(demo) -> list[tuple[str, str, int, int]]:
    """(asset, token id, base units per whole unit, primary price in stablecoin units per
    whole unit) of what the users trade: each window an open offer is for, each pool."""
    w3, deployment = _chain(demo)
    world = json.loads((demo["dir"] / "world.json").read_text())
    capacity = requests.get(f"{demo['api']}/api/v1/market", timeout=5).json()["capacity_token"]
    asks: dict[int, list[int]] = {}
    for node in world["nodes"]:
        class_id = deployment.gpu_classes[node["class_name"]]
        asks.setdefault(class_id, []).append(node["price_per_gpu_hour"])
    now = w3.eth.get_block("latest")["timestamp"]
    offers = requests.get(f"{demo['api']}/api/v1/offers?limit=1000", timeout=5).json()
    windows = {(int(o["token_id"]), o["class_id"]) for o in offers if o["window_start"] > now + 60}
    pools = requests.get(f"{demo['api']}/api/v1/pools?limit=1000", timeout=5).json()
    return [
        (capacity, str(token), 1, int(statistics.median(asks[class_id])))
        for token, class_id in sorted(windows)
    ] + [(p["address"], "0", 10**18, p["round"]["share_price"]) for p in pools]


def test_users_trade_on_the_market(demo):
    """(Late in the module: the users have traded a while by now, so it rarely waits.)
    The book held resting orders when the demo said it was up, and still does: bids
    under asks, for GPU-hour windows and for pool shares. The users' takes fill on-chain:
    a trade indexed at a price near the primary one, between two users, and its order's
    state following it."""
    seeded = re.search(r"market\s+(\d+) resting orders", (demo["dir"] / "stdout.txt").read_text())
    assert seeded and int(seeded.group(1)) > 0
    instruments = _instruments(demo)

    def book(asset: str, token: str) -> dict:
        query = {"asset": asset, "token_id": token}
        return requests.get(f"{demo['api']}/api/v1/market/book", params=query, timeout=5).json()

    books = {(asset, token): book(asset, token) for asset, token, _, _ in instruments}
    capacity = instruments[0][0]
    for kind in (lambda a: a == capacity, lambda a: a != capacity):  # GPU-hours, shares
        kept = [b for (asset, _), b in books.items() if kind(asset)]
        assert any(b["asks"] for b in kept) and any(b["bids"] for b in kept), kept
    for b in books.values():
        if b["asks"] and b["bids"]:
            assert Decimal(b["bids"][0]["price"]) < Decimal(b["asks"][0]["price"]), b

    def trades() -> list[dict]:
        return [
            {**t, "unit": unit, "primary": primary}
            for asset, token, unit, primary in instruments
            for t in requests.get(
                f"{demo['api']}/api/v1/market/trades",
                params={"asset": asset, "token_id": token},
                timeout=5,
            ).json()
        ]

    done = _wait_for(trades, 180, "a user's take to fill and be indexed", every=2)
    world = json.loads((demo["dir"] / "world.json").read_text())
    traders = {
        Account.from_key(devchain.dev_private_key(i)).address
        for i in (*world["users"], *world["investors"])
    }
    for trade in done:
        assert {trade["maker"], trade["taker"]} <= traders and trade["maker"] != trade["taker"]
        per_unit = Decimal(trade["price"]) * trade["unit"]
        assert 0.85 <= per_unit / trade["primary"] <= 1.15, trade
        order = requests.get(
            f"{demo['api']}/api/v1/market/orders/{trade['order_hash']}", timeout=5
        ).json()
        assert order["status"] in ("filled", "partially_filled", "cancelled", "expired"), order
        assert int(order["filled"]) >= int(trade["amount"]), (order, trade)


def test_ctrl_c_stops_every_process(demo):
    proc = demo["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    # anvil, redis, worker, beat, api, three oracles, activity
    assert len(children) >= 9
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [p.info for p in alive] if alive else None
    lock = demo["dir"] / "demo.lock"
    assert not lock.exists() or json.loads(lock.read_text() or "{}") == {}
