"""One reporting step: pick the next epoch, measure, commit, sign, post.

Which epoch: the one after ``lastAttestedEpoch()`` on-chain, if it has ended,
so a restarted daemon catches up late epochs in order, one per step. What this
oracle has sent is persisted before it is sent (oracle/state.py), so a daemon
killed at any point neither posts an epoch twice nor loses track of a
transaction in flight. A hub that has never been attested starts at the latest
ended epoch (history before an oracle set existed is not back-filled, and the
daemon says so).

Reorgs. Every attestation the oracle sees land (its own or another transmitter's)
is recorded with its block and its quorum-signed call. Each step compares the
recorded block hashes (the last ``reorg_window_blocks`` blocks, and any epoch
above the hub's ``lastAttestedEpoch()``, so a reorg of any depth that took the
newest ones is seen) with the chain. An attestation whose block left the chain and
that the surviving chain does not hold is sent again: the same report and
signatures (valid for that epoch on any branch of this chain; the hub accepts an
ended, unattested epoch once), from this oracle's transmitter with a fresh nonce,
oldest epoch first, one per step. Every oracle that recorded it does so; the hub
takes the first, and the others meet ``OracleEpochAlreadyAttested`` (in the
simulation or as a reverted transaction) and record the epoch as done. Only a
chain that is not this one any more (a new genesis block) or a hub without code
stops the daemon (ChainReset), with the reason logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from gpucap.attestation import (
    UINT16_MAX,
    Cumulative,
    EpochCommitment,
    NodeLeaf,
    OracleSignature,
    build_commitment,
    sign_report,
)
from oracle.aggregation import AggregationPolicy, NodeFigures, Rejection, aggregate
from oracle.chain import ChainClient, HubState, PostedAttestation, SignedAttestation
from oracle.challenges import ChallengedSource
from oracle.collectors.base import TelemetrySource
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings
from oracle.cumulative import BaseUnavailable, CumulativeBases
from oracle.errors import (
    AttestationRejected,
    AttestationReverted,
    OracleConfigError,
    QuorumUnavailable,
    TransactionDropped,
)
from oracle.proofs import proofs_document, proofs_path, read_proofs, write_proofs
from oracle.quorum import QuorumBoard, QuorumCoordinator, Tolerance
from oracle.recovery import ProofsRecovery
from oracle.state import Attestation, ProgressStore
from oracle.telemetry import EpochWindow, NodeInfo

log = logging.getLogger("gpucap.oracle")

NO_ROOT = bytes(32)  # OracleHub.epochAttestation's root for an epoch never attested
# On a first start, attestations already on the hub are recorded this far back at most.
_FOLLOW_BACK_EPOCHS = 16


class ReportStatus(StrEnum):
    ATTESTED = "attested"
    NOTHING_TO_DO = "nothing_to_do"  # the next epoch has not ended yet
    NO_NODES = "no_nodes"  # nothing registered to measure, or every node excluded
    ALREADY_ATTESTED = "already_attested"  # another transmitter won the race
    WAITING = "waiting"  # quorum mode: not enough matching signatures yet, or not our turn
    NOT_OBSERVED = "not_observed"  # this oracle was not watching during the epoch: abstains
    NO_BASE = "no_base"  # an attested earlier epoch's leaves are not here, verified: abstains


@dataclass(frozen=True)
class ReportOutcome:
    status: ReportStatus
    epoch: int | None = None
    tx_hash: str | None = None
    gas_used: int | None = None
    proofs_path: Path | None = None
    excluded_nodes: int | None = None  # nodes left out of this epoch's leaf set


class Reporter:
    """Holds the oracle keys (see oracle.config on dev-chain key handling)."""

    def __init__(
        self,
        chain: ChainClient,
        source: TelemetrySource,
        private_keys: Sequence[str],
        proofs_dir: Path,
        receipt_timeout: float = 120.0,
        policy: AggregationPolicy | None = None,
        progress: ProgressStore | None = None,
        coordinator: QuorumCoordinator | None = None,
        replace_after: float = 60.0,
        fee_bump_percent: int = 25,
        reorg_window_blocks: int = 64,
        recovery: ProofsRecovery | None = None,
        peer_proofs_dirs: Sequence[Path] = (),
    ) -> None:
        if not private_keys:
            raise QuorumUnavailable(0, 1)
        self.chain = chain
        self.source = source
        self._keys = list(private_keys)
        # The first key pays gas; any account may transmit, the signatures are the authority.
        self.transmitter: LocalAccount = Account.from_key(self._keys[0])
        self.proofs_dir = proofs_dir
        self.receipt_timeout = receipt_timeout
        # A posted attestation pending this long is replaced with fees raised by this much.
        self.replace_after = replace_after
        self.fee_bump_percent = fee_bump_percent
        # Attestations mined in the last this-many blocks are checked against the chain.
        self.reorg_window_blocks = reorg_window_blocks
        self.policy = policy or AggregationPolicy()
        # Without a file, progress lives in memory: fine for tests, not crash-safe.
        self.progress = progress or ProgressStore(":memory:", chain.chain_identity())
        self.last_hub_state: HubState | None = None
        # Quorum mode: one key here, the other signatures come through Redis.
        self.coordinator = coordinator
        # Quorum mode: rebuilds files for attested epochs this oracle missed (while down).
        self.recovery = recovery
        self._last_wait: tuple[int, str] | None = None
        # Quorum mode: proofs files written before knowing who attests (epoch → our root).
        self._unconfirmed_files: dict[int, bytes] = {}
        self._measured: tuple[tuple[int, tuple[NodeInfo, ...]], tuple] | None = None
        # Cumulative counters build on attested leaves only (oracle/cumulative.py).
        self.bases = CumulativeBases(chain, [proofs_dir, *peer_proofs_dirs])

    @property
    def signer_addresses(self) -> list[str]:
        return [Account.from_key(k).address for k in self._keys]

    @staticmethod
    def next_epoch(state: HubState) -> int | None:
        """The epoch to attest now, or None if it has not ended yet."""
        latest_ended = state.current_epoch - 1
        epoch = state.last_attested_epoch + 1 if state.last_attested_epoch else latest_ended
        return epoch if 1 <= epoch <= latest_ended else None

    def _first_watched(self, epoch: int, state: HubState) -> int:
        """The first ended epoch from ``epoch`` on that this oracle watched (``epoch``
        itself when it did, or when none did).

        Epochs are attested in increasing order, and an oracle never signs an epoch it
        did not watch: if none of the oracles watched ``epoch`` (all were down), keeping
        to it would stop attestation for good. So an oracle signs the first later epoch
        it did watch, and the epoch is passed over once a quorum has signed a later one.
        An epoch a quorum watched is never lost this way: with a quorum above half the
        set, the oracles that did not watch it are fewer than a quorum, so they cannot
        attest a later epoch before it. The counters' base is unaffected (it is the
        newest attested leaf, whatever was passed over).
        """
        latest_ended = state.current_epoch - 1
        if epoch >= latest_ended:
            return epoch
        for candidate in range(epoch, latest_ended + 1):
            if self.source.observed_s(self.chain.epoch_window(candidate)) > 0:
                if candidate != epoch and self._last_wait != (epoch, "passed_over"):
                    missed = f"{epoch}" if candidate == epoch + 1 else f"{epoch}..{candidate - 1}"
                    log.warning(
                        "epoch %s: this oracle was not sampling; signing epoch %d, the first"
                        " ended one it watched (an epoch no quorum watched is passed over)",
                        missed,
                        candidate,
                    )
                    self._last_wait = (epoch, "passed_over")
                return candidate
        return epoch

    def report_once(self) -> ReportOutcome:
        """Attest at most one epoch; returns what happened. Raises OracleError subclasses.

        First settles any transaction a previous run left in flight (see
        oracle.state), then sends again an attestation a reorg took away, then
        attests ``lastAttestedEpoch() + 1`` if it has ended (or the first later ended
        epoch this oracle watched, when it did not watch that one: ``_first_watched``).
        Raises ChainReset if the chain is not the one the state was recorded on.
        """
        self.chain.check_same_chain(self.progress.chain)
        state = self.chain.hub_state()
        self.last_hub_state = state
        self._finalize_published(state)
        recovered = self._settle_in_flight(state)
        if recovered is not None:
            return recovered
        again = self._recover_reorged(state)
        if again is not None:
            return again
        self._follow_attestations(state)
        epoch = self.next_epoch(state)
        if epoch is None:
            return ReportOutcome(ReportStatus.NOTHING_TO_DO)
        epoch = self._first_watched(epoch, state)
        if state.last_attested_epoch == 0 and epoch > 1:
            log.warning(
                "OracleHub was never attested: starting at epoch %d; epochs 1..%d are not"
                " back-filled",
                epoch,
                epoch - 1,
            )
        nodes = self.chain.measurable_nodes()
        if not nodes:
            log.info("epoch %d: no registered nodes to measure", epoch)
            return ReportOutcome(ReportStatus.NO_NODES, epoch)

        # Measured once per epoch: a quorum oracle polls many times while waiting, and
        # must keep signing the same figures (live data keeps arriving after the end).
        if self._measured is None or self._measured[0] != (epoch, tuple(nodes)):
            window = self.chain.epoch_window(epoch)
            if self.source.observed_s(window) <= 0:
                # Never sign what we did not see (zero-coverage leaves for every node
                # would read as a fleet that went silent): others may attest it.
                if self._last_wait != (epoch, "not_observed"):
                    log.warning(
                        "epoch %d: this oracle was not sampling during it (down or not yet"
                        " started); abstaining",
                        epoch,
                    )
                    self._last_wait = (epoch, "not_observed")
                return ReportOutcome(ReportStatus.NOT_OBSERVED, epoch)
            try:
                bases = self.bases.before(epoch)
            except BaseUnavailable as exc:
                # Signing a base we cannot prove would make our leaves differ from the
                # quorum's (or, alone, publish wrong counters): abstain until we can.
                if self._last_wait != (epoch, "no_base"):
                    log.warning(
                        "epoch %d: cannot prove the cumulative counters' base (%s);"
                        " abstaining until the attested leaves are here",
                        epoch,
                        exc,
                    )
                    self._last_wait = (epoch, "no_base")
                return ReportOutcome(ReportStatus.NO_BASE, epoch)
            self._measured = ((epoch, tuple(nodes)), self.measure(nodes, window, bases))
        leaves, excluded, efficiency, challenges = self._measured[1]
        if not leaves:
            log.warning("epoch %d: every node was excluded; nothing to attest", epoch)
            return ReportOutcome(ReportStatus.NO_NODES, epoch)
        commitment = build_commitment(epoch, leaves, state.config_version)
        extras = {"excluded": excluded, "efficiency": efficiency}
        if challenges is not None:
            extras["challenges"] = challenges
        if self.coordinator is None:
            signatures = sign_report(
                commitment.report,
                self._signing_keys(state.quorum),
                self.chain.deployment.chain_id,
                self.chain.hub.address,
            )
        else:
            result = self.coordinator.gather(commitment, state)
            # What we signed may be another oracle's report within tolerance of ours:
            # publish proofs for that one, whoever transmits (removed if the chain disagrees).
            commitment = result.commitment
            self._write(commitment, [], None, extras)
            self._unconfirmed_files[epoch] = commitment.report.root
            if result.signatures is None:
                assert result.wait is not None
                if (epoch, result.wait.kind) != self._last_wait:  # once per epoch and kind
                    log.info("epoch %d: waiting: %s", epoch, result.wait.reason)
                    self._last_wait = (epoch, result.wait.kind)
                return ReportOutcome(ReportStatus.WAITING, epoch, excluded_nodes=len(excluded))
            signatures = result.signatures
        outcome = self.transmit(commitment, signatures, extras)
        return replace(outcome, excluded_nodes=len(excluded))

    def recover_missed_proofs(self) -> list[int]:
        """Write proofs files for attested epochs this folder lacks (quorum mode; see
        oracle/recovery.py); the epochs written. Uses the hub state of the last step."""
        if self.recovery is None or self.last_hub_state is None:
            return []
        return self.recovery.recover(self.last_hub_state)

    def transmit(
        self, commitment: EpochCommitment, signatures: list[OracleSignature], extras: dict
    ) -> ReportOutcome:
        """Write the proofs, then post crash-safely: persist the signed tx, send, wait."""
        epoch = commitment.report.epoch
        signers = [s.signer for s in signatures]
        self._write(commitment, signers, None, extras)
        try:
            signed = self.chain.prepare_attestation(commitment.report, signatures, self.transmitter)
            self.progress.record_sent(signed, commitment.report.root)
            self.chain.send(signed)
            posted = self.chain.wait(signed, self.receipt_timeout)
        except (AttestationRejected, AttestationReverted, TransactionDropped) as exc:
            if isinstance(exc, AttestationReverted | TransactionDropped):
                self.progress.mark(exc.tx_hash, "reverted")
            if self.chain.hub_state().last_attested_epoch < epoch:
                raise
            log.info("epoch %d was attested by another transmitter (%s)", epoch, exc)
            self._drop_proofs_unless_on_chain(epoch, commitment.report.root)
            return ReportOutcome(ReportStatus.ALREADY_ATTESTED, epoch)
        self.progress.mark(posted.tx_hash, "confirmed")
        self._remember(epoch, commitment.report.root, _call_data(signed), posted)
        self._unconfirmed_files.pop(epoch, None)
        path = self._write(commitment, signers, _attestation_json(posted), extras)
        log.info(
            "epoch %d attested: %d nodes, root 0x%s, %d J, %d mGPUh, tx %s (gas %d)",
            epoch,
            commitment.report.node_count,
            commitment.report.root.hex(),
            commitment.report.total_energy_joules,
            commitment.report.total_milli_gpu_hours,
            posted.tx_hash,
            posted.gas_used,
        )
        return ReportOutcome(ReportStatus.ATTESTED, epoch, posted.tx_hash, posted.gas_used, path)

    def _settle_in_flight(self, state: HubState) -> ReportOutcome | None:
        """Finish what a previous run sent: never build a second transaction for it.

        All attempts for one epoch share one nonce (a replacement only raises the
        fees), so at most one of them can ever be mined. An attempt still pending
        ``replace_after`` seconds after it was sent is replaced by one paying
        ``fee_bump_percent`` more; whichever the chain takes confirms the epoch.
        """
        by_epoch: dict[int, list[SignedAttestation]] = {}
        for signed in self.progress.in_flight():
            by_epoch.setdefault(signed.epoch, []).append(signed)
        for epoch, attempts in sorted(by_epoch.items()):
            try:
                posted = next(
                    (p for a in attempts if (p := self.chain.receipt(a)) is not None), None
                )
                if posted is None and state.last_attested_epoch >= epoch:
                    log.info(
                        "epoch %d: our unmined tx(s) %s superseded (attested by another)",
                        epoch,
                        [a.tx_hash for a in attempts],
                    )
                    for a in attempts:
                        self.progress.mark(a.tx_hash, "retired")
                    continue
                if posted is None:
                    newest = attempts[-1]
                    root, sent_at = self.progress.attempt_info(newest.tx_hash)
                    if time.time() - sent_at >= self.replace_after:
                        bumped = self.chain.replacement(
                            newest, self.transmitter, self.fee_bump_percent
                        )
                        log.warning(
                            "epoch %d: tx %s pending %.0fs; replacing it with %s (higher fees)",
                            epoch,
                            newest.tx_hash,
                            time.time() - sent_at,
                            bumped.tx_hash,
                        )
                        self.progress.record_sent(bumped, bytes.fromhex(root[2:]))
                        attempts.append(bumped)
                        self.chain.send(bumped)
                    else:
                        log.info(
                            "epoch %d: re-sending tx %s left in flight by a previous run",
                            epoch,
                            newest.tx_hash,
                        )
                        self.chain.send(newest)
                    posted = self.chain.wait_any(attempts, self.receipt_timeout)
            except (AttestationReverted, TransactionDropped) as exc:
                log.warning("epoch %d: in-flight tx did not land: %s", epoch, exc)
                self.progress.mark(exc.tx_hash, "reverted")
                continue
            for a in attempts:
                self.progress.mark(
                    a.tx_hash, "confirmed" if a.tx_hash == posted.tx_hash else "retired"
                )
            mined = next(a for a in attempts if a.tx_hash == posted.tx_hash)
            root, _ = self.progress.attempt_info(mined.tx_hash)
            self._remember(epoch, bytes.fromhex(root[2:]), _call_data(mined), posted)
            path = self._record_attestation(epoch, posted)
            log.info(
                "epoch %d attested (recovered after restart): tx %s (gas %d)",
                epoch,
                posted.tx_hash,
                posted.gas_used,
            )
            return ReportOutcome(
                ReportStatus.ATTESTED, epoch, posted.tx_hash, posted.gas_used, path
            )
        return None

    # -- reorgs -------------------------------------------------------------------

    def _recover_reorged(self, state: HubState) -> ReportOutcome | None:
        """Notice recorded attestations whose block left the chain; send the oldest
        one the surviving chain lacks again (one per step). None: nothing to do."""
        head = self.chain.w3.eth.block_number
        for seen in self.progress.attestations_to_check(
            head - self.reorg_window_blocks, state.last_attested_epoch
        ):
            if self.chain.block_hash(seen.block_number) != seen.block_hash:
                self._attestation_left(seen)
        for removed in self.progress.removed_attestations():
            outcome = self._attest_again(removed)
            if outcome is not None:
                return outcome
        return None

    def _attestation_left(self, seen: Attestation) -> None:
        root = self.chain.epoch_root(seen.epoch)
        if root == seen.root:  # mined again in another block, or another oracle re-sent it
            self._follow(seen.epoch, seen.root)
            now = self.progress.attestation(seen.epoch)
            self.progress.orphan_confirmed(seen.epoch, keep=now.tx_hash if now else None)
            return
        log.warning(
            "epoch %d: its attestation (tx %s in block %d) left the chain in a reorg",
            seen.epoch,
            seen.tx_hash,
            seen.block_number,
        )
        self.progress.orphan_confirmed(seen.epoch)
        if root != NO_ROOT:
            log.warning(
                "epoch %d: the surviving chain holds another report (root 0x%s, ours 0x%s)",
                seen.epoch,
                root.hex(),
                seen.root.hex(),
            )
            self._follow(seen.epoch, seen.root)
            return
        self.progress.mark_removed(seen.epoch)

    def _attest_again(self, removed: Attestation) -> ReportOutcome | None:
        """Send the removed attestation's recorded call again (same report and
        signatures) with a fresh nonce; a duplicate of another oracle's is harmless."""
        epoch = removed.epoch
        if self.chain.epoch_root(epoch) != NO_ROOT:
            self._follow(epoch, removed.root)
            return ReportOutcome(ReportStatus.ALREADY_ATTESTED, epoch)
        try:
            signed = self.chain.prepare_again(epoch, removed.call_data, self.transmitter)
        except AttestationRejected as exc:
            if exc.error_name == "OracleEpochAlreadyAttested":
                self._follow(epoch, removed.root)
                return ReportOutcome(ReportStatus.ALREADY_ATTESTED, epoch)
            if exc.error_name == "OracleEpochNotEnded":  # the surviving chain is behind it
                return ReportOutcome(ReportStatus.NOTHING_TO_DO, epoch)
            if exc.error_name == "OracleEpochNotAfterLast":
                # The surviving chain attested a later epoch first: epochs are attested in
                # increasing order, so this one stays unattested for good.
                log.warning(
                    "epoch %d: a later epoch is attested on the surviving chain; the removed"
                    " attestation can never land again (%s)",
                    epoch,
                    exc,
                )
                self.progress.forget_attestation(epoch)
                return None
            # The hub's oracle set or configuration moved on: the signatures are stale.
            log.warning(
                "epoch %d: the removed attestation cannot be sent again (%s); the epoch"
                " will be measured and signed afresh",
                epoch,
                exc,
            )
            self.progress.forget_attestation(epoch)
            return None
        log.warning(
            "epoch %d: attesting it again on the surviving chain, same root 0x%s (tx %s)",
            epoch,
            removed.root.hex(),
            signed.tx_hash,
        )
        self.progress.record_sent(signed, removed.root)
        try:
            self.chain.send(signed)
            posted = self.chain.wait(signed, self.receipt_timeout)
        except (AttestationReverted, TransactionDropped) as exc:
            self.progress.mark(exc.tx_hash, "reverted")
            if self.chain.epoch_root(epoch) == NO_ROOT:
                raise
            log.info("epoch %d was attested again by another transmitter (%s)", epoch, exc)
            self._follow(epoch, removed.root)
            return ReportOutcome(ReportStatus.ALREADY_ATTESTED, epoch)
        self.progress.mark(posted.tx_hash, "confirmed")
        self._remember(epoch, removed.root, removed.call_data, posted)
        # An oracle that only co-signed (or recorded) it may have written no file.
        path = None
        if proofs_path(self.proofs_dir, epoch).exists():
            path = self._record_attestation(epoch, posted)
        log.info(
            "epoch %d attested again after a reorg: tx %s in block %d (gas %d)",
            epoch,
            posted.tx_hash,
            posted.block_number,
            posted.gas_used,
        )
        return ReportOutcome(ReportStatus.ATTESTED, epoch, posted.tx_hash, posted.gas_used, path)

    def _follow(self, epoch: int, ours: bytes | None) -> None:
        """Record the epoch's attestation as the chain now holds it (if found); point
        our proofs file at it, or remove the file if its root is not ours."""
        posted = self.chain.find_attestation(epoch)
        if posted is None:
            return
        root = self.chain.epoch_root(epoch)
        self._remember(epoch, root, self.chain.call_data(posted.tx_hash), posted)
        if ours is None:
            return
        if root == ours:
            if proofs_path(self.proofs_dir, epoch).exists():
                self._record_attestation(epoch, posted)
        else:
            self._drop_proofs_unless_on_chain(epoch, ours)

    def _follow_attestations(self, state: HubState) -> None:
        """Record the attestations that landed since the last one recorded, whoever
        sent them: what a reorg may take away later, and the call to send again."""
        recorded = self.progress.last_recorded_epoch()
        last = state.last_attested_epoch
        for epoch in range(max(recorded + 1, last - _FOLLOW_BACK_EPOCHS + 1, 1), last + 1):
            self._follow(epoch, None)

    def _remember(
        self, epoch: int, root: bytes, call_data: bytes, posted: PostedAttestation
    ) -> None:
        self.progress.record_attestation(
            Attestation(
                epoch,
                root,
                call_data,
                posted.tx_hash,
                posted.block_number,
                posted.block_hash,
                "on_chain",
            )
        )

    def _finalize_published(self, state: HubState) -> None:
        """Once another transmitter attested an epoch we published proofs for,
        record its transaction in our file, or remove the file if the root is not ours."""
        for epoch in sorted(e for e in self._unconfirmed_files if e <= state.last_attested_epoch):
            root = self._unconfirmed_files.pop(epoch)
            if self.chain.epoch_root(epoch) != root:
                self._drop_proofs_unless_on_chain(epoch, root)
                continue
            posted = self.chain.find_attestation(epoch)
            if posted is not None:
                self._record_attestation(epoch, posted)

    def _record_attestation(self, epoch: int, posted: PostedAttestation) -> Path | None:
        """Add the receipt to the proofs file written before the crash."""
        try:
            document = read_proofs(self.proofs_dir, epoch)
        except (OSError, ValueError):
            log.warning("epoch %d: proofs file missing after restart", epoch)
            return None
        document["attestation"] = _attestation_json(posted)
        return write_proofs(self.proofs_dir, epoch, document)

    def _drop_proofs_unless_on_chain(self, epoch: int, root: bytes) -> None:
        if self.chain.epoch_root(epoch) != root:
            # Our file would hand out proofs against a root that is not on-chain.
            proofs_path(self.proofs_dir, epoch).unlink(missing_ok=True)
            log.warning("epoch %d: on-chain root differs from ours; proofs file removed", epoch)

    def measure(
        self,
        nodes: Sequence[NodeInfo],
        window: EpochWindow,
        bases: dict[int, Cumulative] | None = None,
    ) -> tuple[list[NodeLeaf], list[dict], dict[str, dict], dict[str, dict] | None]:
        """Leaves of the nodes whose telemetry makes sense, the excluded ones with
        their reasons, each leaf's efficiency figures (see oracle.aggregation) and,
        for a challenged source, each node's challenges passed and failed.

        Each leaf's cumulative counters are ``bases[node]`` (the node's newest
        attested leaf; zero if absent) plus the epoch's figures. A node that failed a
        challenge during the epoch is credited no GPU-hours (the leaf keeps its other
        figures): its shortfall is refunded and slashed as any other. The leaf carries
        the challenge counts, so the quorum co-signs them; the failures' reasons are
        in the proofs file (see oracle/challenges.py)."""
        bases = bases or {}
        telemetry = self.source.telemetry(nodes, window)
        challenges = None
        if isinstance(self.source, ChallengedSource):
            counts = self.source.challenge_counts(
                [n.node_id for n in nodes], window.start, window.end
            )
            challenges = {str(node_id): entry for node_id, entry in sorted(counts.items())}
        # The future-timestamp check needs "now": chain time may run ahead of the
        # wall clock on a dev chain that was fast-forwarded, never behind an ended epoch.
        now = max(time.time(), float(window.end))
        leaves: list[NodeLeaf] = []
        excluded: list[dict] = []
        efficiency: dict[str, dict] = {}
        for node in nodes:
            result = aggregate(node, telemetry.get(node.node_id), window, now, self.policy)
            if isinstance(result, Rejection):
                log.warning(
                    "epoch %d: node %d excluded: %s", window.epoch, node.node_id, result.reason
                )
                excluded.append({"nodeId": node.node_id, "reason": result.reason})
                continue
            counts = (challenges or {}).get(str(node.node_id), {})
            passed, failed = counts.get("passed", 0), counts.get("failed", 0)
            measured = result.measurement.milli_gpu_hours
            if failed and measured:
                log.warning(
                    "epoch %d: node %d failed %d challenge(s) (%s): no GPU-hours credited"
                    " (%d mGPUh measured)",
                    window.epoch,
                    node.node_id,
                    failed,
                    "; ".join(counts.get("failures", [])),
                    measured,
                )
            leaves.append(
                build_leaf(
                    node.node_id,
                    window.epoch,
                    result,
                    passed=passed,
                    failed=failed,
                    base=bases.get(node.node_id, Cumulative()),
                )
            )
            efficiency[str(node.node_id)] = result.efficiency_json(node.reference_power_w)
        return leaves, excluded, efficiency, challenges

    def _signing_keys(self, quorum: int) -> list[str]:
        """Exactly ``quorum`` keys of current oracles (more signatures only cost gas)."""
        members = [k for k in self._keys if self.chain.is_oracle(Account.from_key(k).address)]
        if len(members) < quorum:
            raise QuorumUnavailable(len(members), quorum)
        members.sort(key=lambda k: int(Account.from_key(k).address, 16))
        return members[:quorum]

    def _write(
        self,
        commitment: EpochCommitment,
        signers: list[str],
        attestation: dict | None,
        extras: dict,
    ) -> Path:
        document = proofs_document(
            commitment,
            chain_id=self.chain.deployment.chain_id,
            oracle_hub=self.chain.hub.address,
            signers=signers,
            attestation=attestation,
        )
        document.update(extras)
        return write_proofs(self.proofs_dir, commitment.report.epoch, document)


