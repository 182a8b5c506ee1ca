"""OracleHub: oracle set, quorum-signed epoch attestations, leaf proofs."""

from __future__ import annotations

import brownie
import pytest
from brownie import MockNodeCount, OracleHub, chain
from brownie.test import given
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from web3 import Web3

from gpucap.attestation import (
    LEAF_ENCODING,
    Cumulative,
    EpochReport,
    NodeLeaf,
    build_commitment,
    leaf_hash,
    report_digest,
)
from gpucap.merkle import StandardMerkleTree
from tests.oracle.hub_helpers import (
    ORACLE_KEYS,
    STRANGER_KEY,
    address_of,
    commitment_for,
    end_epoch,
    random_leaves,
    recovered_signer,
    signatures,
)
from tests.support.errors import bytes_arg, err

# brownie 1.22 flags its own chain.sleep/mine as direct rpc calls.
pytestmark = pytest.mark.filterwarnings("ignore:rpc\\.(sleep|mine) should not:FutureWarning")

EPOCH_SECONDS = 60
ORACLE_ADMIN_ROLE = bytes(Web3.keccak(text="ORACLE_ADMIN_ROLE"))
# Per-node bounds for a 60 s epoch (see OracleHub): 4096 GPUs × 60 s.
MAX_NODE_MGPUH = 4096 * 60 * 1000 // 3600
MAX_NODE_J = 4096 * 2000 * 60


@pytest.fixture(scope="module")
def hub(system, register_node):
    """The deployed hub (oracles 6, 7, 8; quorum 2) with three registered nodes."""
    for _ in range(3):
        register_node()
    return system.oracle_hub


@pytest.fixture(scope="module")
def big_hub(admin, oracles):
    """A hub whose registry reports 10,000 nodes: fleet-size tests without registering them."""
    registry = MockNodeCount.deploy(10_000, {"from": admin})
    genesis = chain[-1].timestamp
    return OracleHub.deploy(admin, registry, genesis, EPOCH_SECONDS, oracles, 2, {"from": admin})


@pytest.fixture(scope="module", autouse=True)
def _deploy_before_snapshot(hub, big_hub):
    """Module state exists before fn_isolation's snapshot, so no test reverts it away."""


def attest(hub, commitment, keys=ORACLE_KEYS[:2], sender=None, report=None):
    report = report or commitment.report
    return hub.attest(
        report.as_tuple(), signatures(hub, report, keys), {"from": sender or brownie.accounts[6]}
    )


def with_report(report: EpochReport, **changes) -> EpochReport:
    fields = {**report.__dict__, **changes}
    return EpochReport(**fields)


def covered_leaf(
    node_id: int, epoch: int, coverage_bps: int, *, energy_joules: int | None, **figures
) -> NodeLeaf:
    """A v2 leaf (NodeLeaf.measured) whose samples covered ``coverage_bps`` of the epoch,
    for utilization and, when ``energy_joules`` is known, energy: an unknown energy
    (None) is 0 J at coverage 0."""
    known = energy_joules is not None
    return NodeLeaf.measured(
        node_id,
        epoch,
        sample_coverage_bps=coverage_bps,
        utilization_coverage_bps=coverage_bps,
        energy_coverage_bps=coverage_bps if known else 0,
        energy_joules=energy_joules if known else 0,
        **figures,
    )


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------


