"""Stateful property: an OracleHub report is accepted at most once.

Random sequences of valid attestations (possibly skipping epochs), late
attestations of epochs skipped over (refused: epochs are attested in strictly
increasing order), replays of accepted reports, fresh reports
for accepted epochs, reports carrying a removed oracle's signature, oracle-set
and quorum changes, and time passing. Shadow state beside the chain: the oracle
set, quorum, config version, and every accepted epoch with its root, the exact
(report, signatures) that carried it and when it was accepted.

Invariants after every step: lastAttestedEpoch only moves forward and equals the
newest accepted epoch, lastAttestedAt is that
epoch's acceptance time; config version and quorum match the shadow. At the end of
every example: each accepted epoch's stored root is the one first accepted
(never overwritten), epochs skipped over are still empty, the oracle set matches.
"""

from __future__ import annotations

import pytest
from brownie import web3
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from gpucap.attestation import EpochReport
from tests.oracle.hub_helpers import (
    ORACLE_KEYS,
    STRANGER_KEY,
    address_of,
    commitment_for,
    signatures,
)
from tests.support.errors import err
from tests.support.stateful import (
    SnapshotMachine,
    batch_views,
    mine_at_least,
    revert_of,
    run_machine,
    stateful_timeout,
    transact,
)

pytestmark = stateful_timeout

EPOCH_SECONDS = 60
ZERO_ROOT = "0x" + "00" * 32
# Oracle keys the machine may add or remove: the deployed set (6, 7, 8) + account 5.
CANDIDATE_KEYS = [*ORACLE_KEYS, STRANGER_KEY]
NODE_IDS = [1, 2, 3]

pick = st.integers(0, 2**16)


