"""The table of powers: every role of every gpucap contract, who holds it after a deployment,
what it can do, to whose money, and behind which delay.

One source for three readers: ``hand_over_to_timelock`` (scripts/deploy.py) grants exactly
these holders, the README's table is printed from it (``python -m scripts.powers``), and
tests/contracts/test_powers.py reads every role of every deployed contract from the chain's
RoleGranted/RoleRevoked events and compares the holders with it.

Holders are named, not addressed: ``timelock`` (GpucapTimelock; the deployer until the
hand-over, which the dev chain's demo and tests skip), ``guardian`` (emergency powers that
act at once and expire or stop only new business), ``relayer`` (the backend's keeper key),
a contract of the system, or ``nobody``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ADMIN = "DEFAULT_ADMIN_ROLE"
TIMELOCK, GUARDIAN, RELAYER, NOBODY = "timelock", "guardian", "relayer", "nobody"
# The timelock's own proposers (DeployConfig.timelock_proposers) and everyone (address(0)).
PROPOSERS, ANYONE = "proposers", "anyone"
POOL = "RevenuePool"  # each node's pool (not in the manifest: found through PoolSet)
# The contracts whose powers the hand-over moves (the test stablecoin's stay with the
# deployer; the timelock administers itself from its construction on).
POWERED = (
    "NodeRegistry",
    "OracleHub",
    "CapacityToken",
    "EpochSettlement",
    "PoolLoans",
    "Market",
    "ChallengeJail",
    POOL,
)


@dataclass(frozen=True)
class Power:
    contract: str
    role: str
    holders: tuple[str, ...]
    functions: tuple[str, ...]  # what the role is required for (grantRole/revokeRole: admins)
    does: str
    money: str
    delay: str


TIMELOCK_DELAY = "timelock delay"
AT_ONCE = "none"

POWERS: tuple[Power, ...] = (
    Power(
        "NodeRegistry",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        (
            "grantRole",
            "revokeRole",
            "setUnbondingDelay",
            "addObligationSource",
            "removeObligationSource",
        ),
        "grants and revokes every role; sets the unbonding delay (at most 90 days); lists the "
        "contracts asked before an exit",
        "operators' bonds: how long an exit waits, what keeps a bond in",
        TIMELOCK_DELAY,
    ),
    Power(
        "NodeRegistry",
        "CLASS_ADMIN_ROLE",
        (TIMELOCK,),
        ("registerGpuClass",),
        "registers a new GPU class (registered classes never change)",
        "none directly: the standard new nodes and tokens refer to",
        TIMELOCK_DELAY,
    ),
    Power(
        "NodeRegistry",
        "JAILER_ROLE",
        (GUARDIAN, "ChallengeJail"),
        ("jail", "unjail"),
        "freezes a node: no new offers, buys or exit; its holders can still redeem "
        "(ChallengeJail jails only on attested evidence of repeated failed work challenges; "
        "the guardian unjails)",
        "none moves: it stops an operator's new business",
        AT_ONCE,
    ),
    Power(
        "NodeRegistry",
        "BOND_LOCKER_ROLE",
        ("CapacityToken", "PoolLoans"),
        ("lockBond", "unlockBond", "settleLock"),
        "locks bond behind offers, sales and reservations (CapacityToken) and a drawn pool's "
        "pledge (PoolLoans); pays out of its own locks only: a shortfall refund, or the "
        "pledge seized into the pool at default",
        "operators' bonds, to holders and pools they owe",
        "none (contracts acting on proofs and settled epochs)",
    ),
    Power(
        "NodeRegistry",
        "SLASHER_ROLE",
        (NOBODY,),
        ("slash",),
        "takes free (never locked) bond to a recipient",
        "operators' free bond",
        "held by nobody; granting it waits the timelock",
    ),
    Power(
        "OracleHub",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole"),
        "grants and revokes every role",
        "everything the oracle set decides",
        TIMELOCK_DELAY,
    ),
    Power(
        "OracleHub",
        "ORACLE_ADMIN_ROLE",
        (TIMELOCK,),
        ("addOracle", "removeOracle", "setQuorum"),
        "changes the oracle set and its quorum",
        "every figure payouts and slashes follow: delivery, usage, revenue",
        TIMELOCK_DELAY,
    ),
    Power(
        "CapacityToken",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        (
            "grantRole",
            "revokeRole",
            "setRiskGate",
            "setCommitRatio",
            "setBondCoverage",
            "setShortfallPenalty",
            "extendPause",
        ),
        "sets the commit ratio, bond coverage and shortfall penalty of new offers and "
        "reservations, the risk gate; keeps a pause for up to 30 days",
        "operators' bonds and holders' refunds from then on (never existing locks)",
        TIMELOCK_DELAY,
    ),
    Power(
        "CapacityToken",
        "PROCEEDS_ROLE",
        ("EpochSettlement",),
        ("collectProceeds",),
        "collects a node's held sale proceeds for the epoch split",
        "operators' sale proceeds",
        "none (a contract acting on attested leaves)",
    ),
    Power(
        "CapacityToken",
        "GUARDIAN_ROLE",
        (GUARDIAN,),
        ("pause",),
        "pauses new offers and buys for 3 days, then must wait 3 days; never redeem, cancel, "
        "settle or expiry",
        "none moves: new exposure stops",
        AT_ONCE,
    ),
    Power(
        "EpochSettlement",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole", "setSplit", "setRiskParams", "setPool"),
        "sets the revenue split (fee <= 20%, reserve <= 20%), the covenant and depreciation "
        "curve; binds a node's pool",
        "every node's revenue: fee, reserve, operator, lenders",
        TIMELOCK_DELAY,
    ),
    Power(
        "PoolLoans",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole", "setLoanParams"),
        "sets the loan terms of every node's pool (pledge share of the bond, default "
        "triggers, cure run); created by EpochSettlement with the same admin",
        "operators' pledged bond, stakers' first loss and the reserve at a default",
        TIMELOCK_DELAY,
    ),
    Power(
        "EpochSettlement",
        "SETTLER_ROLE",
        (RELAYER,),
        ("settle",),
        "settles attested node-epochs in order (the backend's keeper)",
        "none it can choose: every figure comes from the attested leaf and agreed terms",
        AT_ONCE,
    ),
    Power(
        "EpochSettlement",
        "TERMS_ROLE",
        (TIMELOCK,),
        ("setUsageTerms",),
        "names a node's usage payer and price; billed only within the payer's on-chain consent",
        "renters' stablecoin, up to what each consented to",
        TIMELOCK_DELAY,
    ),
    Power(
        "RevenuePool",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole", "extendPause"),
        "grants and revokes the pool's roles (each node's pool: named at its deployment, or moved "
        "to the timelock by the hand-over); keeps a pause for up to 30 days",
        "lenders' and stakers' deposits and revenue, through the roles below",
        TIMELOCK_DELAY,
    ),
    Power(
        "RevenuePool",
        "DISTRIBUTOR_ROLE",
        ("EpochSettlement",),
        ("distribute",),
        "pays the node's debt service and stakers' share into the pool, epoch by epoch, and "
        "a default's seized bond and reserve cover",
        "none taken: it only pays in",
        "none (a contract acting on attested leaves)",
    ),
    Power(
        "RevenuePool",
        "GUARDIAN_ROLE",
        (GUARDIAN,),
        ("pause",),
        "pauses new deposits and the draw for 3 days, then must wait 3 days; never refunds, "
        "staking, unstaking, withdrawals or claims",
        "none moves: new exposure stops",
        AT_ONCE,
    ),
    Power(
        "RevenuePool",
        "SLASHER_ROLE",
        ("PoolLoans",),
        ("bookLoss",),
        "books a default's loss against staked shares (first loss), after the seized bond",
        "stakers' shares",
        "none (a contract acting on a default anyone can check)",
    ),
    Power(
        "Market",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole", "setFees", "setFeeRecipient", "setPoolListed", "extendPause"),
        "sets the maker and taker fees of fills from now on (each at most 1%) and who receives "
        "them; lists which pools' shares trade; keeps a pause for up to 30 days",
        "traders' stablecoin: the fee on each fill, within the 1% bound",
        TIMELOCK_DELAY,
    ),
    Power(
        "Market",
        "GUARDIAN_ROLE",
        (GUARDIAN,),
        ("pause",),
        "pauses fills for 3 days, then must wait 3 days; never cancellation",
        "none moves: the market holds nothing, trading stops",
        AT_ONCE,
    ),
    Power(
        "ChallengeJail",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole", "setParams"),
        "sets the jail rule: how many epochs with a failed challenge (at least 2) within how "
        "many recent attested epochs (at most 720) jail a node",
        "none moves: how quickly a failing operator's new business stops",
        TIMELOCK_DELAY,
    ),
    Power(
        "TestStablecoin",
        DEFAULT_ADMIN,
        ("deployer",),
        ("grantRole", "revokeRole", "configureFaucet"),
        "sets the test token's faucet (the dev chain's stablecoin only; elsewhere a configured "
        "stablecoin, never this contract)",
        "none real",
        AT_ONCE,
    ),
    Power(
        "EpochSettlement",
        "TREASURER_ROLE",
        (TIMELOCK,),
        ("withdrawFees", "withdrawReserve"),
        "pays out protocol fees and the insurance reserve",
        "the protocol's fees and the reserve that backs losses",
        TIMELOCK_DELAY,
    ),
    Power(
        "GpucapTimelock",
        DEFAULT_ADMIN,
        (TIMELOCK,),
        ("grantRole", "revokeRole"),
        "the timelock administers itself: changing its proposers or its delay "
        "(`updateDelay`, callable by itself only) is a timelocked call like any other",
        "everything behind the timelock",
        TIMELOCK_DELAY,
    ),
    Power(
        "GpucapTimelock",
        "PROPOSER_ROLE",
        (PROPOSERS,),
        ("schedule", "scheduleBatch"),
        "announces a change (CallScheduled: target, call, time of effect); it can take effect "
        "only after the delay",
        "everything behind the timelock, after the delay",
        "the delay itself",
    ),
    Power(
        "GpucapTimelock",
        "CANCELLER_ROLE",
        (PROPOSERS,),
        ("cancel",),
        "withdraws an announced change before it is executed",
        "none moves",
        AT_ONCE,
    ),
    Power(
        "GpucapTimelock",
        "EXECUTOR_ROLE",
        (ANYONE,),
        ("execute", "executeBatch"),
        "carries out an announced change once its time of effect has come (anyone: the "
        "proposer cannot hold a due change back)",
        "only what was announced, as announced",
        "after the delay",
    ),
)


def role_id(role: str) -> bytes:
    from eth_utils import keccak

    return b"\x00" * 32 if role == DEFAULT_ADMIN else keccak(text=role)


def markdown() -> str:
    """The README's table of powers."""
    rows = [
        "| contract | role | held by | can | whose money | delay |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    order = [
        "NodeRegistry",
        "OracleHub",
        "CapacityToken",
        "EpochSettlement",
        "PoolLoans",
        "RevenuePool",
        "Market",
        "ChallengeJail",
        "GpucapTimelock",
    ]
    for p in sorted(POWERS, key=lambda p: order.index(p.contract) if p.contract in order else 9):
        functions = ", ".join(f"`{f}`" for f in p.functions)
        rows.append(
            f"| {p.contract} | `{p.role}` | {', '.join(p.holders)} | {p.does} ({functions}) "
            f"| {p.money} | {p.delay} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