class TestConstructor:
    def test_initial_state_and_events(self, hub, oracles, admin, system):
        assert hub.oracles() == [o.address for o in oracles]
        assert hub.quorum() == 2
        assert hub.configVersion() == 4  # three additions + the quorum
        assert hub.lastAttestedEpoch() == 0
        assert hub.lastAttestedAt() == 0
        assert hub.registry() == system.registry
        assert hub.epochLengthSeconds() == EPOCH_SECONDS
        assert hub.maxNodeMilliGpuHours() == MAX_NODE_MGPUH
        assert hub.maxNodeEnergyJoules() == MAX_NODE_J
        assert hub.hasRole(ORACLE_ADMIN_ROLE, admin)
        events = hub.tx.events
        assert [e["oracle"] for e in events["OracleAdded"]] == [o.address for o in oracles]
        assert [e["configVersion"] for e in events["OracleAdded"]] == [1, 2, 3]
        assert dict(events["QuorumSet"]) == {"quorum": 2, "configVersion": 4}

    def test_zero_registry_reverts(self, admin, oracles):
        with brownie.reverts(err("OracleInvalidRegistry")):
            OracleHub.deploy(admin, brownie.ZERO_ADDRESS, 1, 60, oracles, 2, {"from": admin})

    @pytest.mark.parametrize("genesis,length", [(0, 60), (1, 0), (1, 365 * 86400 + 1)])
    def test_bad_schedule_reverts(self, admin, oracles, system, genesis, length):
        with brownie.reverts(err("OracleInvalidEpochSchedule", genesis, length)):
            OracleHub.deploy(admin, system.registry, genesis, length, oracles, 2, {"from": admin})

    @pytest.mark.parametrize("quorum", [0, 4])
    def test_bad_quorum_reverts(self, admin, oracles, system, quorum):
        with brownie.reverts(err("OracleInvalidQuorum", quorum, 3)):
            OracleHub.deploy(admin, system.registry, 1, 60, oracles, quorum, {"from": admin})

    def test_duplicate_initial_oracle_reverts(self, admin, oracles, system):
        with brownie.reverts(err("OracleAlreadyMember", oracles[0])):
            OracleHub.deploy(
                admin, system.registry, 1, 60, [oracles[0], oracles[0]], 1, {"from": admin}
            )


# ---------------------------------------------------------------------------
# Oracle set administration
# ---------------------------------------------------------------------------


class TestAddOracle:
    def test_adds_and_bumps_version(self, hub, admin, stranger):
        tx = hub.addOracle(stranger, {"from": admin})
        assert dict(tx.events["OracleAdded"]) == {"oracle": stranger, "configVersion": 5}
        assert hub.isOracle(stranger)
        assert hub.oracles()[-1] == stranger
        assert hub.configVersion() == 5

    @pytest.mark.parametrize("who", ["member", "zero"])
    def test_member_or_zero_reverts(self, hub, admin, oracles, who):
        target = oracles[1].address if who == "member" else brownie.ZERO_ADDRESS
        with brownie.reverts(err("OracleAlreadyMember", target)):
            hub.addOracle(target, {"from": admin})

    def test_full_set_reverts(self, hub, admin):
        for i in range(31 - 3):
            hub.addOracle(f"0x{0x1000 + i:040x}", {"from": admin})
        with brownie.reverts(err("OracleSetFull", 31)):
            hub.addOracle(f"0x{0x2000:040x}", {"from": admin})

    def test_non_admin_reverts(self, hub, stranger):
        with brownie.reverts(
            err("AccessControlUnauthorizedAccount", stranger, bytes_arg(ORACLE_ADMIN_ROLE))
        ):
            hub.addOracle(stranger, {"from": stranger})


class TestRemoveOracle:
    def test_removes_swaps_last_in_and_bumps_version(self, hub, admin, oracles):
        tx = hub.removeOracle(oracles[0], {"from": admin})
        assert dict(tx.events["OracleRemoved"]) == {"oracle": oracles[0], "configVersion": 5}
        assert not hub.isOracle(oracles[0])
        assert hub.oracles() == [oracles[2], oracles[1]]
        # the moved member can still be removed (its position was updated)
        hub.setQuorum(1, {"from": admin})
        hub.removeOracle(oracles[2], {"from": admin})
        assert hub.oracles() == [oracles[1]]

    def test_non_member_reverts(self, hub, admin, stranger):
        with brownie.reverts(err("OracleNotMember", stranger)):
            hub.removeOracle(stranger, {"from": admin})

    def test_below_quorum_reverts(self, hub, admin, oracles):
        hub.setQuorum(3, {"from": admin})
        with brownie.reverts(err("OracleInvalidQuorum", 3, 2)):
            hub.removeOracle(oracles[0], {"from": admin})

    def test_non_admin_reverts(self, hub, stranger, oracles):
        with brownie.reverts(
            err("AccessControlUnauthorizedAccount", stranger, bytes_arg(ORACLE_ADMIN_ROLE))
        ):
            hub.removeOracle(oracles[0], {"from": stranger})