class OracleHubMachine(SnapshotMachine):
    def __init__(self) -> None:
        super().__init__()
        self.members: list[str] = list(ORACLE_KEYS)  # keys, in no particular order
        self.removed: list[str] = []
        self.quorum = 2
        self.config_version = self.hub.configVersion()
        self.last_epoch = 0
        self.skipped: set[int] = set()
        # epoch -> (report, signatures) as accepted
        self.accepted: dict[int, tuple[EpochReport, list[bytes]]] = {}
        self.accepted_at: dict[int, int] = {}  # epoch -> block time of its attestation
        # Epoch the chain's clock has passed the end of (shadowed to skip a call per step).
        self.ended_through = self.hub.currentEpoch() - 1

    # ------------------------------------------------------------------ helpers

    def _ensure_ended(self, epoch: int) -> None:
        """Moves chain time (one mined block) until ``epoch`` has ended."""
        if epoch <= self.ended_through:
            return
        mine_at_least(self.hub.epochEnd(epoch))
        self.ended_through = self.hub.currentEpoch() - 1
        assert self.ended_through >= epoch

    def _signed(self, epoch: int, keys: list[str], seed: int):
        report = commitment_for(self.hub, epoch, NODE_IDS, seed).report
        return report, signatures(self.hub, report, keys)

    def _quorum_keys(self, seed: int) -> list[str]:
        """``quorum`` distinct current members, chosen by ``seed``."""
        start = seed % len(self.members)
        rotated = self.members[start:] + self.members[:start]
        return rotated[: self.quorum]

    # ------------------------------------------------------------------ rules

    @rule(skip=st.integers(0, 2), seed=pick)
    def attest_next_ended_epoch(self, skip: int, seed: int) -> None:
        epoch = self.last_epoch + 1 + skip
        self._ensure_ended(epoch)
        self._accept(epoch, seed)
        assert epoch > self.last_epoch
        self.skipped.update(range(self.last_epoch + 1, epoch))
        self.last_epoch = epoch

    @precondition(lambda self: self.skipped)
    @rule(pick=pick, seed=pick)
    def attest_skipped_epoch_late(self, pick: int, seed: int) -> None:
        """An epoch skipped over is never attested after a newer one (cumulative
        counters chain on the newest earlier leaf); nothing moves."""
        skipped = sorted(self.skipped)
        epoch = skipped[pick % len(skipped)]
        report, sigs = self._signed(epoch, self._quorum_keys(seed), seed)
        assert self._attest_error(report, sigs) == err(
            "OracleEpochNotAfterLast", epoch, self.last_epoch
        )

    @precondition(lambda self: self.accepted)
    @rule(pick=pick)
    def replay_accepted_report(self, pick: int) -> None:
        epochs = sorted(self.accepted)
        report, sigs = self.accepted[epochs[pick % len(epochs)]]
        if report.config_version != self.config_version:
            expected = err(
                "OracleConfigVersionMismatch", report.config_version, self.config_version
            )
        else:
            expected = err(
                "OracleEpochAlreadyAttested", report.epoch, self.accepted_at[report.epoch]
            )
        assert self._attest_error(report, sigs) == expected

    @precondition(lambda self: self.accepted)
    @rule(pick=pick, seed=pick)
    def fresh_report_for_attested_epoch(self, pick: int, seed: int) -> None:
        epochs = sorted(self.accepted)
        epoch = epochs[pick % len(epochs)]
        # A different root than the one accepted: a quorum re-signing history must fail too.
        report, sigs = self._signed(epoch, self._quorum_keys(seed), seed + 1)
        assert self._attest_error(report, sigs) == err(
            "OracleEpochAlreadyAttested", epoch, self.accepted_at[epoch]
        )

    @precondition(lambda self: self.removed)
    @rule(pick=pick, seed=pick)
    def report_signed_by_removed_oracle(self, pick: int, seed: int) -> None:
        epoch = self.last_epoch + 1
        self._ensure_ended(epoch)
        removed = self.removed[pick % len(self.removed)]
        keys = [*self._quorum_keys(seed)[: self.quorum - 1], removed]
        report, sigs = self._signed(epoch, keys, seed)
        assert self._attest_error(report, sigs) == err("OracleUnknownSigner", address_of(removed))

    @rule(pick=pick)
    def add_oracle(self, pick: int) -> None:
        outside = [k for k in CANDIDATE_KEYS if k not in self.members]
        if not outside:
            return
        key = outside[pick % len(outside)]
        emitted = transact(self.hub, "addOracle", (address_of(key),), self.admin)
        self._bumped(emitted, "OracleAdded")
        self.members.append(key)
        if key in self.removed:
            self.removed.remove(key)

    @rule(pick=pick)
    def remove_oracle(self, pick: int) -> None:
        key = self.members[pick % len(self.members)]
        if len(self.members) - 1 < self.quorum:
            expected = err("OracleInvalidQuorum", self.quorum, len(self.members) - 1)
            assert revert_of(self.hub, "removeOracle", address_of(key), sender=self.admin) == (
                expected
            )
            return
        emitted = transact(self.hub, "removeOracle", (address_of(key),), self.admin)
        self._bumped(emitted, "OracleRemoved")
        self.members.remove(key)
        self.removed.append(key)

    @rule(quorum=st.integers(1, len(CANDIDATE_KEYS)))
    def set_quorum(self, quorum: int) -> None:
        if quorum > len(self.members):
            expected = err("OracleInvalidQuorum", quorum, len(self.members))
            assert revert_of(self.hub, "setQuorum", quorum, sender=self.admin) == expected
            return
        emitted = transact(self.hub, "setQuorum", (quorum,), self.admin)
        self._bumped(emitted, "QuorumSet")
        self.quorum = quorum

    @rule(epochs=st.integers(0, 3))
    def advance_time(self, epochs: int) -> None:
        self._ensure_ended(self.ended_through + epochs)

    def _accept(self, epoch: int, seed: int) -> None:
        """Attests ended, never attested `epoch` with a quorum and records it."""
        report, sigs = self._signed(epoch, self._quorum_keys(seed), seed)
        emitted = transact(self.hub, "attest", (report.as_tuple(), sigs), self.transmitter)
        attested = emitted["EpochAttested"]
        assert len(attested) == 1
        assert attested[0]["epoch"] == epoch
        assert attested[0]["root"] == "0x" + report.root.hex()
        assert attested[0]["configVersion"] == self.config_version
        assert epoch not in self.accepted
        self.accepted[epoch] = (report, sigs)
        self.accepted_at[epoch] = web3.eth.get_block("latest")["timestamp"]

    def _bumped(self, emitted, event: str) -> None:
        self.config_version += 1
        assert emitted[event]["configVersion"] == self.config_version

    def _attest_error(self, report, sigs) -> str:
        return revert_of(self.hub, "attest", report.as_tuple(), sigs, sender=self.transmitter)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def hub_matches_shadow(self) -> None:
        last, last_at, version, quorum = batch_views(
            (self.hub, "lastAttestedEpoch", ()),
            (self.hub, "lastAttestedAt", ()),
            (self.hub, "configVersion", ()),
            (self.hub, "quorum", ()),
        )
        assert (last, version, quorum) == (self.last_epoch, self.config_version, self.quorum)
        assert last_at == self.accepted_at.get(self.last_epoch, 0)

    def teardown(self) -> None:
        """Once per example (a full history check after every step would dominate the run):
        every accepted root is still the first one accepted; skipped epochs stay empty."""
        epochs = sorted(self.accepted) + sorted(self.skipped)
        oracles, *attestations = batch_views(
            (self.hub, "oracles", ()), *((self.hub, "epochAttestation", (e,)) for e in epochs)
        )
        assert sorted(oracles) == sorted(address_of(k) for k in self.members)
        for epoch, attestation in zip(epochs, attestations, strict=True):
            expected = self.accepted[epoch][0].root if epoch in self.accepted else bytes(32)
            assert bytes(attestation[0]) == expected, f"epoch {epoch}"


@pytest.fixture(scope="module")
def hub(system, register_node):
    """The deployed hub (oracles 6, 7, 8; quorum 2) and three registered nodes."""
    assert [register_node() for _ in NODE_IDS] == NODE_IDS
    return system.oracle_hub


def test_reports_accepted_at_most_once(hub, admin, relayer):
    run_machine(OracleHubMachine, {"hub": hub, "admin": admin, "transmitter": relayer}, steps=8)
