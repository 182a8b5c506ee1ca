"""The one shared encoding of an OracleHub epoch attestation.

Oracles build and sign with it, the backend serves proofs from it, tests check
it against the contract: if a field or type changes, it changes here and in
``contracts/interfaces/IOracleHub.sol`` together and nowhere else.

Units (see IOracleHub): ratios in basis points, energy in joules, delivered
capacity in milli-GPU-hours (``MILLI_GPU_HOURS_PER_GPU_HOUR`` per GPU-hour, rounded
down), busy time in GPU-seconds.

Leaf v2: per-epoch figures, the coverage of each (a coverage of 0 means the figure
is UNKNOWN and published as 0, never a measured zero), the epoch's challenge
counts, and cumulative counters since the node's registration: ``cum*`` of a
node's leaf for epoch ``e`` is ``cum*`` of the node's newest leaf attested for an
epoch before ``e`` (0 if none) plus this epoch's figure (``Cumulative.then``).
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
JOULES_PER_WH = 3_600
UINT16_MAX = 2**16 - 1
UINT64_MAX = 2**64 - 1

# Must match OracleHub's EIP712("gpucap OracleHub", "1") constructor arguments.
DOMAIN_NAME = "gpucap OracleHub"
DOMAIN_VERSION = "1"

# Field order and types of IOracleHub.NodeLeaf, as abi.encode'd in OracleHub._leafHash.
LEAF_ENCODING: tuple[str, ...] = (
    "uint256",  # nodeId
    "uint64",  # epoch
    "uint16",  # uptimeBps
    "uint16",  # utilizationBps
    "uint16",  # sampleCoverageBps
    "uint16",  # utilizationCoverageBps
    "uint16",  # energyCoverageBps
    "uint16",  # challengesPassed
    "uint16",  # challengesFailed
    "uint64",  # energyJoules
    "uint64",  # milliGpuHours
    "uint64",  # cumMilliGpuHours
    "uint64",  # cumEnergyJoules
    "uint64",  # cumBusyGpuSeconds
)

# camelCase names (Solidity struct, JSON files) in LEAF_ENCODING order.
LEAF_FIELDS: tuple[str, ...] = (
    "nodeId",
    "epoch",
    "uptimeBps",
    "utilizationBps",
    "sampleCoverageBps",
    "utilizationCoverageBps",
    "energyCoverageBps",
    "challengesPassed",
    "challengesFailed",
    "energyJoules",
    "milliGpuHours",
    "cumMilliGpuHours",
    "cumEnergyJoules",
    "cumBusyGpuSeconds",
)

EPOCH_REPORT_TYPES: dict[str, list[dict[str, str]]] = {
    "EpochReport": [
        {"name": "epoch", "type": "uint64"},
        {"name": "root", "type": "bytes32"},
        {"name": "nodeCount", "type": "uint32"},
        {"name": "totalEnergyJoules", "type": "uint64"},
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
class Cumulative:
    """A node's cumulative counters (the ``cum*`` fields of its newest attested leaf)."""

    milli_gpu_hours: int = 0
    energy_joules: int = 0
    busy_gpu_seconds: int = 0

    @classmethod
    def of(cls, leaf: NodeLeaf) -> Cumulative:
        return cls(leaf.cum_milli_gpu_hours, leaf.cum_energy_joules, leaf.cum_busy_gpu_seconds)

    def then(
        self, *, milli_gpu_hours: int, energy_joules: int, busy_gpu_seconds: int
    ) -> Cumulative:
        """These counters after one more epoch with these figures."""
        return Cumulative(
            self.milli_gpu_hours + milli_gpu_hours,
            self.energy_joules + energy_joules,
            self.busy_gpu_seconds + busy_gpu_seconds,
        )


_BPS_FIELDS = (
    "uptime_bps",
    "utilization_bps",
    "sample_coverage_bps",
    "utilization_coverage_bps",
    "energy_coverage_bps",
)
_COUNT_FIELDS = ("challenges_passed", "challenges_failed")
_UINT64_FIELDS = (
    "energy_joules",
    "milli_gpu_hours",
    "cum_milli_gpu_hours",
    "cum_energy_joules",
    "cum_busy_gpu_seconds",
)


