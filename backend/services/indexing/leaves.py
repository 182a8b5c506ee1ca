"""The oracle's published epoch leaves, trusted only as far as the chain's root vouches.

The oracle publishes ``<proofs_dir>/<epoch>.json`` (oracle/proofs.py): every
node's leaf and Merkle proof. Nothing in that file is taken on its word: a leaf
is accepted only if its proof leads from its hash (``gpucap.attestation.leaf_hash``,
as OracleHub hashes it) to the root the OracleHub accepted for the epoch, which
the index holds (``EpochRow.root``). A forged leaf, a file for another root, a
truncated file: each is a logged rejection, never data and never a crash.

Two users: the keepers (delivery proofs, epoch settlement) take leaves from
``load_epoch_proofs``; ``ingest_attested_leaves`` (run by the indexer) keeps the
per-node metrics history the read API serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import EpochRow, LeafIngestRow, NodeMetricRow, utcnow
from gpucap.attestation import AttestationError, NodeLeaf, leaf_hash
from gpucap.merkle import process_proof

log = logging.getLogger(__name__)

# Ingest at most this many epochs per indexer step (a long backlog is caught up over steps).
MAX_EPOCHS_PER_INGEST = 50
# An epoch whose file was missing or wrong is looked at again after this long.
INGEST_RETRY_SECONDS = 30.0


class ProofsUnavailable(RuntimeError):
    """The epoch's file is missing or unreadable (the oracle may not have published it yet)."""


class ProofsMismatch(ProofsUnavailable):
    """The file does not commit to the attested epoch: another root, or not all its leaves."""


@dataclass(frozen=True)
class EpochProofs:
    """An epoch's published leaves, verified against the attested root."""

    epoch: int
    root: str
    node_count: int
    leaves: dict[int, tuple[NodeLeaf, list[str]]] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)  # node id (or -index) → why

    @property
    def complete(self) -> bool:
        """Every attested leaf verified: a node not in ``leaves`` has no leaf in the epoch."""
        return not self.rejected and len(self.leaves) == self.node_count


def _bytes32(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"not a 0x-prefixed 32-byte hex string: {value!r}")
    return bytes.fromhex(value[2:])


def verify_entry(entry: Any, epoch: int, root: bytes) -> tuple[NodeLeaf, list[str]]:
    """One file entry as (leaf, proof), if its proof leads to ``root``; else ValueError."""
    if not isinstance(entry, dict):
        raise ValueError("entry is not an object")
    try:
        leaf = NodeLeaf.from_json(entry)
        proof = [_bytes32(p) for p in entry["proof"]]
    except (KeyError, TypeError, AttestationError) as exc:
        raise ValueError(f"malformed leaf: {exc}") from exc
    if leaf.epoch != epoch:
        raise ValueError(f"leaf is for epoch {leaf.epoch}")
    if process_proof(leaf_hash(leaf), proof) != root:
        raise ValueError(f"proof of node {leaf.node_id} does not lead to the attested root")
    return leaf, ["0x" + p.hex() for p in proof]


# One oracle's folder, or every folder of the quorum's oracles (first that verifies wins).
ProofsDirs = Path | Sequence[Path]


def load_epoch_proofs(
    proofs_dirs: ProofsDirs, epoch: int, root: str, node_count: int
) -> EpochProofs:
    """The verified leaves of ``epoch`` from the first of ``proofs_dirs`` whose file
    commits to the attested ``root`` with every leaf verified; else the best found.

    Each oracle of the quorum publishes its own file; any one that verifies against
    the chain's root is as good as another (the root is the authority, not the
    oracle), so one oracle down, restarted or behind never stalls its readers.
    With no usable file anywhere: ProofsMismatch if some folder holds a wrong one,
    else ProofsUnavailable (none published yet).
    """
    dirs = [proofs_dirs] if isinstance(proofs_dirs, Path) else list(proofs_dirs)
    partial: EpochProofs | None = None
    missing: list[ProofsUnavailable] = []
    wrong: list[ProofsMismatch] = []
    for folder in dirs:
        try:
            proofs = _load_one(folder, epoch, root, node_count)
        except ProofsMismatch as exc:
            wrong.append(exc)
            continue
        except ProofsUnavailable as exc:
            missing.append(exc)
            continue
        if proofs.complete:
            return proofs
        partial = partial or proofs
    if partial is not None:
        return partial
    if wrong:  # said loudly even while another folder may still get a good file
        raise ProofsMismatch("; ".join(str(e) for e in [*wrong, *missing]))
    raise ProofsUnavailable("; ".join(str(e) for e in missing) or f"epoch {epoch}: no folder")


