"""The timelock's schedule of admin changes, indexed and served: a deployment handed over
to a GpucapTimelock (with a node pool bound before the hand-over), calls scheduled through
it, decoded with their target's ABI, pending until their time of effect, then ready,
executed or cancelled; undone by a reorg like every read model; and listed by
``GET /api/v1/governance/changes`` over real HTTP while the worker's indexer follows the
chain. Time moves with evm_increaseTime, never by sleeping."""

from __future__ import annotations

import json

import pytest
from brownie import RevenuePool, chain
from sqlalchemy import select

from backend.db.models import ChainEvent, GovernanceChangeRow, GovernanceDelayRow
from backend.services.chain import Chain
from backend.services.indexing import governance
from backend.services.indexing.indexer import Indexer
from scripts.deploy import (
    DeployConfig,
    PoolTerms,
    deploy_node_pool,
    deploy_system,
    hand_over_to_timelock,
    node_pool_args,
    node_pool_bindings,
    write_manifest,
)
from tests.backend.backend_helpers import Stack, wait_for
from tests.backend.test_cli import cli
from tests.conftest import LiveDeployment

DELAY = 600
USD = 10**6
ZERO32 = b"\0" * 32


@pytest.fixture(scope="module")
def live_deployment(admin, operator, accounts, tmp_path_factory):
    """A deployment handed over to a timelock (accounts[10] proposes), with one node pool
    bound before the hand-over; its manifest names the timelock."""
    from tests.support.brownie_network import ANVIL_PORT

    system = deploy_system(admin, DeployConfig.for_tests())
    node_id = system.registry.registerNode(
        system.class_ids["H100-SXM-80GB"],
        8,
        b"eu-west".ljust(32, b"\0"),
        300_000 * USD,
        chain[-1].timestamp,
        "0x" + "ce" * 20,
        {"from": operator},
    ).return_value
    pool = deploy_node_pool(
        system, admin, node_id=node_id, operator=operator, terms=PoolTerms(10_000 * USD)
    )
    hand_over_to_timelock(system, admin, delay_seconds=DELAY, proposers=[accounts[10].address])
    manifest = write_manifest(system, tmp_path_factory.mktemp("deployment") / "manifest.json")
    deployment = LiveDeployment(system, manifest, f"http://127.0.0.1:{ANVIL_PORT}")
    deployment.node_id, deployment.pool = node_id, pool  # type: ignore[attr-defined]
    return deployment


@pytest.fixture
def indexer(live_deployment, sessions):
    chain_ = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0)
    return Indexer(chain_, sessions, batch_blocks=50, max_batches=1_000, keep_blocks=64)


def _hex(value) -> str:
    return "0x" + bytes(value).hex()


def _schedule(deployment, proposer, target, data, salt=ZERO32):
    """Schedules one call through the timelock; (the transaction, its operation id)."""
    timelock = deployment.system.timelock
    tx = timelock.schedule(target, 0, data, ZERO32, salt, DELAY, {"from": proposer})
    return tx, _hex(timelock.hashOperation(target, 0, data, ZERO32, salt))


def _rows(sessions):
    with sessions() as s:
        rows = s.scalars(select(GovernanceChangeRow).order_by(GovernanceChangeRow.block_number))
        return [(r, governance.status_of(r, governance.chain_time(s))) for r in rows]


