"""Building, signing and sending OracleHub reports in tests (brownie side)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from eth_account import Account

from gpucap.attestation import (
    Cumulative,
    EpochCommitment,
    EpochReport,
    NodeLeaf,
    build_commitment,
    report_digest,
    sign_report,
)
from gpucap.devchain import dev_private_key

# Oracle fixture accounts 6, 7, 8 and their keys, sorted by address.
ORACLE_KEYS: list[str] = sorted(
    (dev_private_key(i) for i in (6, 7, 8)), key=lambda k: int(Account.from_key(k).address, 16)
)
STRANGER_KEY = dev_private_key(5)


def address_of(key: str) -> str:
    return Account.from_key(key).address


def random_leaves(
    epoch: int,
    node_ids: Sequence[int],
    seed: int = 0,
    bases: dict[int, Cumulative] | None = None,
) -> list[NodeLeaf]:
    """Plausible figures for a 60-second epoch of 8-GPU nodes. With `bases`, each node's
    cumulative counters chain on `bases[node]` (updated), as the oracles chain them, so the
    leaves can be settled as ranges; without, they start from an arbitrary base."""
    rng = random.Random(seed)
    leaves = []
    for node_id in node_ids:
        coverage = rng.randint(9_500, 10_000)
        milli = rng.randint(100, 133)
        leaves.append(
            NodeLeaf.measured(
                node_id,
                epoch,
                uptime_bps=rng.randint(9_000, 10_000),
                utilization_bps=rng.randint(3_000, 9_000),
                sample_coverage_bps=coverage,
                utilization_coverage_bps=coverage,
                energy_coverage_bps=coverage,
                energy_joules=rng.randint(180_000, 336_000),
                milli_gpu_hours=milli,
                busy_gpu_seconds=rng.randint(100, 400),
                challenges_passed=rng.randint(0, 2),
                base=Cumulative(10 * milli, 10 * 300_000, 2_000)
                if bases is None
                else bases.get(node_id, Cumulative()),
            )
        )
        if bases is not None:
            bases[node_id] = Cumulative.of(leaves[-1])
    return leaves


def commitment_for(
    hub,
    epoch: int,
    node_ids: Sequence[int],
    seed: int = 0,
    bases: dict[int, Cumulative] | None = None,
) -> EpochCommitment:
    leaves = random_leaves(epoch, node_ids, seed, bases)
    return build_commitment(epoch, leaves, hub.configVersion())


def signatures(
    hub, report: EpochReport, keys: Sequence[str], chain_id: int | None = None, hub_address=None
) -> list[bytes]:
    """Signatures sorted by signer, for ``hub`` unless another chain/contract is named."""
    from brownie import chain

    signed = sign_report(report, keys, chain_id or chain.id, hub_address or hub.address)
    return [s.signature for s in signed]


def recovered_signer(hub, report: EpochReport, signature: bytes) -> str:
    """Who the hub will recover ``signature`` to for ``report`` (for wrong-domain tests)."""
    from brownie import chain

    digest = report_digest(report, chain.id, hub.address)
    return Account._recover_hash(digest, signature=signature)


def end_epoch(hub) -> int:
    """Move chain time past the current epoch's end; returns the epoch that ended."""
    from brownie import chain

    current = hub.currentEpoch()
    # Block time, not brownie's wall-clock estimate: anvil's clock is what the hub reads.
    chain.sleep(max(0, hub.epochEnd(current) - chain[-1].timestamp))
    chain.mine()
    while hub.currentEpoch() <= current:
        chain.sleep(1)
        chain.mine()
    return current


def leaf_args(leaf: NodeLeaf) -> tuple[int, ...]:
    return leaf.values()