class TestSetQuorum:
    def test_sets_and_bumps_version(self, hub, admin):
        tx = hub.setQuorum(3, {"from": admin})
        assert dict(tx.events["QuorumSet"]) == {"quorum": 3, "configVersion": 5}
        assert hub.quorum() == 3

    @pytest.mark.parametrize("quorum", [0, 4])
    def test_out_of_range_reverts(self, hub, admin, quorum):
        with brownie.reverts(err("OracleInvalidQuorum", quorum, 3)):
            hub.setQuorum(quorum, {"from": admin})

    def test_non_admin_reverts(self, hub, stranger):
        with brownie.reverts(
            err("AccessControlUnauthorizedAccount", stranger, bytes_arg(ORACLE_ADMIN_ROLE))
        ):
            hub.setQuorum(1, {"from": stranger})


# ---------------------------------------------------------------------------
# Attestation
# ---------------------------------------------------------------------------


class TestAttest:
    def test_quorum_of_two_attests_and_emits(self, hub, stranger):
        epoch = end_epoch(hub)
        c = commitment_for(hub, epoch, [1, 2, 3])
        tx = attest(hub, c, sender=stranger)  # anyone may transmit
        r = c.report
        assert dict(tx.events["EpochAttested"]) == {
            "epoch": epoch,
            "root": "0x" + r.root.hex(),
            "nodeCount": 3,
            "totalEnergyJoules": r.total_energy_joules,
            "totalMilliGpuHours": r.total_milli_gpu_hours,
            "configVersion": 4,
            "transmitter": stranger,
        }
        assert hub.lastAttestedEpoch() == epoch
        assert hub.lastAttestedAt() == tx.timestamp
        assert hub.epochAttestation(epoch).dict() == {
            "root": "0x" + r.root.hex(),
            "nodeCount": 3,
            "totalEnergyJoules": r.total_energy_joules,
            "totalMilliGpuHours": r.total_milli_gpu_hours,
            "attestedAt": tx.timestamp,
        }

    def test_all_three_signatures_accepted(self, hub):
        epoch = end_epoch(hub)
        attest(hub, commitment_for(hub, epoch, [1]), keys=ORACLE_KEYS)
        assert hub.lastAttestedEpoch() == epoch

    def test_later_epoch_may_skip_ahead(self, hub):
        first = end_epoch(hub)
        end_epoch(hub)
        third = end_epoch(hub)
        attest(hub, commitment_for(hub, first, [1]))
        attest(hub, commitment_for(hub, third, [1]))
        assert hub.lastAttestedEpoch() == third

    def test_quorum_not_met_reverts(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        with brownie.reverts(err("OracleQuorumNotMet", 1, 2)):
            attest(hub, c, keys=ORACLE_KEYS[:1])

    def test_duplicate_signer_reverts(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        sig = signatures(hub, c.report, ORACLE_KEYS[:1])[0]
        with brownie.reverts(err("OracleDuplicateSigner", address_of(ORACLE_KEYS[0]))):
            hub.attest(c.report.as_tuple(), [sig, sig], {"from": brownie.accounts[6]})

    def test_unsorted_signers_revert(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        low, high = signatures(hub, c.report, ORACLE_KEYS[:2])
        with brownie.reverts(
            err("OracleSignersNotAscending", address_of(ORACLE_KEYS[1]), address_of(ORACLE_KEYS[0]))
        ):
            hub.attest(c.report.as_tuple(), [high, low], {"from": brownie.accounts[6]})

    def test_non_member_signer_reverts(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        with brownie.reverts(err("OracleUnknownSigner", address_of(STRANGER_KEY))):
            attest(hub, c, keys=[ORACLE_KEYS[0], STRANGER_KEY])

    def test_malformed_signature_reverts(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        good = signatures(hub, c.report, ORACLE_KEYS[:1])[0]
        with brownie.reverts(err("OracleInvalidSignature", 1)):
            hub.attest(c.report.as_tuple(), [good, good[:64]], {"from": brownie.accounts[6]})

    def test_removed_oracle_rejected_after_removal(self, hub, admin):
        removed = ORACLE_KEYS[2]
        hub.removeOracle(address_of(removed), {"from": admin})
        c = commitment_for(hub, end_epoch(hub), [1])  # signed for the new config version
        with brownie.reverts(err("OracleUnknownSigner", address_of(removed))):
            attest(hub, c, keys=[ORACLE_KEYS[0], removed])

    def test_old_config_version_rejected(self, hub, admin):
        c = commitment_for(hub, end_epoch(hub), [1])
        sigs = signatures(hub, c.report, ORACLE_KEYS[:2])
        hub.setQuorum(2, {"from": admin})  # same quorum, new config version 5
        with brownie.reverts(err("OracleConfigVersionMismatch", 4, 5)):
            hub.attest(c.report.as_tuple(), sigs, {"from": brownie.accounts[6]})
        # claiming the new version with the old signatures recovers strangers
        bumped = with_report(c.report, config_version=5)
        with brownie.reverts(err("OracleUnknownSigner", recovered_signer(hub, bumped, sigs[0]))):
            hub.attest(bumped.as_tuple(), sigs, {"from": brownie.accounts[6]})

    def test_signature_for_other_chain_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        sigs = signatures(hub, c.report, ORACLE_KEYS[:2], chain_id=1)
        with brownie.reverts(err("OracleUnknownSigner", recovered_signer(hub, c.report, sigs[0]))):
            hub.attest(c.report.as_tuple(), sigs, {"from": brownie.accounts[6]})

    def test_signature_for_other_contract_rejected(self, hub, big_hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        sigs = signatures(hub, c.report, ORACLE_KEYS[:2], hub_address=big_hub.address)
        with brownie.reverts(err("OracleUnknownSigner", recovered_signer(hub, c.report, sigs[0]))):
            hub.attest(c.report.as_tuple(), sigs, {"from": brownie.accounts[6]})

    def test_replay_of_same_report_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1, 2])
        sigs = signatures(hub, c.report, ORACLE_KEYS[:2])
        tx = hub.attest(c.report.as_tuple(), sigs, {"from": brownie.accounts[6]})
        epoch = c.report.epoch
        with brownie.reverts(err("OracleEpochAlreadyAttested", epoch, tx.timestamp)):
            hub.attest(c.report.as_tuple(), sigs, {"from": brownie.accounts[7]})

    def test_older_epoch_after_a_newer_one_reverts(self, hub):
        """Strictly increasing: a leaf's cumulative counters build on the node's newest
        earlier leaf, so an older epoch attested after a newer one would change the base
        the newer leaves were built on. A skipped epoch stays unattested for good."""
        older = end_epoch(hub)
        newer = end_epoch(hub)
        newer_tx = attest(hub, commitment_for(hub, newer, [1]))
        c = commitment_for(hub, older, [1, 2, 3], seed=3)
        with brownie.reverts(err("OracleEpochNotAfterLast", older, newer)):
            attest(hub, c)
        assert hub.epochAttestation(older).dict()["attestedAt"] == 0
        assert not hub.verifyLeaf(c.leaves[0].values(), c.proof(c.leaves[0].node_id))
        assert hub.lastAttestedEpoch() == newer
        # The newest itself: already attested (the error a racing transmitter meets).
        with brownie.reverts(err("OracleEpochAlreadyAttested", newer, newer_tx.timestamp)):
            attest(hub, commitment_for(hub, newer, [1, 2]))

    def test_epoch_zero_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        zero = with_report(c.report, epoch=0)
        with brownie.reverts(err("OracleInvalidEpoch", 0)):
            attest(hub, c, report=zero)

    def test_epoch_not_ended_rejected(self, hub):
        current = hub.currentEpoch()
        c = commitment_for(hub, current, [1])
        with brownie.reverts(err("OracleEpochNotEnded", current, hub.epochEnd(current))):
            attest(hub, c)

    def test_empty_root_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        with brownie.reverts(err("OracleEmptyRoot")):
            attest(hub, c, report=with_report(c.report, root=b"\0" * 32))

    @pytest.mark.parametrize("node_count", [0, 4])
    def test_node_count_out_of_range_rejected(self, hub, node_count):
        c = commitment_for(hub, end_epoch(hub), [1])
        with brownie.reverts(err("OracleNodeCountOutOfRange", node_count, 3)):
            attest(hub, c, report=with_report(c.report, node_count=node_count))

    def test_energy_above_bound_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1, 2])
        bad = with_report(c.report, total_energy_joules=2 * MAX_NODE_J + 1)
        with brownie.reverts(err("OracleEnergyOutOfRange", 2 * MAX_NODE_J + 1, 2 * MAX_NODE_J)):
            attest(hub, c, report=bad)

    def test_gpu_hours_above_bound_rejected(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1, 2])
        bad = with_report(c.report, total_milli_gpu_hours=2 * MAX_NODE_MGPUH + 1)
        with brownie.reverts(
            err("OracleGpuHoursOutOfRange", 2 * MAX_NODE_MGPUH + 1, 2 * MAX_NODE_MGPUH)
        ):
            attest(hub, c, report=bad)

    def test_totals_at_bounds_accepted(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1, 2])
        edge = with_report(
            c.report, total_energy_joules=2 * MAX_NODE_J, total_milli_gpu_hours=2 * MAX_NODE_MGPUH
        )
        attest(hub, c, report=edge)
        assert hub.lastAttestedEpoch() == edge.epoch