def test_scheduled_calls_are_decoded_pending_then_ready_then_executed(
    live_deployment, indexer, sessions, accounts, operator
):
    proposer, payer = accounts[10], accounts[12]
    system, node_id, pool = live_deployment.system, live_deployment.node_id, live_deployment.pool
    settlement, timelock = system.settlement, system.timelock
    terms = settlement.setUsageTerms.encode_input(node_id, payer, 3 * USD)
    salt = b"terms".ljust(32, b"\0")
    scheduled, op = _schedule(live_deployment, proposer, settlement, terms, salt)
    guardian_role = _hex(pool.GUARDIAN_ROLE())
    grant = pool.grantRole.encode_input(guardian_role, payer)
    _, cancelled_op = _schedule(live_deployment, proposer, pool, grant)
    timelock.cancel(cancelled_op, {"from": proposer})
    indexer.step()

    (terms_row, status), (grant_row, grant_status) = _rows(sessions)
    assert status == "pending" and grant_status == "cancelled"
    assert (terms_row.operation_id, terms_row.call_index) == (op, 0)
    assert (terms_row.contract, terms_row.function) == ("EpochSettlement", "setUsageTerms")
    assert terms_row.args == {"nodeId": node_id, "payer": payer.address, "pricePerGpuHour": 3 * USD}
    assert terms_row.salt == "0x" + salt.hex() and terms_row.target == settlement.address
    assert terms_row.eta == scheduled.timestamp + DELAY == timelock.getTimestamp(op)
    assert terms_row.data == terms and terms_row.scheduled_tx == scheduled.txid
    # A call on a pool bound before the hand-over: decoded with the pool's ABI.
    assert (grant_row.contract, grant_row.function) == ("RevenuePool", "grantRole")
    assert grant_row.args == {"role": guardian_role, "account": payer.address}
    assert grant_row.cancelled_at is not None and grant_row.salt == "0x" + "00" * 32
    with sessions() as s:  # the timelock's delay, from its construction
        delays = s.scalars(select(GovernanceDelayRow)).all()
        assert [(d.old_delay_seconds, d.new_delay_seconds) for d in delays] == [(0, DELAY)]

    chain.sleep(DELAY + 1)
    chain.mine()
    indexer.step()
    assert _rows(sessions)[0][1] == "ready"
    executed = timelock.execute(settlement, 0, terms, ZERO32, salt, {"from": operator})
    indexer.step()
    row, status = _rows(sessions)[0]
    assert status == "executed" and row.executed_tx == executed.txid
    assert tuple(settlement.usageTerms(node_id)) == (payer.address, 3 * USD)


def test_a_reorg_takes_a_scheduled_call_away(live_deployment, indexer, sessions, accounts):
    system = live_deployment.system
    indexer.step()
    before = len(_rows(sessions))
    chain.snapshot()
    try:
        data = system.registry.setUnbondingDelay.encode_input(7_200)
        _schedule(live_deployment, accounts[10], system.registry, data)
        indexer.step()
        row, status = _rows(sessions)[-1]
        assert (row.contract, row.function, row.args, status) == (
            "NodeRegistry",
            "setUnbondingDelay",
            {"delaySeconds": 7_200},
            "pending",
        )
        chain.revert()  # the schedule never happened; new blocks take its place
        for _ in range(3):
            chain.mine()
        assert indexer.step().reorged_to is not None
        assert len(_rows(sessions)) == before
        with sessions() as s:
            scheduled = s.scalars(select(ChainEvent).where(ChainEvent.event == "CallScheduled"))
            assert len(scheduled.all()) == before
    finally:
        chain.revert()


def test_the_api_lists_a_change_pending_then_ready_then_executed(
    stack: Stack, live_deployment, accounts, operator
):
    system = live_deployment.system
    data = system.market.setFees.encode_input(5, 20)
    tx, op = _schedule(live_deployment, accounts[10], system.market, data, b"fees".ljust(32, b"\0"))

    def listed(status: str):
        resp = stack.get("/api/v1/governance/changes", params={"status": status})
        assert resp.status_code == 200, resp.text
        return [c for c in resp.json() if c["operation_id"] == op]

    change = wait_for(lambda: listed("pending"), 30, "the scheduled change to be indexed")[0]
    assert (change["contract"], change["function"]) == ("Market", "setFees")
    assert change["args"] == {"makerFeeBps": 5, "takerFeeBps": 20}
    assert change["eta"] == tx.timestamp + DELAY and change["target"] == system.market.address
    assert not listed("ready")
    chain.sleep(DELAY + 1)
    chain.mine()
    wait_for(lambda: listed("ready"), 30, "the change to be due")
    system.timelock.execute(
        system.market, 0, data, ZERO32, b"fees".ljust(32, b"\0"), {"from": operator}
    )
    wait_for(lambda: listed("executed"), 30, "the execution to be indexed")
    assert not listed("pending") and not listed("ready")
    every = stack.get("/api/v1/governance/changes", params={"limit": 1000}).json()
    assert op in {c["operation_id"] for c in every}


def test_a_bad_filter_is_a_422_with_a_reason(stack: Stack):
    resp = stack.get("/api/v1/governance/changes", params={"status": "soon"})
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "ValidationFailed" and "status" in body["reason"]
    assert stack.get("/api/v1/governance/changes", params={"limit": 0}).status_code == 422


# ---------------------------------------------------------------------------
# The CLI: python -m gpucap governance …, against the same API and chain
# ---------------------------------------------------------------------------


def _name(system, address: str) -> str:
    return next(n for n, c in system.contracts().items() if c.address == address)


def _operation(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("operation "))


