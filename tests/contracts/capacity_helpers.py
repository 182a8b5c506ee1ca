"""Shared numbers and signing helpers for the CapacityToken tests."""

from __future__ import annotations

from gpucap.signing import sign_permit as gpucap_sign_permit
from tests.contracts.node_helpers import USD

HOUR = 3600
DAY = 24 * HOUR
PRICE = 2_500_000  # 2.50 USD per GPU-hour
BOND_PER_HOUR = 3_000_000  # ceil(PRICE x 12_000 / 10_000)
LIMIT_8_GPUS = 8 * 24 * 9_000 // 10_000  # 172 GPU-hours per daily window at a 90% commit ratio
NODE_BOND = 10_000 * USD


PENALTY_BPS = 2_000  # DeployConfig default: refund 120% of the price per GPU-hour short
GRACE = 3_600  # DeployConfig.for_tests() settlement grace


def token_id(class_id: int, window_start: int) -> int:
    return (class_id << 64) | window_start


def deploy_capacity_token(
    admin,
    registry,
    hub,
    stablecoin,
    forwarder,
    window_seconds: int = DAY,
    *,
    penalty_bps: int = PENALTY_BPS,
    grace_seconds: int = GRACE,
):
    """A CapacityToken outside the standard deployment (other window/hub/token), without roles."""
    from brownie import CapacityToken

    return CapacityToken.deploy(
        admin,
        registry,
        hub,
        stablecoin,
        forwarder,
        window_seconds,
        9_000,
        12_000,
        penalty_bps,
        grace_seconds,
        "",
        {"from": admin},
    )


def sign_permit(owner, token, spender: str, value: int, deadline: int, chain_id: int = 31337):
    """EIP-2612 permit signature of `owner` (an eth_account LocalAccount) for TestStablecoin."""
    return gpucap_sign_permit(
        owner,
        token_name=token.name(),
        token=token.address,
        spender=str(spender),
        value=value,
        nonce=token.nonces(owner.address),
        deadline=deadline,
        chain_id=chain_id,
    )


# ---------------------------------------------------------------------------
# Redemption and delivery (hourly windows on a hub with 30-minute epochs)
# ---------------------------------------------------------------------------


def attest_window(
    hub, capacity, tid: int, delivered: dict[int, list[int]], before: dict[int, int] | None = None
):
    """Attest every epoch of `tid`'s window, node `n` delivering `delivered[n][i]`
    milli-GPU-hours in the window's i-th epoch; returns {epoch: EpochCommitment}.
    Moves chain time past the window's end first. Each node's cumulative counters chain
    on its leaf of the epoch before, as the oracles build them, starting from
    `before[n]` milli-GPU-hours delivered before the window (0 by default)."""
    from brownie import accounts, chain

    from gpucap.attestation import Cumulative, build_commitment
    from tests.oracle.hub_helpers import ORACLE_KEYS, signatures
    from tests.support.leaves import test_leaf

    window_end = (tid & (2**64 - 1)) + capacity.windowSeconds()
    chain.sleep(max(0, window_end - chain[-1].timestamp))
    chain.mine()
    first, last = capacity.windowEpochs(tid)
    commitments = {}
    bases = {node: Cumulative(milli_gpu_hours=(before or {}).get(node, 0)) for node in delivered}
    for i, epoch in enumerate(range(first, last + 1)):
        leaves = [
            test_leaf(node, epoch, 10_000, 5_000, 10_000, 3_600_000, milli[i], base=bases[node])
            for node, milli in delivered.items()
        ]
        bases = {leaf.node_id: Cumulative.of(leaf) for leaf in leaves}
        c = build_commitment(epoch, leaves, hub.configVersion())
        hub.attest(
            c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]), {"from": accounts[6]}
        )
        commitments[epoch] = c
    return commitments


def leaf_of(commitment, node: int):
    return next(leaf for leaf in commitment.leaves if leaf.node_id == node)


def prove_args(commitments, node: int, epochs=None):
    """(leaves, proofs) arguments of proveDelivery for `node` in `epochs` (default: all)."""
    epochs = sorted(commitments) if epochs is None else epochs
    leaves = [leaf_of(commitments[e], node).values() for e in epochs]
    proofs = [commitments[e].proof(node) for e in epochs]
    return leaves, proofs
