"""ChallengeJail: anyone jails a node on attested leaves that show failed work challenges in
enough recent epochs; every refusal is a custom error; evidence is used once.

Leaves are real: built by gpucap.attestation (the oracle's encoder), put in a tree with the
fleet's other leaves, and attested on the deployed OracleHub by the dev oracle quorum."""

from __future__ import annotations

import brownie
import pytest
from brownie import web3

from gpucap.attestation import leaf_hash
from tests.contracts.settlement_helpers import attest_leaves
from tests.oracle.hub_helpers import end_epoch
from tests.support.errors import bytes_arg, err
from tests.support.leaves import test_leaf

ACTIVE, JAILED = 1, 2


@pytest.fixture(scope="module")
def jail(system):
    return system.jail


@pytest.fixture(scope="module")
def nodes(register_node):
    """Node under test and a neighbour whose leaves share every tree."""
    return register_node(), register_node()


def _attest(hub, failures: dict[int, int]):
    """Ends an epoch and attests one leaf per node with ``failures[node]`` failed challenges
    (and 3 passed); returns the commitment."""
    epoch = end_epoch(hub)
    leaves = [
        test_leaf(node, epoch, milli_gpu_hours=0 if failed else 8_000, passed=3, failed=failed)
        for node, failed in failures.items()
    ]
    return attest_leaves(hub, epoch, leaves)


def _evidence(commitments, node):
    leaves = [next(lf for lf in c.leaves if lf.node_id == node) for c in commitments]
    return [lf.values() for lf in leaves], [c.proof(node) for c in commitments], leaves


def _hash(leaves) -> str:
    return "0x" + web3.keccak(b"".join(leaf_hash(lf) for lf in leaves)).hex().removeprefix("0x")


def _run(hub, nodes, pattern):
    """Attests one epoch per entry of ``pattern`` (failed challenges of the node under test;
    the neighbour always passes); returns the commitments."""
    node, other = nodes
    return [_attest(hub, {node: failed, other: 0}) for failed in pattern]


# ------------------------------------------------------------------
# jail
# ------------------------------------------------------------------


def test_anyone_jails_a_node_with_failures_in_enough_epochs(jail, hub, registry, nodes, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [2, 1, 4])
    leaves, proofs, raw = _evidence(commitments, node)
    tx = jail.jail(leaves, proofs, {"from": stranger})
    evidence = _hash(raw)
    event = tx.events["NodeJailedForChallenges"]
    assert event["nodeId"] == node
    assert event["evidenceHash"] == evidence
    assert event["reporter"] == stranger
    assert list(event["epochs"]) == [c.report.epoch for c in commitments]
    assert list(event["failed"]) == [2, 1, 4]
    jailed = tx.events["NodeJailed"]
    assert (jailed["nodeId"], jailed["jailer"], jailed["reason"]) == (node, jail, evidence)
    assert tx.return_value == evidence
    assert registry.nodeStatus(node) == JAILED
    assert jail.usedThroughEpoch(node) == commitments[-1].report.epoch
    print(f"GAS ChallengeJail.jail (3 leaves, 2-leaf trees): {tx.gas_used}")


def test_clean_epochs_may_be_in_the_evidence_but_do_not_count(jail, hub, registry, nodes):
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 0, 1, 0, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    jail.jail(leaves, proofs, {"from": web3.eth.accounts[7]})
    assert registry.nodeStatus(node) == JAILED


def test_too_few_failing_epochs_are_refused(jail, hub, registry, nodes, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [5, 0, 7])
    leaves, proofs, _ = _evidence(commitments, node)
    with brownie.reverts(err("ChallengeJailNotEnoughFailures", 2, 3)):
        jail.jail(leaves, proofs, {"from": stranger})
    assert registry.nodeStatus(node) == ACTIVE