def _wait_status(stack: Stack, operation: str, status: str) -> list[dict]:
    def rows():
        resp = stack.get("/api/v1/governance/changes", params={"operation_id": operation})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return body if body and all(r["status"] == status for r in body) else None

    return wait_for(rows, 30, f"operation {operation} to be {status}")


def test_cli_schedules_lists_and_executes_usage_terms(stack: Stack, live_deployment, accounts):
    system, node_id = live_deployment.system, live_deployment.node_id
    payer = accounts[13].address
    done = cli(
        stack, "governance", "schedule", "EpochSettlement", "setUsageTerms",
        str(node_id), payer, "4000000", "--dev-account", "10",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    operation = _operation(done.stdout)
    _wait_status(stack, operation, "pending")
    listed = cli(stack, "--json", "governance", "list", "--status", "pending")
    change = next(c for c in json.loads(listed.stdout) if c["operation_id"] == operation)
    assert (change["function"], change["args"]["payer"]) == ("setUsageTerms", payer)
    early = cli(stack, "governance", "execute", operation, "--dev-account", "3")
    assert early.returncode == 2 and "not due until" in early.stderr

    chain.sleep(DELAY + 1)
    chain.mine()
    _wait_status(stack, operation, "ready")
    executed = cli(stack, "governance", "execute", operation, "--dev-account", "3")
    assert executed.returncode == 0, executed.stderr + executed.stdout
    assert "executed EpochSettlement.setUsageTerms" in executed.stdout
    assert tuple(system.settlement.usageTerms(node_id)) == (payer, 4_000_000)
    _wait_status(stack, operation, "executed")


def test_cli_binds_a_pool_deployed_after_the_hand_over(
    stack: Stack, live_deployment, operator, accounts
):
    """The batch `governance bind-pool` announces is the deployment's own binding
    (scripts/deploy.py node_pool_bindings), call for call."""
    system = live_deployment.system
    node_id = system.registry.registerNode(
        system.class_ids["A100-SXM-80GB"],
        8,
        b"us-east".ljust(32, b"\0"),
        150_000 * USD,
        chain[-1].timestamp,
        "0x" + "cf" * 20,
        {"from": operator},
    ).return_value
    args = node_pool_args(
        system,
        node_id=node_id,
        operator=operator.address,
        admin=system.timelock.address,
        terms=PoolTerms(10_000 * USD),
        now=chain[-1].timestamp,
    )
    pool = RevenuePool.deploy(*args, {"from": operator})
    done = cli(stack, "governance", "bind-pool", str(node_id), pool.address, "--dev-account", "10")
    assert done.returncode == 0, done.stderr + done.stdout
    operation = _operation(done.stdout)
    rows = _wait_status(stack, operation, "pending")
    expected = node_pool_bindings(system, pool.address, node_id)
    assert [(r["target"], r["data"]) for r in rows] == [(c.to, c.data) for c in expected]
    # The new pool is not bound yet: its calls are decoded, its contract left unnamed.
    assert [(r["contract"], r["function"]) for r in rows] == [
        (None if c.to == pool.address else _name(system, c.to), c.function) for c in expected
    ]
    chain.sleep(DELAY + 1)
    chain.mine()
    _wait_status(stack, operation, "ready")
    executed = cli(stack, "governance", "execute", operation, "--dev-account", "3")
    assert executed.returncode == 0, executed.stderr + executed.stdout
    assert system.settlement.poolOf(node_id) == pool.address
    assert system.market.isPoolListed(pool)
    executed_rows = _wait_status(stack, operation, "executed")  # every call of the batch
    assert [r["call_index"] for r in executed_rows] == list(range(len(expected)))


def test_cli_refuses_a_non_proposer_and_an_unknown_call(stack: Stack, live_deployment):
    node_id = str(live_deployment.node_id)
    refused = cli(
        stack, "governance", "schedule", "EpochSettlement", "setUsageTerms",
        node_id, "0x" + "12" * 20, "1", "--dev-account", "3",
    )  # fmt: skip
    assert refused.returncode == 2 and "AccessControlUnauthorizedAccount" in refused.stderr
    unknown = cli(stack, "governance", "schedule", "Vault", "drain", "--dev-account", "10")
    assert unknown.returncode == 2 and "not a gpucap contract" in unknown.stderr
    wrong = cli(stack, "governance", "schedule", "Market", "setFees", "1", "--dev-account", "10")
    assert wrong.returncode == 2 and "setFees takes" in wrong.stderr