def build_leaf(
    node_id: int,
    epoch: int,
    figures: NodeFigures,
    *,
    passed: int = 0,
    failed: int = 0,
    base: Cumulative | None = None,
) -> NodeLeaf:
    """The leaf an oracle signs for ``figures``: cum* on ``base`` (zero: the node's first
    attested leaf), no delivery credited in an epoch with a failed challenge."""
    m = figures.measurement
    return NodeLeaf.measured(
        node_id,
        epoch,
        uptime_bps=m.uptime_bps,
        utilization_bps=m.utilization_bps,
        sample_coverage_bps=m.sample_coverage_bps,
        utilization_coverage_bps=m.utilization_coverage_bps,
        energy_coverage_bps=m.energy_coverage_bps,
        energy_joules=m.energy_joules,
        # A failed challenge credits no delivery for the epoch (nor in the cumulative).
        milli_gpu_hours=0 if failed else m.milli_gpu_hours,
        busy_gpu_seconds=m.busy_gpu_seconds,
        challenges_passed=min(passed, UINT16_MAX),
        challenges_failed=min(failed, UINT16_MAX),
        base=base or Cumulative(),
    )


def _call_data(signed: SignedAttestation) -> bytes:
    """The ``attest`` call a signed transaction carries."""
    return bytes(HexBytes(TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict()["data"]))


