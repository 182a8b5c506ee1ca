"""Proofs files for attested epochs this oracle missed, rebuilt from the quorum board.

Why: each oracle publishes its own folder of epoch files, and readers (settlement,
claims) take any folder whose file verifies against the chain. An oracle that was
down while the others attested has no file for those epochs, so its folder has
holes; back from a restart it fills them from what the quorum agreed.

Where from: the board (oracle/quorum.py) keeps, per epoch, every oracle's signed
report and the leaves it commits to. The board holds no authority: a file is
written only from an entry whose leaves rebuild a tree whose root is the root
OracleHub stored for that epoch, so a wrong, stale or forged entry can never
become a file. Epochs with no such entry (board expired or wiped, root not on
chain yet) are logged and looked at again later, never written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account

from gpucap.attestation import (
    EpochCommitment,
    NodeLeaf,
    build_commitment,
    report_digest,
)
from oracle.chain import ChainClient, HubState
from oracle.proofs import proofs_document, proofs_path, write_proofs
from oracle.quorum import QuorumBoard, report_from_json

log = logging.getLogger("gpucap.oracle.recovery")

ZERO_ROOT = bytes(32)


class ProofsRecovery:
    """Fills holes in ``proofs_dir`` among the last ``lookback_epochs`` attested epochs."""

    def __init__(
        self,
        board: QuorumBoard,
        chain: ChainClient,
        proofs_dir: Path,
        lookback_epochs: int = 64,
        per_step: int = 8,
        retry_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.chain = chain
        self.proofs_dir = proofs_dir
        self.lookback_epochs = lookback_epochs
        self.per_step = per_step  # bounded: recovering never holds up attesting for long
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._not_before: dict[int, float] = {}  # epoch → when to look again (unresolved)

    def missing(self, state: HubState) -> list[int]:
        """Attested-range epochs with no file here, newest first, not cooling down."""
        last = state.last_attested_epoch
        if not last or self.lookback_epochs <= 0:
            return []
        now = self._clock()
        first = max(1, last - self.lookback_epochs + 1)
        return [
            epoch
            for epoch in range(last, first - 1, -1)
            if self._not_before.get(epoch, 0.0) <= now
            and not proofs_path(self.proofs_dir, epoch).exists()
        ]

    def recover(self, state: HubState) -> list[int]:
        """Write what can be verified for up to ``per_step`` missing epochs; the
        epochs written. Raises the board's or the node's errors (the step retries)."""
        written = []
        for epoch in self.missing(state)[: self.per_step]:
            if self._recover_epoch(epoch):
                written.append(epoch)
                self._not_before.pop(epoch, None)
            else:
                self._not_before[epoch] = self._clock() + self.retry_after_s
        return written

    def _recover_epoch(self, epoch: int) -> bool:
        root = self.chain.epoch_root(epoch)
        if root == ZERO_ROOT:
            # Not attested (yet, or skipped for good): nothing to recover, look again later.
            return False
        entries = self.board.entries(epoch)
        commitment: EpochCommitment | None = None
        signers: list[str] = []
        for signer, entry in sorted(entries.items()):
            rebuilt = self._rebuild(epoch, signer, entry)
            if rebuilt is None or rebuilt.report.root != root:
                continue
            commitment = commitment or rebuilt
            if self._signed_by(rebuilt, entry, signer):
                signers.append(signer)
        if commitment is None:
            log.warning(
                "epoch %d: no proofs file here and no board entry (of %d) rebuilds the"
                " attested root 0x%s; not written, looking again in %.0fs",
                epoch,
                len(entries),
                root.hex(),
                self.retry_after_s,
            )
            return False
        posted = self.chain.find_attestation(epoch)
        document = proofs_document(
            commitment,
            chain_id=self.chain.deployment.chain_id,
            oracle_hub=self.chain.hub.address,
            signers=signers,
            attestation=None
            if posted is None
            else {
                "txHash": posted.tx_hash,
                "blockNumber": posted.block_number,
                "gasUsed": posted.gas_used,
            },
        )
        document["recovered"] = {
            "from": "quorum board",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_proofs(self.proofs_dir, epoch, document)
        log.info(
            "epoch %d: proofs file recovered from the quorum board: %d leaves, root 0x%s"
            " (matches OracleHub), signed by %s",
            epoch,
            commitment.report.node_count,
            root.hex(),
            ", ".join(signers) or "no verifiable signer",
        )
        return True

    @staticmethod
    def _rebuild(epoch: int, signer: str, entry: dict) -> EpochCommitment | None:
        try:
            report = report_from_json(entry["report"])
            leaves = [NodeLeaf.from_values(row) for row in entry["leaves"]]
            rebuilt = build_commitment(epoch, leaves, report.config_version)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("epoch %d: malformed board entry from %s skipped (%s)", epoch, signer, exc)
            return None
        return rebuilt if rebuilt.report == report else None

    def _signed_by(self, commitment: EpochCommitment, entry: dict, signer: str) -> bool:
        digest = report_digest(
            commitment.report, self.chain.deployment.chain_id, self.chain.hub.address
        )
        try:
            signature = bytes.fromhex(str(entry["signature"]).removeprefix("0x"))
            recovered = Account._recover_hash(digest, signature=signature)
        except Exception:  # noqa: BLE001 - any unreadable signature is "not signed by it"
            # (eth-keys raises BadSignature, ValidationError, IndexError...: one malformed
            # board entry must not stop the recovery of this and every older epoch)
            return False
        return recovered.lower() == signer.lower()
