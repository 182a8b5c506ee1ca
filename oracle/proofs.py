"""The per-epoch proof file others fetch: ``<proofs_dir>/<epoch>.json``.

It holds every node's leaf and Merkle proof, the signed report, and the whole
tree as an OpenZeppelin ``standard-v1`` dump (loadable with
``StandardMerkleTree.load`` in JavaScript). It is written before the report is
posted (so a crash right after posting still leaves the proofs behind) and
rewritten with the transaction once the receipt is in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpucap.attestation import EpochCommitment, leaf_hash

FORMAT = "gpucap-epoch-proofs-v2"  # v2: leaf v2 (joules, coverages, challenges, cum*)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def proofs_document(
    commitment: EpochCommitment,
    *,
    chain_id: int,
    oracle_hub: str,
    signers: list[str],
    attestation: dict[str, Any] | None,
) -> dict[str, Any]:
    report = commitment.report
    return {
        "format": FORMAT,
        "chainId": chain_id,
        "oracleHub": oracle_hub,
        "epoch": report.epoch,
        "report": {
            "epoch": report.epoch,
            "root": _hex(report.root),
            "nodeCount": report.node_count,
            "totalEnergyJoules": report.total_energy_joules,
            "totalMilliGpuHours": report.total_milli_gpu_hours,
            "configVersion": report.config_version,
        },
        "signers": signers,
        # None until the receipt is in: {"txHash", "blockNumber", "gasUsed"}.
        "attestation": attestation,
        "leaves": [
            {
                **leaf.to_json(),
                "leafHash": _hex(leaf_hash(leaf)),
                "proof": [_hex(p) for p in commitment.tree.proof(index)],
            }
            for index, leaf in enumerate(commitment.leaves)
        ],
        "tree": commitment.tree.dump(),
    }


def proofs_path(proofs_dir: Path, epoch: int) -> Path:
    return proofs_dir / f"{epoch}.json"


def write_proofs(proofs_dir: Path, epoch: int, document: dict[str, Any]) -> Path:
    """Atomic write: a reader never sees half a file."""
    proofs_dir.mkdir(parents=True, exist_ok=True)
    path = proofs_path(proofs_dir, epoch)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_proofs(proofs_dir: Path, epoch: int) -> dict[str, Any]:
    return json.loads(proofs_path(proofs_dir, epoch).read_text())