@dataclass(frozen=True)
class NodeLeaf:
    """One node's figures for one epoch: IOracleHub.NodeLeaf (v2), field for field."""

    node_id: int
    epoch: int
    uptime_bps: int
    utilization_bps: int
    sample_coverage_bps: int
    utilization_coverage_bps: int
    energy_coverage_bps: int
    challenges_passed: int
    challenges_failed: int
    energy_joules: int
    milli_gpu_hours: int
    cum_milli_gpu_hours: int
    cum_energy_joules: int
    cum_busy_gpu_seconds: int

    def __post_init__(self) -> None:
        if self.node_id <= 0 or self.epoch <= 0:
            raise AttestationError(f"node id and epoch start at 1: {self}")
        for name in _BPS_FIELDS:
            if not 0 <= getattr(self, name) <= BPS:
                raise AttestationError(f"{name} must be within 0..{BPS}: {self}")
        for name in _COUNT_FIELDS:
            if not 0 <= getattr(self, name) <= UINT16_MAX:
                raise AttestationError(f"{name} must be within 0..{UINT16_MAX}: {self}")
        for name in _UINT64_FIELDS:
            if not 0 <= getattr(self, name) <= UINT64_MAX:
                raise AttestationError(f"{name} must be within 0..2**64-1: {self}")
        if self.energy_coverage_bps == 0 and self.energy_joules != 0:
            raise AttestationError(f"energy without energy coverage: {self}")
        if (
            self.cum_milli_gpu_hours < self.milli_gpu_hours
            or self.cum_energy_joules < self.energy_joules
        ):
            raise AttestationError(f"a cumulative counter is below its epoch's figure: {self}")

    @classmethod
    def measured(
        cls,
        node_id: int,
        epoch: int,
        *,
        uptime_bps: int,
        utilization_bps: int,
        sample_coverage_bps: int,
        utilization_coverage_bps: int,
        energy_coverage_bps: int,
        energy_joules: int,
        milli_gpu_hours: int,
        busy_gpu_seconds: int,
        challenges_passed: int = 0,
        challenges_failed: int = 0,
        base: Cumulative = Cumulative(),
    ) -> NodeLeaf:
        """A leaf whose cumulative counters are ``base`` plus this epoch's figures."""
        cum = base.then(
            milli_gpu_hours=milli_gpu_hours,
            energy_joules=energy_joules,
            busy_gpu_seconds=busy_gpu_seconds,
        )
        return cls(
            node_id,
            epoch,
            uptime_bps,
            utilization_bps,
            sample_coverage_bps,
            utilization_coverage_bps,
            energy_coverage_bps,
            challenges_passed,
            challenges_failed,
            energy_joules,
            milli_gpu_hours,
            cum.milli_gpu_hours,
            cum.energy_joules,
            cum.busy_gpu_seconds,
        )

    @property
    def energy_wh(self) -> int:
        """Energy in whole Wh, rounded down (derived; the leaf carries joules)."""
        return self.energy_joules // JOULES_PER_WH

    @property
    def energy_known(self) -> bool:
        """False when the energy is unknown (coverage 0): ``energy_joules`` is not a zero."""
        return self.energy_coverage_bps > 0

    def values(self) -> tuple[int, ...]:
        """Field values in LEAF_ENCODING order (also the contract call's tuple)."""
        return astuple(self)

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> NodeLeaf:
        """From a row of LEAF_ENCODING values (board entries, contract tuples)."""
        row = [int(v) for v in values]
        if len(row) != len(LEAF_FIELDS):
            raise AttestationError(f"a leaf has {len(LEAF_FIELDS)} values, not {len(row)}")
        return cls(*row)

    @classmethod
    def from_json(cls, data: dict[str, int]) -> NodeLeaf:
        """The inverse of ``to_json`` (published proofs files, stored action parameters)."""
        return cls.from_values(data[name] for name in LEAF_FIELDS)

    def to_json(self) -> dict[str, int]:
        return dict(zip(LEAF_FIELDS, self.values(), strict=True))


def leaf_hash(leaf: NodeLeaf) -> bytes:
    """The leaf's hash as OracleHub.leafHash computes it."""
    return standard_leaf_hash(LEAF_ENCODING, leaf.values())


@dataclass(frozen=True)
class EpochReport:
    """What the oracles sign: IOracleHub.EpochReport, field for field."""

    epoch: int
    root: bytes
    node_count: int
    total_energy_joules: int
    total_milli_gpu_hours: int
    config_version: int

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (field names as in the Solidity struct)."""
        return {
            "epoch": self.epoch,
            "root": self.root,
            "nodeCount": self.node_count,
            "totalEnergyJoules": self.total_energy_joules,
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
        total_energy_joules=sum(leaf.energy_joules for leaf in ordered),
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