def _load_one(proofs_dir: Path, epoch: int, root: str, node_count: int) -> EpochProofs:
    """The verified leaves of ``epoch`` from one folder's file, against the attested
    ``root`` and ``node_count`` (the index's EpochRow).

    Raises ProofsUnavailable if there is no readable file, ProofsMismatch if the
    file is for another root or holds fewer or more leaves than were attested.
    Leaves that fail verification are listed in ``rejected`` (and logged).
    """
    path = proofs_dir / f"{epoch}.json"
    try:
        doc = json.loads(path.read_text())
        file_root = doc["report"]["root"]
        entries = doc["leaves"]
        if not isinstance(entries, list) or not isinstance(file_root, str):
            raise TypeError("report.root must be a string and leaves a list")
    except FileNotFoundError as exc:
        raise ProofsUnavailable(f"epoch {epoch}: no proofs file at {path}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProofsUnavailable(f"epoch {epoch}: unreadable proofs file {path}: {exc}") from exc
    if file_root.lower() != root.lower():
        raise ProofsMismatch(
            f"epoch {epoch}: {path} holds root {file_root}, the chain attested {root}"
        )
    if len(entries) != node_count:
        raise ProofsMismatch(
            f"epoch {epoch}: {path} lists {len(entries)} leaves, the chain attested {node_count}"
        )
    proofs = EpochProofs(epoch=epoch, root=root, node_count=node_count)
    root_bytes = _bytes32(root)
    for index, entry in enumerate(entries):
        key = entry.get("nodeId") if isinstance(entry, dict) else None
        key = key if isinstance(key, int) else -(index + 1)
        try:
            leaf, proof = verify_entry(entry, epoch, root_bytes)
        except ValueError as exc:
            proofs.rejected[key] = str(exc)
            log.warning("epoch %d: rejected leaf #%d of %s: %s", epoch, index, path, exc)
            continue
        if leaf.node_id in proofs.leaves:
            proofs.rejected[key] = "second leaf for the same node"
            log.warning("epoch %d: %s lists node %d twice", epoch, path, leaf.node_id)
            continue
        proofs.leaves[leaf.node_id] = (leaf, proof)
    return proofs


# ---------------------------------------------------------------------------
# Metrics history (run by the indexer after each step)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestReport:
    epochs: int = 0  # epochs looked at
    leaves: int = 0  # leaves stored
    rejected: int = 0  # leaves refused


def ingest_attested_leaves(
    sessions: sessionmaker[Session],
    proofs_dir: ProofsDirs,
    *,
    max_epochs: int = MAX_EPOCHS_PER_INGEST,
    retry_seconds: float = INGEST_RETRY_SECONDS,
) -> IngestReport:
    """Store the verified leaves of attested epochs not ingested yet (or re-attested).

    Epochs never looked at come first, then the ones waiting longest for a retry.
    Each epoch commits on its own: a crash loses at most the epoch in hand.
    """
    retry_before = utcnow() - timedelta(seconds=retry_seconds)
    with sessions() as session:
        due = session.execute(
            select(EpochRow, LeafIngestRow)
            .outerjoin(LeafIngestRow, LeafIngestRow.epoch == EpochRow.epoch)
            .where(
                or_(
                    LeafIngestRow.epoch.is_(None),
                    LeafIngestRow.root != EpochRow.root,
                    (LeafIngestRow.status != "complete")
                    & (LeafIngestRow.updated_at < retry_before),
                )
            )
            .order_by(
                LeafIngestRow.updated_at.is_not(None), LeafIngestRow.updated_at, EpochRow.epoch
            )
            .limit(max_epochs)
        ).all()
        epochs = [(e.epoch, e.root, e.node_count) for e, _ in due]
    stored = rejected = 0
    for number, root, node_count in epochs:
        with sessions.begin() as session:
            state = session.get(LeafIngestRow, number)
            if state is None or state.root != root:
                if state is not None:
                    session.delete(state)
                    session.flush()
                state = LeafIngestRow(epoch=number, root=root, status="", attempts=0)
                session.add(state)
            before = (state.status, state.reason)
            state.attempts += 1
            try:
                proofs = load_epoch_proofs(proofs_dir, number, root, node_count)
            except ProofsUnavailable as exc:
                state.status = "mismatch" if isinstance(exc, ProofsMismatch) else "unavailable"
                state.reason, state.leaves, state.rejected = str(exc), 0, 0
                state.updated_at = utcnow()  # touch even when nothing changed: retry later
                if (state.status, state.reason) != before:
                    level = logging.WARNING if isinstance(exc, ProofsMismatch) else logging.INFO
                    log.log(level, "leaves of epoch %d not ingested: %s", number, exc)
                continue
            session.execute(delete(NodeMetricRow).where(NodeMetricRow.epoch == number))
            for leaf, proof in proofs.leaves.values():
                session.add(_metric_row(leaf, proof, root))
            state.status = "complete" if proofs.complete else "partial"
            state.leaves, state.rejected = len(proofs.leaves), len(proofs.rejected)
            state.reason = "; ".join(f"{k}: {v}" for k, v in proofs.rejected.items()) or None
            state.updated_at = utcnow()
            stored += len(proofs.leaves)
            rejected += len(proofs.rejected)
    if stored or rejected:
        log.info("ingested %d leaves (%d rejected) of %d epochs", stored, rejected, len(epochs))
    return IngestReport(epochs=len(epochs), leaves=stored, rejected=rejected)


def _metric_row(leaf: NodeLeaf, proof: list[str], root: str) -> NodeMetricRow:
    return NodeMetricRow(
        epoch=leaf.epoch,
        node_id=leaf.node_id,
        root=root,
        uptime_bps=leaf.uptime_bps,
        utilization_bps=leaf.utilization_bps,
        sample_coverage_bps=leaf.sample_coverage_bps,
        utilization_coverage_bps=leaf.utilization_coverage_bps,
        energy_coverage_bps=leaf.energy_coverage_bps,
        challenges_passed=leaf.challenges_passed,
        challenges_failed=leaf.challenges_failed,
        energy_joules=leaf.energy_joules,
        milli_gpu_hours=leaf.milli_gpu_hours,
        cum_milli_gpu_hours=leaf.cum_milli_gpu_hours,
        cum_energy_joules=leaf.cum_energy_joules,
        cum_busy_gpu_seconds=leaf.cum_busy_gpu_seconds,
        leaf_hash="0x" + leaf_hash(leaf).hex(),
        proof=proof,
    )
