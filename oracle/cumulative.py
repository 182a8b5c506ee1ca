"""The base of each node's cumulative counters, from attested leaves only.

A leaf's ``cum*`` for epoch ``e`` is the node's newest leaf attested for an epoch
before ``e`` (zero if none) plus this epoch's figures (gpucap.attestation). Every
oracle of the quorum must compute the same base, or their leaves differ and no
root gathers a quorum; so the base never comes from what one oracle measured or
signed, only from what the chain attested:

- each attested epoch's leaves are read from this oracle's proofs folder
  (oracle/proofs.py: its own files, or the ones ProofsRecovery rebuilt from the
  quorum board), else from the other oracles' published folders
  (``GPUCAP_ORACLE_PEER_PROOFS_DIRS``), and used only if they rebuild the very root
  OracleHub stored for that epoch (``epochAttestation(e).root``); the root is the
  authority, a folder just carries the leaves;
- epochs with no root on-chain are skipped for good once a later epoch is
  attested (OracleHub attests in strictly increasing order), so they add nothing;
- an attested epoch whose verified leaves this oracle cannot find stops the walk:
  the oracle abstains (``BaseUnavailable``) rather than sign a base it cannot
  prove, and tries again next step (recovery may have filled the hole by then).

The walk is incremental (each epoch read once per process) and starts over from
epoch 1 after a restart, from the same verified files: a restarted oracle
computes the same base as one that never stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from gpucap.attestation import (
    AttestationError,
    Cumulative,
    NodeLeaf,
    build_commitment,
)
from oracle.chain import ChainClient
from oracle.errors import OracleError
from oracle.proofs import proofs_path

log = logging.getLogger("gpucap.oracle.cumulative")

NO_ROOT = bytes(32)


class BaseUnavailable(OracleError):
    """An attested epoch's leaves are not available here, verified: no base can be proven."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(f"epoch {epoch}: {reason}")
        self.epoch = epoch
        self.reason = reason


class CumulativeBases:
    """Each node's counters after the newest attested epoch read so far."""

    def __init__(self, chain: ChainClient, proofs_dirs: Sequence[Path]) -> None:
        self.chain = chain
        self.proofs_dirs = list(proofs_dirs)  # own folder first, then the peers
        self._through = 0  # every attested epoch up to this one is folded in
        self._bases: dict[int, Cumulative] = {}

    def before(self, epoch: int) -> dict[int, Cumulative]:
        """Node id → base for a leaf of ``epoch`` (absent: zero). Raises BaseUnavailable."""
        if epoch - 1 < self._through:
            # Only ever asked for the next epoch to attest, which only moves forward;
            # a step back (a reorg that took attestations away) re-reads from the start.
            self._through, self._bases = 0, {}
        for earlier in range(self._through + 1, epoch):
            self._fold(earlier)
            self._through = earlier
        return dict(self._bases)

    def _fold(self, epoch: int) -> None:
        root = self.chain.epoch_root(epoch)
        if root == NO_ROOT:
            return  # never attested (skipped): adds nothing
        problems = []
        for folder in self.proofs_dirs:
            try:
                leaves = self._verified_leaves(folder, epoch, root)
            except BaseUnavailable as exc:
                problems.append(exc.reason)
                continue
            for leaf in leaves:
                self._bases[leaf.node_id] = Cumulative.of(leaf)
            return
        raise BaseUnavailable(epoch, "; ".join(problems) or "no proofs folder configured")

    def _verified_leaves(self, folder: Path, epoch: int, root: bytes) -> tuple[NodeLeaf, ...]:
        path = proofs_path(folder, epoch)
        try:
            document = json.loads(path.read_text())
            leaves = [NodeLeaf.from_json(entry) for entry in document["leaves"]]
            version = int(document["report"]["configVersion"])
            commitment = build_commitment(epoch, leaves, version)
        except FileNotFoundError:
            raise BaseUnavailable(epoch, f"attested, but no proofs file at {path}") from None
        except (OSError, ValueError, KeyError, TypeError, AttestationError) as exc:
            raise BaseUnavailable(epoch, f"unreadable proofs file {path}: {exc}") from exc
        if commitment.report.root != root:
            raise BaseUnavailable(
                epoch,
                f"{path} rebuilds root 0x{commitment.report.root.hex()}, OracleHub holds"
                f" 0x{root.hex()}",
            )
        return commitment.leaves
