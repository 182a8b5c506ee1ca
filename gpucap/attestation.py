"""The one shared encoding of an OracleHub epoch attestation.

Oracles build and sign with it, the backend serves proofs from it, tests check
it against the contract: if a field or type changes, it changes here and in
``contracts/interfaces/IOracleHub.sol`` together and nowhere else.

Units (see IOracleHub): ratios in basis points, energy in Wh, delivered capacity
in milli-GPU-hours (``MILLI_GPU_HOURS_PER_GPU_HOUR`` per GPU-hour, rounded down).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from gpucap.merkle import StandardMerkleTree, standard_leaf_hash

BPS = 10_000
MILLI_GPU_HOURS_PER_GPU_HOUR = 1_000
SECONDS_PER_HOUR = 3_600

# Must match OracleHub's EIP712("gpucap OracleHub", "1") constructor arguments.
DOMAIN_NAME = "gpucap OracleHub"
DOMAIN_VERSION = "1"

# Field order and types of IOracleHub.NodeLeaf, as abi.encode'd in OracleHub._leafHash.
LEAF_ENCODING: tuple[str, ...] = (
    "uint256",
    "uint64",
    "uint16",
    "uint16",
    "uint16",
    "uint64",
    "uint64",
)

EPOCH_REPORT_TYPES: dict[str, list[dict[str, str]]] = {
    "EpochReport": [
        {"name": "epoch", "type": "uint64"},
        {"name": "root", "type": "bytes32"},
        {"name": "nodeCount", "type": "uint32"},
        {"name": "totalEnergyWh", "type": "uint64"},
        {"name": "totalMilliGpuHours", "type": "uint64"},
        {"name": "configVersion", "type": "uint64"},
    ]
}


class AttestationError(ValueError):
    """Leaves or a report that cannot form a valid attestation."""


def milli_gpu_hours(gpu_seconds: int) -> int:
    """GPU-seconds → milli-GPU-hours, rounded down (never over-claims delivery)."""
    return gpu_seconds * MILLI_GPU_HOURS_PER_GPU_HOUR // SECONDS_PER_HOUR


@dataclass(frozen=True)
class NodeLeaf:
    """One node's figures for one epoch: IOracleHub.NodeLeaf, field for field."""

    node_id: int
    epoch: int
    uptime_bps: int
    utilization_bps: int
    sample_coverage_bps: int
    energy_wh: int
    milli_gpu_hours: int

    def __post_init__(self) -> None:
        if self.node_id <= 0 or self.epoch <= 0:
            raise AttestationError(f"node id and epoch start at 1: {self}")
        for name in ("uptime_bps", "utilization_bps", "sample_coverage_bps"):
            if not 0 <= getattr(self, name) <= BPS:
                raise AttestationError(f"{name} must be within 0..{BPS}: {self}")
        if self.energy_wh < 0 or self.milli_gpu_hours < 0:
            raise AttestationError(f"energy and GPU-hours cannot be negative: {self}")

    def values(self) -> tuple[int, ...]:
        """Field values in LEAF_ENCODING order (also the contract call's tuple)."""
        return astuple(self)

    @classmethod
    def from_json(cls, data: dict[str, int]) -> NodeLeaf:
        """The inverse of ``to_json`` (published proofs files, stored action parameters)."""
        return cls(
            node_id=data["nodeId"],
            epoch=data["epoch"],
            uptime_bps=data["uptimeBps"],
            utilization_bps=data["utilizationBps"],
            sample_coverage_bps=data["sampleCoverageBps"],
            energy_wh=data["energyWh"],
            milli_gpu_hours=data["milliGpuHours"],
        )

    def to_json(self) -> dict[str, int]:
        return {
            "nodeId": self.node_id,
            "epoch": self.epoch,
            "uptimeBps": self.uptime_bps,
            "utilizationBps": self.utilization_bps,
            "sampleCoverageBps": self.sample_coverage_bps,
            "energyWh": self.energy_wh,
            "milliGpuHours": self.milli_gpu_hours,
        }


def leaf_hash(leaf: NodeLeaf) -> bytes:
    """The leaf's hash as OracleHub.leafHash computes it."""
    return standard_leaf_hash(LEAF_ENCODING, leaf.values())


@dataclass(frozen=True)
class EpochReport:
    """What the oracles sign: IOracleHub.EpochReport, field for field."""

    epoch: int
    root: bytes
    node_count: int
    total_energy_wh: int
    total_milli_gpu_hours: int
    config_version: int

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (field names as in the Solidity struct)."""
        return {
            "epoch": self.epoch,
            "root": self.root,
            "nodeCount": self.node_count,
            "totalEnergyWh": self.total_energy_wh,
            "totalMilliGpuHours": self.total_milli_gpu_hours,
            "configVersion": self.config_version,
        }

    def as_tuple(self) -> tuple[Any, ...]:
        """The contract call's tuple for ``attest(report, signatures)``."""
        return astuple(self)


