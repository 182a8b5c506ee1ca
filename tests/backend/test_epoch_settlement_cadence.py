"""The epoch-settlement keeper's cadence through real parts: anvil, quorum-signed
attestations, the oracle's proofs files, Redis, a worker process (beat → indexer + keeper →
relayer). The planner is also called directly, on the stack's own database and chain, to
read why a node is not settled (its returned plan), never by waiting and seeing nothing.

Cadence here: min 3 epochs, a drawn loan every 2, at most 900 s late. The world: nodes A
and B bill `buyer`; node L has a drawn pool and bills `admin`. All became billable during
epoch k, so each first settles k+1 alone (the anchor). Then:
  k+2..k+3  attested, files not published yet: A and B are not due (2 of 3); L is due
            (drawn loan) but waits for a file.
  k+4..k+6  attested; then every file is published: A, B and L settle once at k+6, one
            batch, each covering the five epochs k+2..k+6.
  k+7..k+8  attested with files: L settles at k+8 (loan path); A and B stay deferred.
  +900 s    A's and B's oldest unsettled epoch ended 900 s ago: they settle at k+8.
  then      one epoch e1, A's price tripled from f (e1 < f), f attested: A settles at once up
            to e1 (the part before the change; not due by the cadence), then f..f+2 at the
            cadence, each piece at its own price.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brownie import chain
from sqlalchemy import select

from backend.db.models import Action, ActionKind, EpochRow
from backend.db.session import get_sessionmaker
from backend.services.chain import Chain
from backend.services.keepers.cadence import Cadence
from backend.services.keepers.epochs import EpochPlan, first_epoch_after, plan_epoch_settlements
from gpucap.attestation import Cumulative, EpochCommitment, NodeLeaf, build_commitment
from oracle.proofs import proofs_document, write_proofs
from tests.backend.backend_helpers import Stack, running_stack, wait_for
from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TARGET,
    SLASHER_ROLE,
    deploy_hub_pool,
)
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, end_epoch, signatures

USD = 10**6
PRICE = 2 * USD  # per delivered GPU-hour
CADENCE = Cadence(min_epochs=3, max_delay_seconds=900.0, loan_epochs=2)


class Fleet:
    """Attests epochs with cumulative leaves (counters since registration) and publishes
    their files when asked."""

    def __init__(self, system: Any, nodes: list[int], proofs_dir: Path, sender: Any) -> None:
        self.system, self.nodes, self.proofs_dir, self.sender = system, nodes, proofs_dir, sender
        self.cums = {n: Cumulative() for n in nodes}
        # The keeper's second folder of files: absent until a test renames one into place.
        self.late = proofs_dir.with_name(proofs_dir.name + "-late")
        self.commitments: dict[int, EpochCommitment] = {}

    def attest(self) -> int:
        hub = self.system.oracle_hub
        epoch = end_epoch(hub)
        leaves = []
        for i, node in enumerate(self.nodes):
            milli = 1_000 * (epoch % 7 + 1) + i  # a different figure each node and epoch
            leaf = NodeLeaf.measured(
                node,
                epoch,
                uptime_bps=10_000,
                utilization_bps=5_000,
                sample_coverage_bps=10_000,
                utilization_coverage_bps=10_000,
                energy_coverage_bps=10_000,
                energy_joules=3_600_000,
                milli_gpu_hours=milli,
                busy_gpu_seconds=milli * 18 // 10,
                base=self.cums[node],
            )
            self.cums[node] = Cumulative.of(leaf)
            leaves.append(leaf)
        c = build_commitment(epoch, leaves, hub.configVersion())
        hub.attest(
            c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]), {"from": self.sender}
        )
        self.commitments[epoch] = c
        return epoch

    def publish(self, epoch: int, folder: Path | None = None) -> None:
        c = self.commitments[epoch]
        doc = proofs_document(
            c,
            chain_id=chain.id,
            oracle_hub=self.system.oracle_hub.address,
            signers=[address_of(k) for k in ORACLE_KEYS[:2]],
            attestation=None,
        )
        write_proofs(folder or self.proofs_dir, epoch, doc)

    def leaf(self, node: int, epoch: int) -> NodeLeaf:
        return next(x for x in self.commitments[epoch].leaves if x.node_id == node)


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, buyer, staker, tmp_path_factory):
    s = live_deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (buyer, operator, staker, admin):
        s.stablecoin.drip(who, {"from": who})
    a, b, loan = [
        s.registry.registerNode(
            h100,
            8,
            b"eu-west".ljust(32, b"\0"),
            240_000 * USD,
            chain[-1].timestamp - 86_400,
            "0x" + f"{0xC0 + i:02x}" * 20,
            {"from": operator},
        ).events["NodeRegistered"]["nodeId"]
        for i in range(3)
    ]
    s.stablecoin.approve(s.registry, 400 * USD, {"from": operator})
    s.registry.depositBond(loan, 400 * USD, {"from": operator})
    pool = deploy_hub_pool(s.oracle_hub, s.stablecoin, operator, admin, loan, gate=s.settlement)
    s.stablecoin.approve(pool, 2**256 - 1, {"from": staker})
    pool.deposit(POOL_TARGET, staker, {"from": staker})
    pool.drawRaise({"from": operator})
    pool.stake(300 * 10**18, {"from": staker})
    pool.grantRole(DISTRIBUTOR_ROLE, s.settlement, {"from": admin})
    pool.grantRole(SLASHER_ROLE, s.loans, {"from": admin})
    hub = s.oracle_hub
    end_epoch(hub)  # a fresh epoch: every node becomes billable in the same one, k
    chain.sleep(2)  # strictly inside it (a block at its very start would make it billable)
    chain.mine()
    bound = s.settlement.setPool(loan, pool, {"from": admin})
    for node, payer in ((a, buyer), (b, buyer), (loan, admin)):
        last = s.settlement.setUsageTerms(node, payer, PRICE, {"from": admin})
        s.settlement.approveUsage(node, PRICE, {"from": payer})
        s.stablecoin.approve(s.settlement, 2**256 - 1, {"from": payer})
    # k: the epoch every node became billable in (the keeper settles from the next one).
    k, k_last = (
        first_epoch_after(tx.timestamp, hub.genesisTimestamp(), hub.epochLengthSeconds()) - 1
        for tx in (bound, last)
    )
    assert k == k_last, "the setup crossed an epoch boundary"
    fleet = Fleet(s, [a, b, loan], tmp_path_factory.mktemp("epochs"), operator)
    while k + 1 not in fleet.commitments:  # through the first billable epoch
        fleet.publish(fleet.attest())
    return {
        "system": s,
        "nodes": (a, b, loan),
        "k": k,
        "fleet": fleet,
        "buyer_balance": s.stablecoin.balanceOf(buyer),
    }


@pytest.fixture(scope="module")
def stack(world, live_deployment, tmp_path_factory, backend) -> Iterator[Stack]:
    env = {
        "GPUCAP_PROOFS_DIR": str(world["fleet"].proofs_dir),
        "GPUCAP_PROOFS_DIRS": json.dumps([str(world["fleet"].late)]),
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_RETRY_SECONDS": "3600",
        "GPUCAP_EPOCH_SETTLE_MIN_EPOCHS": str(CADENCE.min_epochs),
        "GPUCAP_EPOCH_SETTLE_LOAN_EPOCHS": str(CADENCE.loan_epochs),
        "GPUCAP_EPOCH_SETTLE_MAX_DELAY_SECONDS": str(CADENCE.max_delay_seconds),
        "GPUCAP_LEAF_INGEST_RETRY_SECONDS": "0.5",
    }
    with running_stack(
        tmp_path_factory.mktemp("cadence"), live_deployment, env, backend=backend
    ) as s:
        yield s


def _plan(stack: Stack, live_deployment: Any, world: dict[str, Any], relayer: Any) -> EpochPlan:
    """The planner's own answer now, on the stack's database and chain, with the stack's
    cadence; only called when nothing is due (it would create rows nobody enqueues)."""
    keeper_chain = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0)
    with get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])() as session:
        plan = plan_epoch_settlements(
            session,
            keeper_chain,
            world["fleet"].proofs_dir,
            sender=relayer.address,
            max_batch_gas=8_000_000,
            retry_after_seconds=3600,
            cadence=CADENCE,
        )
    assert plan.actions == [], plan
    return plan


def _indexed(stack: Stack, epoch: int) -> None:
    sessions = get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])

    def seen() -> bool:
        with sessions() as session:
            return session.get(EpochRow, epoch) is not None

    wait_for(seen, 30, f"epoch {epoch}'s attestation to be indexed")


def _rows(stack: Stack) -> list[tuple[int, list[int], str]]:
    with get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])() as session:
        rows = session.scalars(
            select(Action).where(Action.kind == ActionKind.SETTLE_EPOCH.value)
        ).all()
        return sorted((r.params["epoch"], sorted(r.params["node_ids"]), r.status) for r in rows)


def test_first_settlement_then_one_range_of_five_epochs(
    world, stack, live_deployment, buyer, relayer
) -> None:
    s, k, fleet = world["system"], world["k"], world["fleet"]
    a, b, loan = world["nodes"]
    settlement = s.settlement
    # First settlements are due at once, exactly the first billable epoch, in one batch.
    for node in (a, b, loan):
        wait_for(lambda n=node: settlement.lastSettledEpoch(n) == k + 1, 60, f"{node} at k+1")

    # Two more epochs, their files not published yet.
    for _ in range(2):
        newest = fleet.attest()
    _indexed(stack, newest)
    plan = _plan(stack, live_deployment, world, relayer)
    for node in (a, b):
        assert plan.deferred[node].startswith("2 unsettled epoch(s) of 3,"), plan.deferred
    assert loan not in plan.deferred  # its drawn loan makes it due at 2 ...
    assert f"node {loan}: " in " ".join(plan.waiting)  # ... but no file has its leaf yet

    # Three more (five unsettled), then every file at once: one batch at the newest epoch.
    for _ in range(3):
        newest = fleet.attest()
    assert newest == k + 6
    # Indexed first: a keeper that sees the files before the newest attestation is indexed
    # settles at the newest it knows (a shorter range), which is not what this test is about.
    _indexed(stack, newest)
    # At once: written aside, then the folder renamed into the keeper's second source (one
    # by one, the keeper would settle at whichever newest file it saw first).
    staging = fleet.late.with_name("staging")
    for epoch in range(k + 2, k + 7):
        fleet.publish(epoch, staging)
    staging.rename(fleet.late)
    for node in (a, b, loan):
        wait_for(lambda n=node: settlement.lastSettledEpoch(n) == k + 6, 60, f"{node} at k+6")
    wait_for(lambda: all(r[2] == "confirmed" for r in _rows(stack)), 30, "rows confirmed")
    assert _rows(stack) == [
        (k + 1, sorted([a, b, loan]), "confirmed"),
        (k + 6, sorted([a, b, loan]), "confirmed"),
    ]
    # Billed: the anchor's own hours, then the counters' difference over k+2..k+6.
    billed = sum(
        PRICE * fleet.leaf(n, k + 1).milli_gpu_hours // 1000
        + PRICE
        * (fleet.leaf(n, k + 6).cum_milli_gpu_hours - fleet.leaf(n, k + 1).cum_milli_gpu_hours)
        // 1000
        for n in (a, b)
    )
    assert world["buyer_balance"] - s.stablecoin.balanceOf(buyer) == billed


def test_below_min_epochs_is_deferred_while_a_drawn_loan_settles(
    world, stack, live_deployment, relayer
) -> None:
    s, k, fleet = world["system"], world["k"], world["fleet"]
    a, b, loan = world["nodes"]
    settlement = s.settlement
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 6, 60, "A at k+6 (previous test)")
    for _ in range(2):
        fleet.publish(newest := fleet.attest())
    assert newest == k + 8
    wait_for(lambda: settlement.lastSettledEpoch(loan) == k + 8, 60, "the loan's node at k+8")
    wait_for(lambda: all(r[2] == "confirmed" for r in _rows(stack)), 30, "rows confirmed")
    plan = _plan(stack, live_deployment, world, relayer)
    assert set(plan.deferred) == {a, b}, plan.deferred
    assert all("2 unsettled epoch(s) of 3" in why for why in plan.deferred.values())
    assert plan.settling == {} and plan.epochs_behind == 0
    assert (settlement.lastSettledEpoch(a), settlement.lastSettledEpoch(b)) == (k + 6, k + 6)
    assert (k + 8, [loan], "confirmed") in _rows(stack)


def test_max_delay_settles_what_min_epochs_would_not(world, stack) -> None:
    s, k = world["system"], world["k"]
    a, b, _ = world["nodes"]
    settlement = s.settlement
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 6, 60, "A at k+6 (previous tests)")
    chain.sleep(int(CADENCE.max_delay_seconds) + 1)
    chain.mine()
    for node in (a, b):
        wait_for(lambda n=node: settlement.lastSettledEpoch(n) == k + 8, 60, f"{node} at k+8")
    wait_for(
        lambda: (
            f"settling: node {a}: epochs {k + 7}..{k + 8}: oldest unsettled epoch ended"
            in stack.worker.log_tail(400)
        ),
        30,
        "the keeper to say why A was due",
    )
    wait_for(lambda: all(r[2] == "confirmed" for r in _rows(stack)), 30, "rows confirmed")
    assert (k + 8, sorted([a, b]), "confirmed") in _rows(stack)


def _billed(settlement: Any, node: int, after: int) -> list[tuple[int, int, int]]:
    """(fromEpoch, epoch, usage) of the node's settlements of epochs after `after`."""
    logs = settlement.events.get_sequence(from_block=0, event_type="NodeSettled")
    return [
        (ev.args.fromEpoch, ev.args.epoch, ev.args.usage)
        for ev in logs
        if ev.args.nodeId == node and ev.args.fromEpoch > after
    ]