def _attestation_json(posted: PostedAttestation) -> dict:
    return {
        "txHash": posted.tx_hash,
        "blockNumber": posted.block_number,
        "gasUsed": posted.gas_used,
    }


def build_reporter(settings: OracleSettings, source: TelemetrySource | None = None) -> Reporter:
    """A Reporter wired from settings (simulated fleet unless a source is given)."""
    chain = ChainClient.connect(
        settings.rpc_url, str(settings.manifest_path), settings.rpc_timeout_seconds
    )
    progress = ProgressStore(settings.state_path, chain.chain_identity())
    keys = settings.private_keys()
    coordinator = None
    recovery = None
    if settings.quorum_redis_url:
        if len(keys) != 1:
            raise OracleConfigError(
                f"quorum mode signs with exactly one key per oracle process, not {len(keys)}"
            )
        board = QuorumBoard.from_url(
            settings.quorum_redis_url,
            chain.chain_identity(),
            settings.quorum_redis_timeout_seconds,
        )
        tolerance = Tolerance(
            settings.quorum_tolerance_ratio_bps, settings.quorum_tolerance_relative_bps
        )
        coordinator = QuorumCoordinator(
            board, chain, keys[0], settings.transmit_fallback_seconds, tolerance=tolerance
        )
        if settings.proofs_recovery_epochs:
            recovery = ProofsRecovery(
                board, chain, settings.proofs_dir, settings.proofs_recovery_epochs
            )
    return Reporter(
        chain,
        source or SimulatedFleet(settings.fleet_seed, settings.fleet_samples_per_epoch),
        keys,
        settings.proofs_dir,
        settings.receipt_timeout_seconds,
        progress=progress,
        coordinator=coordinator,
        replace_after=settings.replace_after_seconds,
        fee_bump_percent=settings.fee_bump_percent,
        reorg_window_blocks=settings.reorg_window_blocks,
        recovery=recovery,
        peer_proofs_dirs=settings.peer_proofs_dirs,
    )


def report_once(settings: OracleSettings | None = None) -> ReportOutcome:
    """One reporting step from environment settings: what ``run --once`` does."""
    return build_reporter(settings or OracleSettings()).report_once()