# ---------------------------------------------------------------------------
# Leaves and proofs
# ---------------------------------------------------------------------------


class TestLeaves:
    @pytest.fixture
    def attested(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1, 2, 3], seed=7)
        attest(hub, c)
        return c

    def test_every_leaf_verifies(self, hub, attested):
        for leaf in attested.leaves:
            proof = attested.proof(leaf.node_id)
            assert hub.verifyLeaf(leaf.values(), proof)
            hub.requireLeaf(leaf.values(), proof)

    def test_forged_leaf_fails(self, hub, attested):
        leaf = attested.leaves[0]
        forged = NodeLeaf(**{**leaf.__dict__, "utilization_bps": leaf.utilization_bps + 1})
        proof = attested.proof(leaf.node_id)
        assert not hub.verifyLeaf(forged.values(), proof)
        with brownie.reverts(err("OracleInvalidProof", leaf.node_id, leaf.epoch)):
            hub.requireLeaf(forged.values(), proof)

    def test_wrong_proof_fails(self, hub, attested):
        leaf = attested.leaves[0]
        other = attested.proof(attested.leaves[1].node_id)
        assert not hub.verifyLeaf(leaf.values(), other)
        assert not hub.verifyLeaf(leaf.values(), [])
        with brownie.reverts(err("OracleInvalidProof", leaf.node_id, leaf.epoch)):
            hub.requireLeaf(leaf.values(), other)

    def test_leaf_of_unattested_epoch_fails(self, hub, attested):
        leaf = attested.leaves[0]
        moved = NodeLeaf(**{**leaf.__dict__, "epoch": leaf.epoch + 1})
        assert not hub.verifyLeaf(moved.values(), attested.proof(leaf.node_id))

    def test_signed_but_out_of_range_leaf_refused(self, hub):
        """Even a leaf the oracles committed to is refused if a value is impossible."""
        epoch = end_epoch(hub)
        ok = (epoch, 10_000, 5_000, 10_000, 10_000, 10_000, 1, 0, 3_600, 10, 10, 3_600, 20)
        bad_rows = [
            (1, epoch, 10_001, *ok[2:]),  # uptime above 100 %
            (1, epoch, *ok[1:4], 10_001, *ok[5:]),  # utilization coverage above 100 %
            (1, epoch, *ok[1:5], 10_001, *ok[6:]),  # energy coverage above 100 %
            (1, epoch, *ok[1:8], MAX_NODE_J + 1, 10, 10, MAX_NODE_J + 1, 20),  # energy bound
            (1, epoch, *ok[1:9], 11, 10, 3_600, 20),  # cumulative below the epoch's figure
            (1, epoch, *ok[1:11], 3_599, 20),  # cumulative energy below the epoch's
        ]
        good = random_leaves(epoch, [2])[0].values()
        tree = StandardMerkleTree.of([*bad_rows, good], LEAF_ENCODING)
        report = EpochReport(epoch, tree.root, 3, 20, 20, hub.configVersion())
        hub.attest(
            report.as_tuple(), signatures(hub, report, ORACLE_KEYS[:2]), {"from": hub.tx.sender}
        )
        assert hub.verifyLeaf(good, tree.proof(len(bad_rows)))
        for index, bad in enumerate(bad_rows):
            assert not hub.verifyLeaf(bad, tree.proof(index))
            with brownie.reverts(err("OracleLeafOutOfRange", 1, epoch)):
                hub.requireLeaf(bad, tree.proof(index))

    def test_single_leaf_tree(self, hub):
        c = commitment_for(hub, end_epoch(hub), [2])
        attest(hub, c)
        assert c.proof(2) == []
        assert c.report.root == leaf_hash(c.leaves[0])
        assert hub.verifyLeaf(c.leaves[0].values(), [])

    def test_v2_leaf_from_the_shared_encoder_verifies(self, hub):
        """A v2 leaf as gpucap.attestation builds it for the oracle and the backend, with
        an unknown energy (coverage 0), challenge counts and chained cumulative counters."""
        first = end_epoch(hub)
        base = covered_leaf(
            2,
            first,
            10_000,
            uptime_bps=10_000,
            utilization_bps=6_000,
            energy_joules=1_234_567,
            milli_gpu_hours=133,
            busy_gpu_seconds=288,
            challenges_passed=2,
        )
        attest(hub, build_commitment(first, [base], hub.configVersion()))
        epoch = end_epoch(hub)
        leaf = covered_leaf(
            2,
            epoch,
            9_000,
            uptime_bps=9_000,
            utilization_bps=5_000,
            energy_joules=None,  # unknown energy: 0 J with coverage 0
            milli_gpu_hours=0,
            busy_gpu_seconds=216,
            challenges_passed=1,
            challenges_failed=1,
            base=Cumulative.of(base),
        )
        assert (leaf.cum_milli_gpu_hours, leaf.cum_energy_joules) == (133, 1_234_567)
        assert leaf.cum_busy_gpu_seconds == 288 + 216
        c = build_commitment(epoch, [leaf, random_leaves(epoch, [3])[0]], hub.configVersion())
        attest(hub, c)
        assert hub.leafHash(leaf.values()) == "0x" + leaf_hash(leaf).hex()
        assert hub.verifyLeaf(leaf.values(), c.proof(2))
        hub.requireLeaf(leaf.values(), c.proof(2))
        assert hub.epochAttestation(epoch).dict()["totalEnergyJoules"] == sum(
            x.energy_joules for x in c.leaves
        )

    def test_leaf_hash_and_digest_match_python(self, hub):
        leaf = random_leaves(5, [3])[0]
        assert hub.leafHash(leaf.values()) == "0x" + leaf_hash(leaf).hex()
        report = build_commitment(5, [leaf], 4).report
        assert (
            hub.reportDigest(report.as_tuple())
            == "0x" + report_digest(report, chain.id, hub.address).hex()
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
# A v2 row draws 8 integers up to 2**64: a dozen of them overran hypothesis' buffer.
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 2**64),  # node id
            st.integers(0, 10_000),
            st.integers(0, 10_000),
            st.integers(0, 10_000),
            st.integers(0, 360_000),  # energy J (bounded so totals stay within the hub's bounds)
            st.integers(0, 100),  # milli-GPU-hours
            st.integers(0, 2**16 - 1),  # challenges passed
            st.integers(0, 2**63),  # cumulative base (milli-GPU-hours, J, busy GPU-seconds)
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda row: row[0],
    )
)
def test_python_proofs_verify_on_chain(big_hub, rows):
    epoch = end_epoch(big_hub)
    leaves = [
        covered_leaf(
            r[0],
            epoch,
            r[3],
            uptime_bps=r[1],
            utilization_bps=r[2],
            energy_joules=r[4] if r[3] and r[4] else None,
            milli_gpu_hours=r[5],
            busy_gpu_seconds=r[5] * 3,
            challenges_passed=r[6],
            base=Cumulative(r[7], r[7], r[7]),
        )
        for r in rows
    ]
    c = build_commitment(epoch, leaves, big_hub.configVersion())
    attest(big_hub, c)
    for leaf in c.leaves:
        assert big_hub.verifyLeaf(leaf.values(), c.proof(leaf.node_id))