def test_a_leaf_of_another_node_is_refused(jail, hub, nodes, stranger):
    node, other = nodes
    commitments = _run(hub, nodes, [1, 1, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    leaves[1], proofs[1] = commitments[1].leaves[1].values(), commitments[1].proof(other)
    with brownie.reverts(err("ChallengeJailForeignNode", node, other)):
        jail.jail(leaves, proofs, {"from": stranger})


def test_epochs_must_be_distinct_and_ascending(jail, hub, nodes, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 1, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    e = [c.report.epoch for c in commitments]
    swapped = ([leaves[0], leaves[2], leaves[1]], [proofs[0], proofs[2], proofs[1]])
    with brownie.reverts(err("ChallengeJailEpochsNotAscending", e[2], e[1])):
        jail.jail(*swapped, {"from": stranger})
    repeated = ([leaves[0], leaves[1], leaves[1]], [proofs[0], proofs[1], proofs[1]])
    with brownie.reverts(err("ChallengeJailEpochsNotAscending", e[1], e[1])):
        jail.jail(*repeated, {"from": stranger})


def test_epochs_before_the_window_are_stale(jail, hub, nodes, admin, stranger):
    node = nodes[0]
    jail.setParams(2, 3, {"from": admin})
    commitments = _run(hub, nodes, [1, 1, 0, 0])
    leaves, proofs, _ = _evidence(commitments, node)
    oldest = commitments[-1].report.epoch - 2
    with brownie.reverts(err("ChallengeJailStaleEpoch", commitments[0].report.epoch, oldest)):
        jail.jail(leaves[:2], proofs[:2], {"from": stranger})
    # The same kind of evidence, recent enough, jails.
    fresh = _run(hub, nodes, [1, 1])
    leaves, proofs, _ = _evidence(fresh, node)
    jail.jail(leaves, proofs, {"from": stranger})


def test_a_leaf_the_hub_did_not_attest_is_refused(jail, hub, nodes, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 1, 0])
    leaves, proofs, _ = _evidence(commitments, node)
    forged = list(leaves[2])
    forged[8] = 3  # challengesFailed: the leaf claims failures the oracles did not sign
    with brownie.reverts(err("ChallengeJailInvalidProof", node, commitments[2].report.epoch)):
        jail.jail([leaves[0], leaves[1], forged], proofs, {"from": stranger})


def test_a_node_already_jailed_or_unknown_is_refused(jail, hub, registry, nodes, admin, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 1, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    registry.jail(node, b"\x01" * 32, {"from": admin})  # the guardian's own jail
    with brownie.reverts(err("ChallengeJailNodeNotActive", node, JAILED)):
        jail.jail(leaves, proofs, {"from": stranger})
    unknown = test_leaf(999, commitments[0].report.epoch).values()
    with brownie.reverts(err("ChallengeJailNodeNotActive", 999, 0)):
        jail.jail([unknown], [[]], {"from": stranger})


def test_evidence_is_used_once_an_unjailed_node_needs_new_failures(
    jail, hub, registry, nodes, admin, stranger
):
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 1, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    jail.jail(leaves, proofs, {"from": stranger})
    tx = registry.unjail(node, b"\x02" * 32, {"from": admin})  # the guardian judged the appeal
    assert tx.events["NodeUnjailed"]["nodeId"] == node
    used = commitments[-1].report.epoch
    with brownie.reverts(err("ChallengeJailEvidenceUsed", node, commitments[0].report.epoch, used)):
        jail.jail(leaves, proofs, {"from": stranger})
    # Two new failing epochs and the newest old one: still refused (the old one is used).
    later = _run(hub, nodes, [1, 1, 1])
    mixed_leaves, mixed_proofs, _ = _evidence(later, node)
    with brownie.reverts(err("ChallengeJailEvidenceUsed", node, used, used)):
        jail.jail([leaves[2], *mixed_leaves], [proofs[2], *mixed_proofs], {"from": stranger})
    jail.jail(mixed_leaves, mixed_proofs, {"from": stranger})
    assert registry.nodeStatus(node) == JAILED


def test_malformed_evidence_is_refused(jail, hub, nodes, stranger):
    node = nodes[0]
    commitments = _run(hub, nodes, [1])
    leaves, proofs, _ = _evidence(commitments, node)
    with brownie.reverts(err("ChallengeJailInvalidEvidence", 0, 0)):
        jail.jail([], [], {"from": stranger})
    with brownie.reverts(err("ChallengeJailInvalidEvidence", 1, 2)):
        jail.jail(leaves, proofs * 2, {"from": stranger})


def test_jail_needs_the_registry_role(jail, hub, registry, nodes, admin, stranger):
    """Without JAILER_ROLE on the registry the whole call reverts (no event, nothing used)."""
    node = nodes[0]
    commitments = _run(hub, nodes, [1, 1, 1])
    leaves, proofs, _ = _evidence(commitments, node)
    role = registry.JAILER_ROLE()
    registry.revokeRole(role, jail, {"from": admin})
    with brownie.reverts(err("AccessControlUnauthorizedAccount", jail, bytes_arg(role))):
        jail.jail(leaves, proofs, {"from": stranger})
    assert jail.usedThroughEpoch(node) == 0


# ------------------------------------------------------------------
# setParams
# ------------------------------------------------------------------


def test_params_are_bounded_and_admin_only(jail, admin, stranger):
    assert tuple(jail.params()) == (3, 24)  # DeployConfig's rule
    tx = jail.setParams(2, 720, {"from": admin})
    assert list(tx.events["JailParamsSet"].values()) == [2, 720]
    assert tuple(jail.params()) == (2, 720)
    for failing, window in ((1, 10), (0, 10), (11, 10), (2, 721)):
        with brownie.reverts(err("ChallengeJailInvalidParams", failing, window, 720)):
            jail.setParams(failing, window, {"from": admin})
    with brownie.reverts(err("AccessControlUnauthorizedAccount", stranger, bytes_arg(b"\0" * 32))):
        jail.setParams(3, 24, {"from": stranger})