def test_a_terms_change_inside_a_range_settles_in_pieces_under_their_own_terms(
    world, stack, live_deployment, relayer, admin, buyer
) -> None:
    """A's price triples from epoch f while its range is open: the keeper settles A at once up
    to the epoch before f (though 1 unsettled epoch is not due by the cadence), then the rest
    at the cadence, each piece billed at its own price."""
    s, k, fleet = world["system"], world["k"], world["fleet"]
    a, _, _ = world["nodes"]
    settlement, hub = s.settlement, s.oracle_hub
    wait_for(lambda: settlement.lastSettledEpoch(a) == k + 8, 60, "A at k+8 (previous tests)")
    fleet.publish(e1 := fleet.attest())  # under the old price: 1 unsettled, not due
    change = settlement.setUsageTerms(a, buyer, 3 * PRICE, {"from": admin})
    settlement.approveUsage(a, 3 * PRICE, {"from": buyer})  # the same epoch: the same entry
    f = change.events["UsageTermsSet"]["fromEpoch"]
    assert f == hub.currentEpoch() + 1
    end_epoch(hub)  # f - 1: passed over by the oracles
    fleet.publish(e2 := fleet.attest())
    assert e2 == f
    wait_for(lambda: settlement.lastSettledEpoch(a) == e1, 60, "A settled up to before f")
    wait_for(
        lambda: (
            f"terms change from epoch {f}: settles the epochs before it first"
            in stack.worker.log_tail(400)
        ),
        30,
        "the keeper to say why A was due",
    )
    wait_for(lambda: all(r[2] == "confirmed" for r in _rows(stack)), 30, "rows confirmed")
    plan = _plan(stack, live_deployment, world, relayer)
    assert plan.deferred[a].startswith("1 unsettled epoch(s) of 3,"), plan.deferred
    for _ in range(2):
        fleet.publish(newest := fleet.attest())
    wait_for(lambda: settlement.lastSettledEpoch(a) == newest, 60, "A at the cadence after f")
    old, new = fleet.leaf(a, k + 8), fleet.leaf(a, e1)
    assert _billed(settlement, a, k + 8) == [
        (k + 9, e1, PRICE * (new.cum_milli_gpu_hours - old.cum_milli_gpu_hours) // 1000),
        (
            e1 + 1,
            newest,
            3
            * PRICE
            * (fleet.leaf(a, newest).cum_milli_gpu_hours - new.cum_milli_gpu_hours)
            // 1000,
        ),
    ]
