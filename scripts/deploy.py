"""Deploy the whole gpucap system and write its deployment manifest.

    brownie run scripts/deploy.py --network <network>

The manifest (deployments/<network>.json, or $GPUCAP_MANIFEST) is what the
backend and the oracle read: chain id, deployment block, and for each contract
its address and the build artifact holding its ABI. Runtime code never imports
brownie; this script and tests/ are the only places that do.

The deployer is the network's first unlocked account on a development chain, or
the key in the encrypted keystore $GPUCAP_DEPLOYER_KEYSTORE (or $GPUCAP_DEPLOYER_KEY)
elsewhere. To deploy on a chain that brownie does not know, in one command:
``python -m scripts.deploy_to`` (the network from its options; see that module).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brownie import (
    CapacityToken,
    ChallengeJail,
    Contract,
    EpochSettlement,
    GpucapForwarder,
    GpucapTimelock,
    Market,
    NodeRegistry,
    OracleHub,
    PoolLoans,
    RevenuePool,
    TestStablecoin,
    accounts,
    chain,
    history,
    network,
    web3,
)
from eth_account import Account
from web3.exceptions import TransactionNotFound

from gpucap import devchain
from gpucap.attestation import dev_oracle_keys
from gpucap.gpu_classes import STANDARD_CLASSES
from scripts import receipt_race
from scripts.deploy_checks import (
    DeployRefused,
    check_chain_id,
    check_stablecoin,
    deployer_key,
    refuse_dev_holders,
)
from scripts.powers import DEFAULT_ADMIN, GUARDIAN, POOL, POWERED, POWERS, TIMELOCK, role_id

REPO_ROOT = Path(__file__).resolve().parent.parent
USD = 10**6  # the stablecoin has 6 decimals
# The manifest names the stablecoin "TestStablecoin" wherever it comes from (what the
# backend, the oracle and the CLI look up); a chain's own stablecoin is read through the
# ABI of a standard ERC-20 with EIP-2612 permit.
STABLECOIN = "TestStablecoin"
EXTERNAL_STABLECOIN_ARTIFACT = "ERC20Permit"


# The contracts' bounds on the covenant's counts and loan terms (EpochSettlement
# MAX_WINDOW_EPOCHS, PoolLoans MAX_RUN_EPOCHS and MAX_DEFAULT_DSCR_BPS), checked before
# anything is sent (DeployConfig.check_terms).
BPS = 10_000
MAX_WINDOW_EPOCHS = 720
MAX_RUN_EPOCHS = 720
MAX_DEFAULT_DSCR_BPS = 50_000
# Off the dev chain the DSCR window and the default run must span at least this.
MIN_COVENANT_SPAN_SECONDS = 24 * 3600
# for_tests / for_demo: counts that show a sweep, its cure and a default within minutes
# (their epochs are 60 s / 30 s). Production counts in days (DeployConfig's defaults).
DEMO_COVENANT_EPOCHS: dict[str, Any] = {
    "settlement_dscr_window_epochs": 24,
    "loan_default_dscr_epochs": 6,
    "loan_cure_epochs": 3,
}


@dataclass(frozen=True)
class DeployConfig:
    # The stablecoin the chain already has (6 decimals; required off the dev chain, where
    # the test token is never deployed). None on the dev chain = deploy TestStablecoin
    # with its faucet (the two settings below).
    stablecoin_address: str | None = None
    faucet_drip: int = 10_000 * USD
    faucet_cooldown_seconds: int = 24 * 3600
    unbonding_delay_seconds: int = 7 * 24 * 3600
    # OracleHub: epoch 1 starts at the genesis (None = the deploy block's time).
    epoch_length_seconds: int = 3600
    epoch_genesis_timestamp: int | None = None
    # Empty = anvil's dev accounts 6, 7, 8 (refused on any other chain).
    oracle_addresses: tuple[str, ...] = ()
    oracle_quorum: int = 2
    # CapacityToken: delivery windows of whole hours; a node may promise
    # commit_ratio of its GPU-hours; bond locked = bond_coverage x offered notional.
    capacity_window_seconds: int = 24 * 3600
    capacity_commit_ratio_bps: int = 9_000
    capacity_bond_coverage_bps: int = 12_000
    # Shortfall refund = price x hours short x (1 + penalty); settlement waits this
    # long after a window for delivery proofs (windows must be whole hub epochs).
    capacity_shortfall_penalty_bps: int = 2_000
    capacity_settlement_grace_seconds: int = 2 * 24 * 3600
    capacity_uri: str = "https://gpucap.invalid/capacity/{id}.json"
    # EpochSettlement: split of each node-epoch's gross (bps), covenant, DSCR window.
    settlement_protocol_fee_bps: int = 500
    settlement_reserve_bps: int = 300
    settlement_operator_bps: int = 3_000
    settlement_covenant_dscr_bps: int = 12_500
    settlement_max_ltv_bps: int = 8_000
    # The trailing DSCR's window in epochs (immutable; at most 720): on hourly epochs
    # 30 days, so a month of revenue, not one noisy hour or day, decides the covenant.
    settlement_dscr_window_epochs: int = 720
    # PoolLoans' terms (LoanParams; set after the settlement creates it when they differ
    # from its constructor's). Runs count epochs of settlements in a row (at most 720).
    # On hourly epochs: the operator pledges 50 % of its bond at the draw; the loan
    # defaults once arrears exceed 10 % of the drawn principal, or once the DSCR stays
    # under 1.00x for 720 epochs (30 days); a cash sweep ends after 168 clean epochs
    # (7 days).
    loan_pledge_bps: int = 5_000
    loan_default_arrears_bps: int = 1_000
    loan_default_dscr_bps: int = 10_000
    loan_default_dscr_epochs: int = 720
    loan_cure_epochs: int = 168
    # The backend's relayer (its epoch-settlement keeper gets SETTLER_ROLE). None = anvil's
    # dev account 9 (the backend's development relayer; refused on any other chain).
    relayer_address: str | None = None
    # Holds GUARDIAN_ROLE (the emergency pause of new offers and buys, which expires by
    # itself) and, after the hand-over, JAILER_ROLE. None = the deployer.
    guardian_address: str | None = None
    # Market: maker and taker fees (bps of a fill's quote, at most 100) and who receives
    # them (None = the deployer).
    market_maker_fee_bps: int = 0
    market_taker_fee_bps: int = 10
    market_fee_recipient: str | None = None
    # ChallengeJail: a node whose attested leaves show a failed work challenge in this many
    # epochs among the last jail_window_epochs attested ones is jailed (by anyone's call).
    jail_failing_epochs: int = 3
    jail_window_epochs: int = 24
    # Outside the dev chain every admin power moves to a GpucapTimelock with this delay
    # (scripts/powers.py says which); None = the deployer stays admin (tests; the demo
    # hands over after seeding, scripts/seed.py).
    timelock_delay_seconds: int | None = 2 * 24 * 3600
    # May schedule and cancel timelocked calls (the operations multisig). Empty = deployer.
    timelock_proposers: tuple[str, ...] = ()

    @classmethod
    def for_tests(cls) -> DeployConfig:
        return cls(
            faucet_drip=1_000 * USD,
            faucet_cooldown_seconds=3600,
            unbonding_delay_seconds=3600,
            epoch_length_seconds=60,
            capacity_settlement_grace_seconds=3600,
            timelock_delay_seconds=None,
            **DEMO_COVENANT_EPOCHS,
        )

    @classmethod
    def for_demo(cls) -> DeployConfig:
        """`make demo`: epochs short enough to watch attestations arrive, hourly delivery
        windows (120 epochs each), a settlement grace of one window and the covenant's
        short counts (DEMO_COVENANT_EPOCHS: a sweep, cure and default within minutes,
        12 / 3 / 1.5 min on 30-second epochs). The deployer stays
        admin while scripts/seed.py seeds the world, then hands over (its
        $GPUCAP_TIMELOCK_DELAY_SECONDS: 90 s in `make demo`)."""
        return cls(
            faucet_cooldown_seconds=3600,
            unbonding_delay_seconds=600,
            epoch_length_seconds=30,
            capacity_window_seconds=3600,
            capacity_settlement_grace_seconds=3600,
            timelock_delay_seconds=None,
            **DEMO_COVENANT_EPOCHS,
        )

    @classmethod
    def from_env(cls) -> DeployConfig:
        """$GPUCAP_DEPLOY_PROFILE: "production" (default) or "demo"; then who holds what:
        $GPUCAP_STABLECOIN_ADDRESS, $GPUCAP_RELAYER_ADDRESS, $GPUCAP_ORACLE_ADDRESSES
        (comma-separated) and $GPUCAP_ORACLE_QUORUM, $GPUCAP_GUARDIAN_ADDRESS,
        $GPUCAP_MARKET_FEE_RECIPIENT and,
        in production, $GPUCAP_TIMELOCK_PROPOSERS (comma-separated) and
        $GPUCAP_TIMELOCK_DELAY_SECONDS (the demo's seeder reads that one itself)."""
        profile = os.environ.get("GPUCAP_DEPLOY_PROFILE", "production")
        env = os.environ.get
        holders: dict[str, Any] = {
            "stablecoin_address": env("GPUCAP_STABLECOIN_ADDRESS") or None,
            "relayer_address": env("GPUCAP_RELAYER_ADDRESS") or None,
            "oracle_addresses": _address_list(env("GPUCAP_ORACLE_ADDRESSES", "")),
            "guardian_address": env("GPUCAP_GUARDIAN_ADDRESS") or None,
            "market_fee_recipient": env("GPUCAP_MARKET_FEE_RECIPIENT") or None,
        }
        if env("GPUCAP_ORACLE_QUORUM"):
            holders["oracle_quorum"] = int(env("GPUCAP_ORACLE_QUORUM", ""))
        if profile == "demo":
            return dataclasses.replace(cls.for_demo(), **holders)
        if profile == "production":
            holders["timelock_proposers"] = _address_list(env("GPUCAP_TIMELOCK_PROPOSERS", ""))
            if env("GPUCAP_TIMELOCK_DELAY_SECONDS"):
                holders["timelock_delay_seconds"] = int(env("GPUCAP_TIMELOCK_DELAY_SECONDS", ""))
            return cls(**holders)
        raise ValueError(f"unknown GPUCAP_DEPLOY_PROFILE {profile!r}: use 'production' or 'demo'")

    def loan_params(self) -> tuple[int, int, int, int, int]:
        """PoolLoans.LoanParams as the contract takes it (pledge, default arrears, default
        DSCR floor, default DSCR run, cure run)."""
        return (
            self.loan_pledge_bps,
            self.loan_default_arrears_bps,
            self.loan_default_dscr_bps,
            self.loan_default_dscr_epochs,
            self.loan_cure_epochs,
        )

    def check_terms(self, chain_id: int) -> None:
        """Before the first transaction: the DSCR window and the loan terms are within the
        contracts' bounds (what their constructor and setLoanParams would revert on), and
        off the dev chain the window and the default run each span at least a day of
        epochs (a covenant over hours of revenue is a demo's, no lender's)."""
        bounds = (
            ("settlement_dscr_window_epochs", 1, MAX_WINDOW_EPOCHS),
            ("loan_pledge_bps", 0, BPS),
            ("loan_default_arrears_bps", 1, BPS),
            ("loan_default_dscr_bps", 0, MAX_DEFAULT_DSCR_BPS),
            ("loan_default_dscr_epochs", 1, MAX_RUN_EPOCHS),
            ("loan_cure_epochs", 1, MAX_RUN_EPOCHS),
        )
        for name, low, high in bounds:
            value = getattr(self, name)
            if not low <= value <= high:
                raise DeployRefused(
                    f"DeployConfig.{name} = {value} is outside {low}..{high} (the contracts "
                    "refuse it): nothing was sent"
                )
        if chain_id == devchain.CHAIN_ID:
            return
        for name in ("settlement_dscr_window_epochs", "loan_default_dscr_epochs"):
            span = getattr(self, name) * self.epoch_length_seconds
            if span < MIN_COVENANT_SPAN_SECONDS:
                raise DeployRefused(
                    f"DeployConfig.{name} = {getattr(self, name)} epochs of "
                    f"{self.epoch_length_seconds} s is {span} s, under a day, on chain "
                    f"{chain_id}: short covenant counts are for the dev chain only; "
                    "nothing was sent"
                )

    def holders(self) -> dict[str, str]:
        """Every address this configuration gives a power to, by what it holds."""
        named = {
            "relayer": self.relayer_address,
            "guardian": self.guardian_address,
            "market fee recipient": self.market_fee_recipient,
        }
        named.update({f"oracle {n}": a for n, a in enumerate(self.oracle_addresses, start=1)})
        named.update(
            {f"timelock proposer {n}": a for n, a in enumerate(self.timelock_proposers, start=1)}
        )
        return {what: address for what, address in named.items() if address}


def _address_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass
class System:
    """Handles on a deployed system, as brownie contract objects."""

    stablecoin: Any
    registry: Any
    forwarder: Any
    oracle_hub: Any
    capacity: Any
    settlement: Any
    deployed_at_block: int
    class_ids: dict[str, int] = field(default_factory=dict)
    # GpucapTimelock, once the deployer handed the admin powers over (hand_over_to_timelock).
    timelock: Any = None
    # Holds the guardian powers (GUARDIAN_ROLE; JAILER_ROLE after the hand-over); node pools
    # grant it GUARDIAN_ROLE when they are bound (node_pool_bindings).
    guardian: str = ""
    # The secondary market (None in a manifest written before it existed).
    market: Any = None
    # The pools' loan book (PoolLoans, created by the settlement; None in a manifest written
    # before it existed, when the loan lived inside EpochSettlement).
    loans: Any = None
    # Jails nodes that keep failing work challenges (JAILER_ROLE on the registry; None in a
    # manifest written before it existed).
    jail: Any = None
    # The build artifact whose ABI the manifest gives for the stablecoin: the test token's,
    # or a standard ERC-20 with permit's for the chain's own stablecoin.
    stablecoin_artifact: str = STABLECOIN

    def contracts(self) -> dict[str, Any]:
        contracts = {
            "GpucapForwarder": self.forwarder,
            STABLECOIN: self.stablecoin,
            "NodeRegistry": self.registry,
            "OracleHub": self.oracle_hub,
            "CapacityToken": self.capacity,
            "EpochSettlement": self.settlement,
        }
        if self.loans is not None:
            contracts["PoolLoans"] = self.loans
        if self.market is not None:
            contracts["Market"] = self.market
        if self.jail is not None:
            contracts["ChallengeJail"] = self.jail
        if self.timelock is not None:  # its events are the schedule of admin changes
            contracts["GpucapTimelock"] = self.timelock
        return contracts

    def manifest(self) -> dict[str, Any]:
        return {
            "chain_id": chain.id,
            "network": network.show_active(),
            "deployed_at_block": self.deployed_at_block,
            "contracts": {
                name: {
                    "address": c.address,
                    "abi": f"build/contracts/{self._artifact(name)}.json",
                }
                for name, c in self.contracts().items()
            },
            "gpu_classes": self.class_ids,
            "timelock": self.timelock.address if self.timelock is not None else None,
            "guardian": self.guardian,
        }

    def _artifact(self, name: str) -> str:
        return self.stablecoin_artifact if name == STABLECOIN else name


def deploy_system(deployer: Any, config: DeployConfig | None = None) -> System:
    """Deploy every contract, wire roles, and register the standard GPU classes."""
    config = config or DeployConfig()
    config.check_terms(chain.id)
    receipt_race.install()  # a mined deploy step must not fail as "dropped" (see the module)
    start_block = web3.eth.block_number
    sender = {"from": deployer}
    forwarder = GpucapForwarder.deploy(sender)
    stablecoin, stablecoin_artifact = _stablecoin(deployer, config)
    registry = NodeRegistry.deploy(
        deployer, stablecoin, forwarder, config.unbonding_delay_seconds, sender
    )
    class_ids: dict[str, int] = {}
    for spec in STANDARD_CLASSES:
        tx = registry.registerGpuClass(
            spec.name.encode().ljust(32, b"\0"),
            spec.reference_power_w,
            spec.reference_throughput,
            spec.economic_life_months,
            spec.residual_value_bps,
            sender,
        )
        # From the event, not tx.return_value: brownie reads a return value by tracing the
        # transaction, and not every node serves debug_traceTransaction.
        class_ids[spec.name] = tx.events["GpuClassRegistered"]["classId"]
    oracle_hub = _deploy_oracle_hub(deployer, registry, config)
    capacity = _deploy_capacity(deployer, registry, oracle_hub, stablecoin, forwarder, config)
    market = Market.deploy(
        deployer,
        capacity,
        stablecoin,
        forwarder,
        config.market_fee_recipient or deployer,
        config.market_maker_fee_bps,
        config.market_taker_fee_bps,
        sender,
    )
    market.grantRole(market.GUARDIAN_ROLE(), config.guardian_address or deployer, sender)
    settlement, loans = _deploy_settlement(
        deployer, stablecoin, registry, oracle_hub, capacity, config
    )
    jail = _deploy_jail(deployer, registry, oracle_hub, config)
    return System(
        stablecoin=stablecoin,
        registry=registry,
        forwarder=forwarder,
        oracle_hub=oracle_hub,
        capacity=capacity,
        settlement=settlement,
        loans=loans,
        deployed_at_block=start_block + 1,
        class_ids=class_ids,
        guardian=config.guardian_address or deployer.address,
        market=market,
        jail=jail,
        stablecoin_artifact=stablecoin_artifact,
    )


def _stablecoin(deployer: Any, config: DeployConfig) -> tuple[Any, str]:
    """The stablecoin and its artifact's name: the chain's own at config.stablecoin_address
    (check_target checked it), else on the dev chain a TestStablecoin deployed here. The
    test token, whose faucet mints for anyone, is never deployed on another chain."""
    if config.stablecoin_address:
        abi = json.loads(
            (REPO_ROOT / "build" / "contracts" / f"{EXTERNAL_STABLECOIN_ARTIFACT}.json").read_text()
        )["abi"]
        address = web3.to_checksum_address(config.stablecoin_address)
        return Contract.from_abi(STABLECOIN, address, abi), EXTERNAL_STABLECOIN_ARTIFACT
    if chain.id != devchain.CHAIN_ID:
        raise DeployRefused(
            f"chain {chain.id} is not the dev chain: set DeployConfig.stablecoin_address "
            "($GPUCAP_STABLECOIN_ADDRESS); the test token is deployed on the dev chain only"
        )
    coin = TestStablecoin.deploy(
        deployer, config.faucet_drip, config.faucet_cooldown_seconds, {"from": deployer}
    )
    return coin, STABLECOIN


def _deploy_oracle_hub(deployer: Any, registry: Any, config: DeployConfig) -> Any:
    genesis = config.epoch_genesis_timestamp or web3.eth.get_block("latest")["timestamp"]
    oracles = list(config.oracle_addresses)
    if not oracles:
        if chain.id != devchain.CHAIN_ID:
            raise RuntimeError("set DeployConfig.oracle_addresses: dev oracle keys are anvil-only")
        oracles = [Account.from_key(key).address for key in dev_oracle_keys()]
    return OracleHub.deploy(
        deployer,
        registry,
        genesis,
        config.epoch_length_seconds,
        oracles,
        config.oracle_quorum,
        {"from": deployer},
    )


def _deploy_jail(deployer: Any, registry: Any, oracle_hub: Any, config: DeployConfig) -> Any:
    """ChallengeJail, allowed to jail (JAILER_ROLE) a node whose attested leaves anyone
    submits as evidence of repeated failed work challenges. Unjailing stays with the
    guardian, who holds the same role after the hand-over."""
    sender = {"from": deployer}
    jail = ChallengeJail.deploy(
        deployer,
        registry,
        oracle_hub,
        config.jail_failing_epochs,
        config.jail_window_epochs,
        sender,
    )
    registry.grantRole(registry.JAILER_ROLE(), jail, sender)
    return jail


def _deploy_capacity(
    deployer: Any,
    registry: Any,
    oracle_hub: Any,
    stablecoin: Any,
    forwarder: Any,
    config: DeployConfig,
) -> Any:
    """CapacityToken, allowed to lock the bond that backs the capacity it sells and to
    settle those locks (a shortfall proven against the OracleHub is refunded out of the
    reservation's own lock). It holds no SLASHER_ROLE: nothing outside a lock's books
    can take bond that backs an offer, a sale or a reservation."""
    sender = {"from": deployer}
    capacity = CapacityToken.deploy(
        deployer,
        registry,
        oracle_hub,
        stablecoin,
        forwarder,
        config.capacity_window_seconds,
        config.capacity_commit_ratio_bps,
        config.capacity_bond_coverage_bps,
        config.capacity_shortfall_penalty_bps,
        config.capacity_settlement_grace_seconds,
        config.capacity_uri,
        sender,
    )
    registry.grantRole(registry.BOND_LOCKER_ROLE(), capacity, sender)
    capacity.grantRole(capacity.GUARDIAN_ROLE(), config.guardian_address or deployer, sender)
    return capacity


def _deploy_settlement(
    deployer: Any,
    stablecoin: Any,
    registry: Any,
    oracle_hub: Any,
    capacity: Any,
    config: DeployConfig,
) -> tuple[Any, Any]:
    """EpochSettlement and the PoolLoans its constructor creates (same admin), returned in
    that order. The settlement is allowed to collect capacity sale proceeds. The deployer holds the
    keeper, terms and treasurer roles until the backend's keys are granted them; the
    CapacityToken asks it whether a node is flagged before taking an offer. Each node pool
    is deployed with the settlement as its immutable risk gate (PoolConfig.riskGate: no round
    raises beyond the LTV cap), must grant it DISTRIBUTOR_ROLE and the loans SLASHER_ROLE (the
    default's first loss) and is bound with setPool, which refuses a pool gated by anything
    else or financing another node.
    The backend's relayer gets SETTLER_ROLE: its keeper settles every billable node's epochs."""
    sender = {"from": deployer}
    settlement = EpochSettlement.deploy(
        deployer,
        stablecoin,
        registry,
        oracle_hub,
        capacity,
        config.settlement_dscr_window_epochs,
        sender,
    )
    settlement.setSplit(
        config.settlement_protocol_fee_bps,
        config.settlement_reserve_bps,
        config.settlement_operator_bps,
        sender,
    )
    settlement.setRiskParams(
        config.settlement_covenant_dscr_bps, config.settlement_max_ltv_bps, 0, sender
    )
    for role in (settlement.SETTLER_ROLE(), settlement.TERMS_ROLE(), settlement.TREASURER_ROLE()):
        settlement.grantRole(role, deployer, sender)
    # The backend's epoch-settlement keeper relays settle() from the relayer key.
    settlement.grantRole(settlement.SETTLER_ROLE(), _relayer_address(config), sender)
    # Contract.from_abi, not .at(): see load_system (brownie's .at() on live networks).
    loans = Contract.from_abi("PoolLoans", settlement.loans(), PoolLoans.abi)
    # The loan terms: the constructor sets demo counts; sent only when the config's differ
    # (LoanParamsSet, which the backend's index reads), while the deployer is still admin.
    if tuple(int(v) for v in loans.loanParams()) != config.loan_params():
        loans.setLoanParams(config.loan_params(), sender)
    # The loan's collateral: the loans lock the pledged bond of a drawn pool and, at
    # default, seize it into the pool (settleLock of their own lock only).
    registry.grantRole(registry.BOND_LOCKER_ROLE(), loans, sender)
    capacity.grantRole(capacity.PROCEEDS_ROLE(), settlement, sender)
    capacity.setRiskGate(settlement, sender)  # flagged nodes cannot publish new offers
    # A node with a pool loan outstanding (or a round it can still draw) cannot exit.
    registry.addObligationSource(loans, sender)
    return settlement, loans


# ---------------------------------------------------------------------------
# Node pools: the one place a deployment builds and binds a node's RevenuePool
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolTerms:
    """A node's funding round and debt terms (RevenuePool.PoolConfig less the wiring)."""

    target_assets: int
    share_price: int = 1 * USD
    funding_seconds: int = 7 * 24 * 3600
    cooldown_epochs: int = 2
    tenor_epochs: int = 2_880
    rate_bps: int = 1_000


def node_pool_args(
    system: System, *, node_id: int, operator: str, admin: str, terms: PoolTerms, now: int
) -> list[Any]:
    """RevenuePool constructor arguments for node ``node_id``: in the system's stablecoin,
    on the OracleHub's epoch schedule (EpochSettlement.setPool requires it), gasless
    through the system's forwarder, administered by ``admin``."""
    hub = system.oracle_hub
    config = (
        f"gpucap node {node_id} share",
        f"gNODE{node_id}",
        str(system.stablecoin.address),
        str(operator),
        str(admin),
        str(system.forwarder.address),
        node_id,
        terms.target_assets,
        now + terms.funding_seconds,
        terms.share_price,
        hub.genesisTimestamp(),
        hub.epochLengthSeconds(),
        terms.cooldown_epochs,
        terms.tenor_epochs,
        terms.rate_bps,
        # The risk gate (immutable): its round cannot raise beyond the LTV cap on the
        # node's depreciated value, and EpochSettlement.setPool accepts only its own.
        str(system.settlement.address),
    )
    return [config]


@dataclass(frozen=True)
class AdminCall:
    """One call an admin makes; ``data`` is its calldata (no chain read needed)."""

    to: str
    abi: list[dict[str, Any]]
    function: str
    args: tuple[Any, ...]

    @property
    def data(self) -> str:
        contract = web3.eth.contract(address=self.to, abi=self.abi)
        return contract.encode_abi(self.function, args=list(self.args))


def node_pool_bindings(system: System, pool_address: str, node_id: int) -> list[AdminCall]:
    """The admin calls, in order, that bind a deployed pool to its node in the settlement.
    Nothing is read from the pool, so bulk seeders can send them right behind the
    deployment (same admin, next nonces) before it is mined."""
    settlement = system.settlement
    distributor = web3.keccak(text="DISTRIBUTOR_ROLE")
    slasher = web3.keccak(text="SLASHER_ROLE")
    # The loss waterfall at default books the stakers' first loss (bookLoss): the loan book.
    loans = system.loans.address if system.loans is not None else settlement.address
    calls = [
        AdminCall(pool_address, RevenuePool.abi, "grantRole", (distributor, settlement.address)),
        AdminCall(pool_address, RevenuePool.abi, "grantRole", (slasher, loans)),
        AdminCall(settlement.address, settlement.abi, "setPool", (node_id, pool_address)),
    ]
    if system.guardian:  # the emergency pause of new deposits and the draw
        guardian_role = web3.keccak(text="GUARDIAN_ROLE")
        calls.append(
            AdminCall(pool_address, RevenuePool.abi, "grantRole", (guardian_role, system.guardian))
        )
    if system.market is not None:  # its shares trade on the secondary market
        market = system.market
        calls.append(AdminCall(market.address, market.abi, "setPoolListed", (pool_address, True)))
    return calls


def deploy_node_pool(
    system: System, admin: Any, *, node_id: int, operator: str, terms: PoolTerms
) -> Any:
    """Deploy and bind node ``node_id``'s RevenuePool, one transaction at a time."""
    now = web3.eth.get_block("latest")["timestamp"]
    args = node_pool_args(
        system, node_id=node_id, operator=operator, admin=str(admin), terms=terms, now=now
    )
    pool = RevenuePool.deploy(*args, {"from": admin})
    for call in node_pool_bindings(system, pool.address, node_id):
        target = Contract.from_abi("bound", call.to, call.abi)
        getattr(target, call.function)(*call.args, {"from": admin})
    return pool


def load_system(manifest: dict[str, Any]) -> System:
    """Handles on the system a manifest (see System.manifest) describes."""
    containers = {
        "GpucapForwarder": GpucapForwarder,
        "TestStablecoin": TestStablecoin,
        "NodeRegistry": NodeRegistry,
        "OracleHub": OracleHub,
        "CapacityToken": CapacityToken,
        "EpochSettlement": EpochSettlement,
        "PoolLoans": PoolLoans,
        "Market": Market,
        "ChallengeJail": ChallengeJail,
        "GpucapTimelock": GpucapTimelock,
    }
    # Contract.from_abi, not ContainerType.at: brownie 1.22's .at() fails on
    # live networks while recording the deployment (TypeError in _add_deployment).
    handles = {
        name: Contract.from_abi(name, manifest["contracts"][name]["address"], container.abi)
        for name, container in containers.items()
        if name in manifest["contracts"]
    }
    return System(
        stablecoin=handles["TestStablecoin"],
        registry=handles["NodeRegistry"],
        forwarder=handles["GpucapForwarder"],
        oracle_hub=handles["OracleHub"],
        capacity=handles["CapacityToken"],
        settlement=handles["EpochSettlement"],
        deployed_at_block=manifest["deployed_at_block"],
        class_ids=dict(manifest.get("gpu_classes", {})),
        guardian=manifest.get("guardian") or "",
        market=handles.get("Market"),
        timelock=handles.get("GpucapTimelock"),
        loans=handles.get("PoolLoans"),
        jail=handles.get("ChallengeJail"),
    )


# ---------------------------------------------------------------------------
# The hand-over: every power over users' money or data behind the timelock
# ---------------------------------------------------------------------------


def hand_over_to_timelock(
    system: System,
    deployer: Any,
    *,
    delay_seconds: int,
    proposers: list[str] | None = None,
    guardian: str | None = None,
    pools: Sequence[str] = (),
) -> Any:
    """Deploys GpucapTimelock (``delay_seconds``; ``proposers`` schedule and cancel, default
    the deployer; anyone executes a call once due) and sends ``hand_over_calls``: the timelock
    takes every power scripts/powers.py gives it, on the system's contracts and on the node
    ``pools`` deployed so far; ``guardian`` (default the deployer) takes the guardian powers
    (act at once, stop only new business). The deployer keeps nothing else. Node pools
    deployed afterwards take the timelock as their admin. Returns the timelock."""
    sender = {"from": deployer}
    timelock = GpucapTimelock.deploy(delay_seconds, list(proposers or [deployer.address]), sender)
    for call in hand_over_calls(
        system, deployer.address, timelock.address, guardian=guardian, pools=pools
    ):
        target = Contract.from_abi("handed", call.to, call.abi)
        getattr(target, call.function)(*call.args, sender)
    system.timelock = timelock
    system.guardian = guardian or deployer.address  # pools bound from now on grant it
    return timelock


def hand_over_calls(
    system: System,
    deployer: str,
    timelock: str,
    *,
    guardian: str | None = None,
    pools: Sequence[str] = (),
) -> list[AdminCall]:
    """The deployer's calls, in order, that give ``timelock`` (deployed) every power
    scripts/powers.py gives it on the system's contracts and on ``pools``, give ``guardian``
    (default the deployer) the guardian powers, and take every other role from the
    deployer, DEFAULT_ADMIN_ROLE of each contract last (revoking the others needs it).
    Reads the roles held now; nothing in the list depends on an earlier call's result, so a
    bulk sender may send them back to back (same sender, consecutive nonces)."""
    holders = {TIMELOCK: timelock, GUARDIAN: guardian or deployer}
    handles = {name: c for name, c in system.contracts().items() if name in POWERED}
    contracts = [(name, c.address, c.abi) for name, c in handles.items()]
    contracts += [(POOL, address, RevenuePool.abi) for address in pools]
    grants: list[AdminCall] = []
    renounces: list[AdminCall] = []
    for name, address, abi in contracts:
        handle = web3.eth.contract(address=address, abi=abi)
        powers = [p for p in POWERS if p.contract == name]
        for power in powers:
            role = role_id(power.role)
            for holder in _addresses(power, holders):
                if not handle.functions.hasRole(role, holder).call():
                    grants.append(AdminCall(address, abi, "grantRole", (role, holder)))
        # DEFAULT_ADMIN_ROLE last: revoking the others needs it.
        for power in sorted(powers, key=lambda p: p.role == DEFAULT_ADMIN):
            role = role_id(power.role)
            if deployer in _addresses(power, holders):
                continue
            if handle.functions.hasRole(role, deployer).call():
                renounces.append(AdminCall(address, abi, "renounceRole", (role, deployer)))
    return grants + renounces


def _addresses(power: Any, holders: dict[str, str]) -> set[str]:
    return {holders[h] for h in power.holders if h in holders}


def _relayer_address(config: DeployConfig) -> str:
    if config.relayer_address:
        return config.relayer_address
    if chain.id != devchain.CHAIN_ID:
        raise RuntimeError(
            "set DeployConfig.relayer_address ($GPUCAP_RELAYER_ADDRESS): "
            "the dev relayer key is anvil-only"
        )
    from backend.config import RELAYER_DEV_ACCOUNT

    return Account.from_key(devchain.dev_private_key(RELAYER_DEV_ACCOUNT)).address


def write_manifest(system: System, path: Path | None = None) -> Path:
    if path is None:
        env_path = os.environ.get("GPUCAP_MANIFEST")
        path = (
            Path(env_path)
            if env_path
            else REPO_ROOT / "deployments" / f"{network.show_active()}.json"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(system.manifest(), indent=2) + "\n")
    tmp.replace(path)  # readers never see a half-written manifest
    return path


def _deployer() -> Any:
    """The deploying account: the key scripts/deploy_checks.py ``deployer_key`` reads (an
    encrypted keystore, or $GPUCAP_DEPLOYER_KEY; anvil's dev keys refused off the dev
    chain), or on a development network its first unlocked account."""
    key = deployer_key(chain.id)
    if key:
        return accounts.add(key)
    if network.show_active() in ("development",) or len(accounts) > 0:
        return accounts[0]
    raise DeployRefused(
        "no deployer key: set GPUCAP_DEPLOYER_KEYSTORE (an encrypted keystore) on a network "
        "without unlocked accounts"
    )


def check_target(config: DeployConfig) -> None:
    """Before the first transaction: the node is the chain $GPUCAP_DEPLOY_CHAIN_ID names
    (when set), the covenant's counts and loan terms are in bounds (and span a day off the
    dev chain: DeployConfig.check_terms), off the dev chain no power goes to one of anvil's
    public dev accounts, and the stablecoin is given there and is one
    (deploy_checks.check_stablecoin)."""
    check_chain_id(chain.id, str(web3.provider.endpoint_uri))
    config.check_terms(chain.id)
    refuse_dev_holders(config.holders(), chain.id)
    check_stablecoin(web3, config.stablecoin_address, chain.id)


def wait_for_confirmations(deployer: Any, confirmations: int, timeout: float = 600.0) -> int:
    """Wait until the deployer's last transaction is ``confirmations`` blocks deep (its
    transactions are consecutive nonces, so every earlier one is at least as deep), then
    check it is still where it was mined. Returns its block number."""
    sent = history.from_sender(deployer.address)
    if not sent or confirmations <= 1:
        return sent[-1].block_number if sent else web3.eth.block_number
    last = sent[-1]
    deadline = time.monotonic() + timeout
    while web3.eth.block_number < last.block_number + confirmations - 1:
        if time.monotonic() > deadline:
            raise DeployRefused(
                f"no {confirmations} confirmations of {last.txid} after {timeout:.0f} s"
            )
        time.sleep(0.5)
    try:
        receipt = web3.eth.get_transaction_receipt(last.txid)
    except TransactionNotFound:
        raise DeployRefused(
            f"{last.txid} left the chain (a reorg): check the deployment before using it"
        ) from None
    if receipt["blockNumber"] != last.block_number:
        raise DeployRefused(
            f"{last.txid} moved from block {last.block_number} to {receipt['blockNumber']} "
            "(a reorg): check the deployment before using it"
        )
    return last.block_number


def main() -> None:
    config = DeployConfig.from_env()
    check_target(config)
    deployer = _deployer()
    system = deploy_system(deployer, config)
    if config.timelock_delay_seconds is not None:
        hand_over_to_timelock(
            system,
            deployer,
            delay_seconds=config.timelock_delay_seconds,
            proposers=list(config.timelock_proposers) or None,
            guardian=config.guardian_address,
        )
    confirmations = int(os.environ.get("GPUCAP_DEPLOY_CONFIRMATIONS", "1"))
    block = wait_for_confirmations(deployer, confirmations)
    for name, contract in system.contracts().items():
        if not web3.eth.get_code(contract.address):
            raise DeployRefused(f"{name} has no code at {contract.address} after the deployment")
    path = write_manifest(system)
    print(
        f"gpucap deployed on chain {chain.id} by {deployer.address} "
        f"(last transaction in block {block}, {confirmations} confirmation(s)); manifest: {path}"
    )