# ---------------------------------------------------------------------------
# Epoch clock and staleness
# ---------------------------------------------------------------------------


class TestEpochsAndStaleness:
    def test_epoch_schedule(self, hub):
        genesis = hub.genesisTimestamp()
        assert hub.epochEnd(1) == genesis + EPOCH_SECONDS
        assert hub.epochEnd(7) == genesis + 7 * EPOCH_SECONDS
        now = chain[-1].timestamp
        assert hub.currentEpoch() == (now - genesis) // EPOCH_SECONDS + 1

    def test_current_epoch_zero_before_genesis(self, admin, oracles, system):
        future = OracleHub.deploy(
            admin, system.registry, chain[-1].timestamp + 3600, 60, oracles, 2, {"from": admin}
        )
        assert future.currentEpoch() == 0

    def test_stale_until_first_attestation(self, hub):
        assert hub.isStale(2**255)

    def test_staleness_measured_from_epoch_end(self, hub):
        c = commitment_for(hub, end_epoch(hub), [1])
        attest(hub, c)
        age = chain[-1].timestamp - hub.epochEnd(c.report.epoch)
        assert not hub.isStale(age + 600)
        chain.sleep(1_200)
        chain.mine()
        assert hub.isStale(age + 600)


# ---------------------------------------------------------------------------
# Gas: O(1) in the number of nodes
# ---------------------------------------------------------------------------


def test_attest_gas_is_independent_of_node_count(big_hub):
    gas = {}
    for count in (1, 10_000):
        epoch = end_epoch(big_hub)
        gas[count] = attest(big_hub, commitment_for(big_hub, epoch, range(1, count + 1))).gas_used
    print(
        f"\nOracleHub.attest gas (2-of-3 quorum): 1 node = {gas[1]}, 10,000 nodes = {gas[10_000]}"
    )
    # Only calldata byte values differ (zero bytes cost 4 gas, others 16): a few dozen gas.
    assert abs(gas[10_000] - gas[1]) < 200