@dataclass(frozen=True)
class EpochCommitment:
    """An epoch's leaves, their tree, and the report committing to them."""

    leaves: tuple[NodeLeaf, ...]
    tree: StandardMerkleTree
    report: EpochReport

    def proof(self, node_id: int) -> list[bytes]:
        for index, leaf in enumerate(self.leaves):
            if leaf.node_id == node_id:
                return self.tree.proof(index)
        raise AttestationError(f"node {node_id} has no leaf in epoch {self.report.epoch}")


def build_commitment(
    epoch: int, leaves: Iterable[NodeLeaf], config_version: int
) -> EpochCommitment:
    """Tree + totals for ``leaves``, which must all be for ``epoch``, one per node.

    Leaves are ordered by node id so the file others fetch reads naturally; the
    root does not depend on that order (the tree sorts leaf hashes).
    """
    ordered = tuple(sorted(leaves, key=lambda leaf: leaf.node_id))
    if not ordered:
        raise AttestationError(f"epoch {epoch}: no leaves to attest")
    seen: set[int] = set()
    for leaf in ordered:
        if leaf.epoch != epoch:
            raise AttestationError(
                f"leaf of node {leaf.node_id} is for epoch {leaf.epoch}, not {epoch}"
            )
        if leaf.node_id in seen:
            raise AttestationError(f"node {leaf.node_id} has two leaves in epoch {epoch}")
        seen.add(leaf.node_id)
    tree = StandardMerkleTree.of([leaf.values() for leaf in ordered], LEAF_ENCODING)
    report = EpochReport(
        epoch=epoch,
        root=tree.root,
        node_count=len(ordered),
        total_energy_wh=sum(leaf.energy_wh for leaf in ordered),
        total_milli_gpu_hours=sum(leaf.milli_gpu_hours for leaf in ordered),
        config_version=config_version,
    )
    return EpochCommitment(leaves=ordered, tree=tree, report=report)


# ---------------------------------------------------------------------------
# EIP-712
# ---------------------------------------------------------------------------


def domain(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def report_digest(report: EpochReport, chain_id: int, verifying_contract: str) -> bytes:
    """The 32-byte digest OracleHub.reportDigest returns (what ECDSA signs)."""
    signable = encode_typed_data(
        domain_data=domain(chain_id, verifying_contract),
        message_types=EPOCH_REPORT_TYPES,
        message_data=report.message(),
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@dataclass(frozen=True)
class OracleSignature:
    signer: str
    signature: bytes


def sign_report(
    report: EpochReport, private_keys: Sequence[str], chain_id: int, verifying_contract: str
) -> list[OracleSignature]:
    """One signature per key, sorted strictly ascending by signer (as OracleHub requires).

    Raises AttestationError if two keys are the same signer: the contract would
    reject the duplicate, so it is caught here with a clearer message.
    """
    signatures: list[OracleSignature] = []
    for key in private_keys:
        signed = Account.sign_typed_data(
            key,
            domain_data=domain(chain_id, verifying_contract),
            message_types=EPOCH_REPORT_TYPES,
            message_data=report.message(),
        )
        signer = Account.from_key(key).address
        signatures.append(OracleSignature(signer=signer, signature=bytes(signed.signature)))
    return sort_signatures(signatures)


def sort_signatures(signatures: Iterable[OracleSignature]) -> list[OracleSignature]:
    """Sorted by signer address as a number (how Solidity compares addresses)."""
    ordered = sorted(signatures, key=lambda s: int(s.signer, 16))
    for previous, current in zip(ordered, ordered[1:], strict=False):
        if int(previous.signer, 16) == int(current.signer, 16):
            raise AttestationError(f"oracle {current.signer} signed twice")
    return ordered


# ---------------------------------------------------------------------------
# Development oracle set
# ---------------------------------------------------------------------------

# anvil's pre-funded accounts 6, 7, 8 are the dev chain's oracle set: the deploy
# script registers them and the oracle daemon signs with them in development mode.
DEV_ORACLE_KEY_INDICES: tuple[int, ...] = (6, 7, 8)


def dev_oracle_keys() -> list[str]:
    """Private keys of the dev oracle set (anvil's well-known keys: never on a real chain)."""
    from gpucap.devchain import dev_private_key

    return [dev_private_key(i) for i in DEV_ORACLE_KEY_INDICES]
