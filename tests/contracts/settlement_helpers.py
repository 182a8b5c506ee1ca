"""Building blocks for the EpochSettlement tests: pools on the hub's epoch schedule,
attested epochs, settle items, and the split the contract must reproduce."""

from __future__ import annotations

from dataclasses import dataclass

from brownie import RevenuePool, accounts, web3
from eth_abi import encode

from gpucap.attestation import NodeLeaf, build_commitment
from tests.contracts.node_helpers import USD
from tests.oracle.hub_helpers import ORACLE_KEYS, end_epoch, signatures
from tests.support.leaves import test_leaf

BPS = 10_000
FEE_BPS, RESERVE_BPS, OPERATOR_BPS = 500, 300, 3_000  # DeployConfig's defaults
PRICE_PER_GPU_HOUR = 1_000 * USD  # usage price: 100 milli-GPU-hours bill 100 USD
POOL_TARGET = 1_200 * USD  # tenor 12: 100 USD principal per epoch
POOL_TENOR = 12
POOL_RATE_BPS = 1_200
DISTRIBUTOR_ROLE = bytes(web3.keccak(text="DISTRIBUTOR_ROLE"))
SLASHER_ROLE = bytes(web3.keccak(text="SLASHER_ROLE"))


@dataclass(frozen=True)
class Split:
    usage: int
    proceeds: int
    fee: int
    reserve: int
    operator: int
    debt: int
    stakers: int
    service: int  # scheduled service of the epoch (for the DSCR window)
    arrears: int  # after this settlement

    def total(self) -> int:
        return self.fee + self.reserve + self.operator + self.debt + self.stakers


def expected_split(
    usage: int, proceeds: int, service: int, arrears: int, pool_live: bool, bps=None
) -> Split:
    """The contract's split, mirrored in integers (floors; stakers take the remainder)."""
    fee_bps, reserve_bps, operator_bps = bps or (FEE_BPS, RESERVE_BPS, OPERATOR_BPS)
    gross = usage + proceeds
    fee = gross * fee_bps // BPS
    reserve = gross * reserve_bps // BPS
    operator = gross * operator_bps // BPS
    net = gross - fee - reserve - operator
    if not pool_live:
        return Split(usage, proceeds, fee, reserve, operator + net, 0, 0, 0, arrears)
    owed = service + arrears
    debt = min(owed, net)
    return Split(usage, proceeds, fee, reserve, operator, debt, net - debt, service, owed - debt)


def swept(s: Split) -> Split:
    """`s` under a cash sweep: the operator's share also services what net left owed."""
    extra = min(s.arrears, s.operator)
    return Split(
        s.usage,
        s.proceeds,
        s.fee,
        s.reserve,
        s.operator - extra,
        s.debt + extra,
        s.stakers,
        s.service,
        s.arrears - extra,
    )


def deploy_hub_pool(
    hub, stablecoin, operator, admin, node_id, *, gate, target=POOL_TARGET, tenor=POOL_TENOR
):
    """A RevenuePool for `node_id` on the hub's epoch schedule (funding open 1 day), capped by
    `gate` (the settlement it will be bound to)."""
    now = web3.eth.get_block("latest")["timestamp"]
    config = (
        f"gpucap node {node_id} share",
        f"gN{node_id}",
        str(stablecoin),
        str(operator),
        str(admin),
        "0x" + "00" * 20,
        node_id,
        target,
        now + 86_400,
        USD,  # 1 USD per share
        hub.genesisTimestamp(),
        hub.epochLengthSeconds(),
        1,
        tenor,
        POOL_RATE_BPS,
        str(gate),
    )
    return RevenuePool.deploy(config, {"from": admin})


def open_pool(
    settlement,
    hub,
    stablecoin,
    fund,
    admin,
    operator,
    investor,
    node_id,
    *,
    target=POOL_TARGET,
    tenor=POOL_TENOR,
):
    """A funded, drawn, fully staked pool bound to `node_id` in the settlement."""
    pool = deploy_hub_pool(
        hub, stablecoin, operator, admin, node_id, gate=settlement, target=target, tenor=tenor
    )
    fund(investor, target, pool)
    pool.deposit(target, investor, {"from": investor})
    pool.drawRaise({"from": operator})
    pool.stake(pool.balanceOf(investor), {"from": investor})
    pool.grantRole(DISTRIBUTOR_ROLE, settlement, {"from": admin})
    pool.grantRole(SLASHER_ROLE, settlement.loans(), {"from": admin})  # the default's first loss
    settlement.setPool(node_id, pool, {"from": admin})
    return pool


# Each node's newest leaf per hub, so that attested leaves chain their cumulative counters
# as the oracles do. Tests revert the chain between them, so a node's counters may start
# from a leaf of a reverted timeline: harmless, since settlement bills differences of the
# counters (and a first settlement its epoch's own usage).
_last_leaf: dict[tuple[str, int], NodeLeaf] = {}


def attest(hub, milli: dict[int, int]):
    """Ends the current hub epoch and attests it with `milli[node]` milli-GPU-hours per
    node, each leaf's cumulative counters chained on the node's previous leaf; returns the
    EpochCommitment (its .report.epoch is the epoch)."""
    epoch = end_epoch(hub)
    leaves = []
    for node, m in milli.items():
        base = _last_leaf.get((hub.address, node))
        leaf = test_leaf(node, epoch, 10_000, 5_000, 10_000, 180_000, m, base=base)
        _last_leaf[(hub.address, node)] = leaf
        leaves.append(leaf)
    return attest_leaves(hub, epoch, leaves)


def attest_leaves(hub, epoch: int, leaves: list[NodeLeaf]):
    """Attests `epoch` (ended) with exactly these leaves; returns the EpochCommitment."""
    c = build_commitment(epoch, leaves, hub.configVersion())
    hub.attest(
        c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]), {"from": accounts[6]}
    )
    return c


def leaf_for(commitment, node: int) -> NodeLeaf:
    return next(leaf for leaf in commitment.leaves if leaf.node_id == node)


def item(commitment, node: int) -> tuple:
    """The SettleItem for `node` in `commitment`: (leaf tuple, proof)."""
    return (leaf_for(commitment, node).values(), commitment.proof(node))


def error_data(signature: str, *args) -> bytes:
    """The revert data of custom error `signature` (e.g. "Name(uint256,uint64)") with `args`:
    what SettlementItemSkipped carries as its reason."""
    types = signature[signature.index("(") + 1 : -1]
    body = (
        encode(types.split(","), [str(a) if hasattr(a, "address") else a for a in args])
        if types
        else b""
    )
    return bytes(web3.keccak(text=signature)[:4]) + body
