"""One reporting step: pick the next epoch, measure, commit, sign, post.

Which epoch: the one after ``lastAttestedEpoch()`` on-chain, if it has ended.
The chain is the daemon's only memory, which is what makes it crash-safe: a
restarted daemon neither posts an epoch twice nor skips one, and catches up in
order one epoch per step. A hub that has never been attested starts at the
latest ended epoch (history before an oracle set existed is not back-filled).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from gpucap.attestation import EpochCommitment, NodeLeaf, build_commitment, sign_report
from oracle.aggregation import AggregationPolicy, NodeFigures, Rejection, aggregate
from oracle.chain import ChainClient, HubState
from oracle.collectors.base import TelemetrySource
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings
from oracle.errors import AttestationRejected, AttestationReverted, QuorumUnavailable
from oracle.proofs import proofs_document, proofs_path, write_proofs
from oracle.telemetry import EpochWindow, NodeInfo

log = logging.getLogger("gpucap.oracle")


class ReportStatus(StrEnum):
    ATTESTED = "attested"
    NOTHING_TO_DO = "nothing_to_do"  # the next epoch has not ended yet
    NO_NODES = "no_nodes"  # nothing registered to measure, or every node excluded
    ALREADY_ATTESTED = "already_attested"  # another transmitter won the race


@dataclass(frozen=True)
class ReportOutcome:
    status: ReportStatus
    epoch: int | None = None
    tx_hash: str | None = None
    gas_used: int | None = None
    proofs_path: Path | None = None


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
        self.policy = policy or AggregationPolicy()

    @staticmethod
    def next_epoch(state: HubState) -> int | None:
        """The epoch to attest now, or None if it has not ended yet."""
        latest_ended = state.current_epoch - 1
        epoch = state.last_attested_epoch + 1 if state.last_attested_epoch else latest_ended
        return epoch if 1 <= epoch <= latest_ended else None

    def report_once(self) -> ReportOutcome:
        """Attest at most one epoch; returns what happened. Raises OracleError subclasses."""
        state = self.chain.hub_state()
        epoch = self.next_epoch(state)
        if epoch is None:
            return ReportOutcome(ReportStatus.NOTHING_TO_DO)
        nodes = self.chain.measurable_nodes()
        if not nodes:
            log.info("epoch %d: no registered nodes to measure", epoch)
            return ReportOutcome(ReportStatus.NO_NODES, epoch)

        window = self.chain.epoch_window(epoch)
        leaves, excluded, efficiency = self.measure(nodes, window)
        if not leaves:
            log.warning("epoch %d: every node was excluded; nothing to attest", epoch)
            return ReportOutcome(ReportStatus.NO_NODES, epoch)
        commitment = build_commitment(epoch, leaves, state.config_version)
        signatures = sign_report(
            commitment.report,
            self._signing_keys(state.quorum),
            self.chain.deployment.chain_id,
            self.chain.hub.address,
        )
        signers = [s.signer for s in signatures]
        extras = {"excluded": excluded, "efficiency": efficiency}
        self._write(commitment, signers, None, extras)
        try:
            posted = self.chain.post_attestation(
                commitment.report, signatures, self.transmitter, self.receipt_timeout
            )
        except (AttestationRejected, AttestationReverted) as exc:
            if self.chain.hub_state().last_attested_epoch < epoch:
                raise
            log.info("epoch %d was attested by another transmitter (%s)", epoch, exc)
            if self.chain.epoch_root(epoch) != commitment.report.root:
                # Our file would hand out proofs against a root that is not on-chain.
                proofs_path(self.proofs_dir, epoch).unlink(missing_ok=True)
                log.warning("epoch %d: on-chain root differs from ours; proofs file removed", epoch)
            return ReportOutcome(ReportStatus.ALREADY_ATTESTED, epoch)
        path = self._write(
            commitment,
            signers,
            {
                "txHash": posted.tx_hash,
                "blockNumber": posted.block_number,
                "gasUsed": posted.gas_used,
            },
            extras,
        )
        log.info(
            "epoch %d attested: %d nodes, root 0x%s, %d Wh, %d mGPUh, tx %s (gas %d)",
            epoch,
            commitment.report.node_count,
            commitment.report.root.hex(),
            commitment.report.total_energy_wh,
            commitment.report.total_milli_gpu_hours,
            posted.tx_hash,
            posted.gas_used,
        )
        return ReportOutcome(ReportStatus.ATTESTED, epoch, posted.tx_hash, posted.gas_used, path)

    def measure(
        self, nodes: Sequence[NodeInfo], window: EpochWindow
    ) -> tuple[list[NodeLeaf], list[dict], dict[str, dict]]:
        """Leaves of the nodes whose telemetry makes sense, the excluded ones with
        their reasons, and each leaf's efficiency figures (see oracle.aggregation)."""
        telemetry = self.source.telemetry(nodes, window)
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
            leaves.append(_leaf(node.node_id, window.epoch, result))
            efficiency[str(node.node_id)] = result.efficiency_json(node.reference_power_w)
        return leaves, excluded, efficiency

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


def _leaf(node_id: int, epoch: int, figures: NodeFigures) -> NodeLeaf:
    m = figures.measurement
    return NodeLeaf(
        node_id,
        epoch,
        m.uptime_bps,
        m.utilization_bps,
        m.sample_coverage_bps,
        m.energy_wh,
        m.milli_gpu_hours,
    )


def build_reporter(settings: OracleSettings, source: TelemetrySource | None = None) -> Reporter:
    """A Reporter wired from settings (simulated fleet unless a source is given)."""
    chain = ChainClient.connect(settings.rpc_url, str(settings.manifest_path))
    return Reporter(
        chain,
        source or SimulatedFleet(settings.fleet_seed, settings.fleet_samples_per_epoch),
        settings.private_keys(),
        settings.proofs_dir,
        settings.receipt_timeout_seconds,
    )


def report_once(settings: OracleSettings | None = None) -> ReportOutcome:
    """One reporting step from environment settings: what ``run --once`` does."""
    return build_reporter(settings or OracleSettings()).report_once()
