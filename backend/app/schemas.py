"""Request/response models: Base (shared fields) → Create (input) → Public (output)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator
from pydantic_core import PydanticCustomError

from gpucap.addresses import checksum
from gpucap.attestation import JOULES_PER_WH

_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
ZERO_ADDRESS = "0x" + "0" * 40


def checksum_address(value: Any) -> str:
    """Accept all-lowercase/all-uppercase hex or a valid EIP-55 checksum; return the checksum."""
    if not isinstance(value, str) or not _HEX_ADDRESS.match(value):
        raise PydanticCustomError("address_format", "must be 0x followed by 40 hex digits")
    digits = value[2:]
    mixed = digits != digits.lower() and digits != digits.upper()
    checksummed = checksum(value)
    if mixed and value != checksummed:
        raise PydanticCustomError(
            "address_checksum", "mixed-case address with an invalid EIP-55 checksum (mistyped?)"
        )
    if value.lower() == ZERO_ADDRESS:
        raise PydanticCustomError("address_zero", "the zero address cannot receive funds")
    return checksummed


class FieldErrorPublic(BaseModel):
    field: str = Field(description="where in the request, dotted (e.g. `address`, `limit`)")
    message: str


class ErrorPublic(BaseModel):
    """Every error answer. Some codes add fields (e.g. `action_id`, `next_drip_at`)."""

    code: str = Field(examples=["FaucetCooldown"])
    reason: str
    errors: list[FieldErrorPublic] | None = Field(
        default=None,
        description="`ValidationFailed` only: every field that failed, and why",
    )


class FaucetCooldownPublic(ErrorPublic):
    """429: the address is in its cooldown (next_drip_at), or the client asked for too
    many drips lately (retry_after_seconds)."""

    next_drip_at: datetime | None = None
    retry_after_seconds: int | None = None


class ClientLimitPublic(ErrorPublic):
    """429: this client asked for too many of these lately; try again after
    retry_after_seconds (when its window ends)."""

    retry_after_seconds: int


# -- actions ------------------------------------------------------------------


class ActionBase(BaseModel):
    kind: str
    params: dict[str, Any]


class ActionPublic(ActionBase):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: Literal["pending", "submitted", "confirmed", "failed"]
    tx_hash: str | None
    nonce: int | None
    block_number: int | None
    final: bool = Field(
        description="the transaction is buried under the configured number of "
        "confirmations (action_final_confirmations); until then a reorg that removes it "
        "sends the action back to `submitted` and it is sent again"
    )
    chain_id: int | None = Field(description="the chain the action was made on")
    genesis_hash: str | None = Field(
        description="that chain's genesis block hash (a reset node has a new one)"
    )
    deployment: str | None = Field(
        description="the deployment: its first block and a digest of its contract addresses"
    )
    error_code: str | None = Field(
        description="machine code, e.g. the custom error's name; on a confirmed action, why "
        "it needed no transaction of its own (`PermitInEffect`: someone submitted the permit "
        "first)"
    )
    error: str | None = Field(description="human reason")
    attempts: int
    created_at: datetime
    updated_at: datetime


class ActionAccepted(BaseModel):
    action_id: str
    status: str
    status_url: str


# -- faucet ---------------------------------------------------------------------


class FaucetBase(BaseModel):
    address: str = Field(examples=["0x000000000000000000000000000000000000dEaD"])


class FaucetCreate(FaucetBase):
    @field_validator("address", mode="before")
    @classmethod
    def _checksummed(cls, value: Any) -> str:
        return checksum_address(value)


# -- health ---------------------------------------------------------------------


class HealthCheck(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    detail: str


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]


# ---------------------------------------------------------------------------
# Reads (from the chain index). Amounts are stablecoin base units (6 decimals);
# token ids are decimal strings (uint256 does not fit a JSON number everywhere).
# ---------------------------------------------------------------------------


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class GpuClassPublic(_Row):
    class_id: int
    name: str
    reference_power_w: int
    reference_throughput: int
    economic_life_months: int
    residual_value_bps: int


class NodePublic(_Row):
    node_id: int
    operator: str
    class_id: int
    gpu_count: int
    region: str
    node_key: str
    acquisition_cost: int
    acquired_at: int
    status: Literal["active", "jailed", "exiting", "exited"]
    bonded: int
    locked: int
    slashed: int
    registered_block: int


class NodeJailPublic(BaseModel):
    """Why a node is jailed now: the registry's NodeJailed event, and, when ChallengeJail
    jailed it, the attested epochs whose failed work challenges were the evidence
    (``reason`` is then keccak256 of those leaves' hashes, in epoch order)."""

    reason: str
    jailer: str
    tx_hash: str
    block_number: int
    challenge_epochs: list[int] | None = None
    challenges_failed: list[int] | None = None
    reporter: str | None = None


class NodeDetailPublic(NodePublic):
    # Set while the node is jailed; None otherwise.
    jail: NodeJailPublic | None = None


class EpochPublic(_Row):
    epoch: int
    root: str
    node_count: int
    total_energy_joules: int
    total_milli_gpu_hours: int
    config_version: int
    transmitter: str
    block_number: int
    attested_at: int
    tx_hash: str

    @computed_field(description="total_energy_joules in whole Wh, rounded down (derived)")
    def total_energy_wh(self) -> int:
        return self.total_energy_joules // JOULES_PER_WH


class OfferPublic(_Row):
    offer_id: int
    node_id: int
    token_id: str
    class_id: int
    window_start: int
    amount: int
    sold: int
    price_per_gpu_hour: int
    bond_locked: int
    status: Literal["open", "cancelled"]
    published_block: int


class ReservationPublic(_Row):
    reservation_id: int
    holder: str
    node_id: int
    token_id: str
    class_id: int
    window_start: int
    amount: int
    price_per_gpu_hour: int
    status: Literal["reserved", "settled"]
    refund: int | None
    slashed: int | None
    uncovered: int


# Prices are integers of stablecoin base units (6 decimals) per GPU-hour, floored from the
# exact ratio (backend/services/pricing/stats.py); null where no trade gives one.


class PriceStatsPublic(BaseModel):
    """One source's trades of one GPU class and delivery window, and their prices."""

    source: Literal["primary", "secondary", "combined"] = Field(
        description="primary: CapacityToken sales at an operator's ask; secondary: Market "
        "fills between holders, wash-flagged ones excluded; combined: both, in chain order"
    )
    trades: int
    gpu_hours: int
    volume: int = Field(description="stablecoin base units paid (fees not included)")
    vwap_per_gpu_hour: int | None = Field(description="floor(volume / gpu_hours)")
    last_per_gpu_hour: int | None = Field(
        description="the newest trade's price (chain order), floored"
    )
    last_at: int | None = Field(description="the newest trade's block time (unix seconds)")
    first_at: int | None = Field(description="the first trade's block time: the TWAP's start")
    twap_per_gpu_hour: int | None = Field(
        description="time-weighted: each trade's price held from its block time until the "
        "next trade's, the newest until twap_until; floored. With no time elapsed since "
        "the first trade, the last price"
    )
    twap_until: int | None = Field(
        description="where the TWAP's span ends: the window's start, or the newest indexed "
        "block's time if earlier"
    )


class ExcludedTradesPublic(BaseModel):
    """Secondary trades left out of every price: those the index flagged as a self-trade or
    a wash trade (see the market's trades, ``wash_flag``)."""

    trades: int
    gpu_hours: int
    volume: int = Field(description="stablecoin base units")


class PricePointPublic(BaseModel):
    """What one GPU class's capacity for one delivery window traded at, by source."""

    class_id: int
    window_start: int
    primary: PriceStatsPublic
    secondary: PriceStatsPublic
    combined: PriceStatsPublic
    excluded: ExcludedTradesPublic
    as_of: int = Field(description="the newest indexed block's time the figures are taken at")


class IndexerStatusPublic(BaseModel):
    chain_id: int
    deployment_block: int
    next_block: int
    head_block: int
    lag_blocks: int
    reorgs: int
    resets: int
    updated_at: datetime
    events: dict[str, int]


_HEX = r"^0x([0-9a-fA-F]{2})*$"


class ForwardCreate(BaseModel):
    """An ERC-2771 ForwardRequest signed by the wallet (EIP-712, GpucapForwarder domain)."""

    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from", description="the wallet that signed")
    to: str
    value: int = Field(0, ge=0, lt=2**256)
    gas: int = Field(ge=21_000, le=10_000_000, description="gas for the inner call")
    deadline: int = Field(ge=0, lt=2**48, description="unix seconds (uint48)")
    data: str = Field(pattern=_HEX, max_length=2 + 2 * 32_768)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")
    nonce: int | None = Field(
        None, ge=0, description="the forwarder nonce signed for (optional; checked if given)"
    )

    @field_validator("sender", "to", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        return checksum_address(value)


class ForwardAccepted(ActionAccepted):
    contract: str
    function: str
    nonce: int


class ForwarderInfoPublic(BaseModel):
    """The EIP-712 domain and types a wallet signs forward requests with."""

    domain: dict[str, Any]
    types: dict[str, Any]
    primary_type: str = "ForwardRequest"
    allowed_calls: dict[str, list[str]]


class HoldingPublic(_Row):
    token_id: str
    class_id: int | None
    window_start: int | None
    amount: int


# -- pools and settlements --------------------------------------------------------
# Share amounts (18 decimals) are decimal strings like token ids: 1e5 shares already
# exceed 2^53. Stablecoin amounts (6 decimals) are integers. A ratio the contract
# reports as infinite (RiskModel.INFINITE: no debt service, or no collateral value)
# is null.

Shares = Annotated[str, Field(pattern=r"^[0-9]+$", examples=["1000000000000000000"])]


class PoolRoundPublic(BaseModel):
    target: int = Field(description="stablecoin units the round raises")
    deadline: int = Field(description="unix seconds; the round fails if not full by then")
    share_price: int = Field(description="stablecoin units per whole share (1e18)")
    raised: int
    refunded: int = Field(description="returned to investors of a failed round")
    state: Literal["open", "succeeded", "failed", "drawn"]


class PoolDebtPublic(BaseModel):
    """The operator's debt from the raise: straight-line instalments over the tenor."""

    principal: int = Field(description="drawn raise (0 until drawn)")
    rate_bps: int = Field(description="annual interest rate")
    tenor_epochs: int
    draw_epoch: int | None = Field(description="epoch of the draw; instalments start after it")
    service_per_epoch: int = Field(
        description="principal + interest scheduled for the current epoch (RevenuePool."
        "debtServiceDue); interest declines with the principal"
    )
    outstanding: int = Field(description="principal owed after the current epoch's instalment")
    arrears: int = Field(description="scheduled service not yet paid, at the last settlement")


class PoolRiskPublic(BaseModel):
    """The node's covenant figures at its last indexed settlement."""

    collateral_value: int | None = Field(description="depreciated value (null: not read)")
    ltv_bps: int | None = Field(description="loan-to-value; null = infinite or not read")
    dscr_bps: int | None = Field(description="trailing DSCR; null = no service in window")
    flagged: bool
    dscr_breach: bool
    ltv_breach: bool
    last_settled_epoch: int


# Loan figures are integers of micro-USD (the stablecoin's 6-decimal units), named so.
LoanState = Literal["performing", "cash_sweep", "defaulted"]


class LoanRunsPublic(BaseModel):
    """The runs PoolLoans counts at each settlement (in epochs: a settlement of a range adds
    its epochs), as the index's settlements give them."""

    clean_epochs: int = Field(
        description="epochs covered by settlements in a row not flagged (the cure run)"
    )
    cure_epochs: int = Field(description="clean epochs (of settlements in a row) that end a sweep")
    low_dscr_epochs: int = Field(
        description="epochs covered by settlements in a row with DSCR under the floor"
    )
    default_dscr_epochs: int = Field(description="that run which makes the loan due for default")
    default_dscr_floor_bps: int


class LoanDefaultPublic(BaseModel):
    """PoolLoans.LoanDefaulted and its LossWaterfall: claim = principal + arrears; the bond,
    stakers and reserve take it in that order, holders the rest; bond + reserve are cash into
    the pool, the rest of the claim is recovered from the node's later revenue."""

    epoch: int = Field(description="the node's last settled epoch at the default")
    principal_accelerated_micro_usd: int
    arrears_micro_usd: int
    bond_seized_micro_usd: int
    stakers_loss_micro_usd: int = Field(description="booked against the staked shares")
    reserve_cover_micro_usd: int = Field(description="paid from the insurance reserve")
    holders_loss_micro_usd: int = Field(description="left to the unstaked holders")
    recovery_claim_micro_usd: int = Field(description="what later revenue owes, at the default")
    recovered_micro_usd: int = Field(description="repaid by settlements since the default")
    recovery_outstanding_micro_usd: int
    tx_hash: str


class PoolLoanPublic(BaseModel):
    """The pool's loan (PoolLoans, one per node) at the newest indexed block."""

    state: LoanState
    since_epoch: int | None = Field(description="epoch of the last transition (null: none yet)")
    arrears_micro_usd: int = Field(description="unpaid service at the last settlement")
    default_arrears_threshold_micro_usd: int = Field(
        description="arrears above this (a share of the drawn principal) make default due"
    )
    default_due: bool = Field(
        description="the index's reading of PoolLoans.defaultDue: the keeper declares it"
    )
    pledged_bond_micro_usd: int = Field(description="node bond locked for the loan now")
    pledge_released_micro_usd: int
    runs: LoanRunsPublic | None = Field(description="null once defaulted (no runs count)")
    default: LoanDefaultPublic | None = Field(description="null unless defaulted")


class PoolLoanEventPublic(BaseModel):
    """One PoolLoans event of the pool's node: LoanStateChanged, BondPledged, PledgeReleased,
    LoanDefaulted or LossWaterfall."""

    event: str
    epoch: int | None
    from_state: LoanState | None
    to_state: LoanState | None
    amounts_micro_usd: dict[str, int] = Field(
        description="the event's figures by name: pledged, released; principal, arrears, "
        "recovery_claim; bond, stakers, reserve, holders"
    )
    block_number: int
    block_timestamp: int
    tx_hash: str


class MarkRulePublic(BaseModel):
    """What "enough trades" means on this server (settings GPUCAP_MARK_*): a class's price
    marks collateral once it traded at least ``min_trades`` times for at least
    ``min_volume`` in the last ``lookback_seconds``, counting ``source``'s trades; wash
    trades and self-trades never count."""

    lookback_seconds: int
    min_trades: int
    min_volume: int = Field(description="stablecoin base units")
    source: Literal["primary", "secondary", "combined"]


class CollateralMarketPublic(BaseModel):
    """The node's GPU class's trades in the lookback (every delivery window): the market
    price its collateral is marked to."""

    class_id: int
    since: int = Field(description="the lookback's start (unix seconds)")
    until: int = Field(description="its end: the newest indexed block's time")
    trades: int
    gpu_hours: int
    volume: int = Field(description="stablecoin base units paid")
    price_per_gpu_hour: int | None = Field(
        description="VWAP of those trades, floored; null without any"
    )
    excluded: ExcludedTradesPublic
    enough: bool = Field(description="the trades meet the rule: the price marks collateral")


class PoolCollateralPublic(BaseModel):
    """The node the pool finances, at the newest indexed block: its depreciated book value
    beside its value marked to the market. Stablecoin base units.

    market_value = residual + floor(sellable_milli_gpu_hours x price x capital_share_bps /
    (1000 x 10^4)), where sellable_milli_gpu_hours = floor(gpu_count x
    remaining_life_seconds x 1000 x utilization_bps / (3600 x 10^4)) and price is the
    class's VWAP in the lookback: the collateral's remaining hours earning today's market
    price, the capital's share of it (after fee, reserve and the operator's share),
    undiscounted, then its residual (backend/risk/marking.py). marked_value = min(book,
    market) when the class traded enough, else book."""

    book_value: int = Field(description="RiskModel.value on the chain's curve, now")
    curve: Literal["straight_line", "declining_balance"]
    market_value: int | None = Field(
        description="market-implied value; null: not enough trades to mark to (see rule)"
    )
    marked_value: int = Field(description="the lower of book and market value")
    basis: Literal["book", "market"] = Field(description="which of the two marked_value is")
    ltv_bps_book: int | None = Field(description="debt outstanding / book value; null = infinite")
    ltv_bps_marked: int | None = Field(
        description="debt outstanding / marked value; null = infinite"
    )
    remaining_life_seconds: int
    utilization_bps: int = Field(description="share of the remaining hours assumed sold")
    utilization_attested: bool = Field(
        description="true: the node's trailing attested mean; false: the default assumption"
    )
    utilization_epochs: int = Field(
        description="attested epochs of the trailing window the mean is taken over"
    )
    utilization_unknown_epochs: int = Field(
        description="of those, epochs with no leaf of the node or utilization coverage 0: "
        "unknown, left out of the mean (weighted by coverage), never counted as idle"
    )
    capital_share_bps: int = Field(
        description="share of a GPU-hour's price that reaches the capital (deployed split)"
    )
    market: CollateralMarketPublic
    rule: MarkRulePublic
    as_of: int = Field(description="the newest indexed block's time")


class PoolPublic(BaseModel):
    address: str
    node_id: int
    operator: str
    name: str
    symbol: str
    stablecoin: str
    genesis_timestamp: int
    epoch_length_seconds: int
    cooldown_epochs: int
    current_epoch: int = Field(description="the pool's epoch at the newest indexed block")
    round: PoolRoundPublic
    debt: PoolDebtPublic
    total_shares: Shares
    total_staked: Shares
    revenue_distributed: int = Field(description="lifetime stablecoin distributed to the pool")
    revenue_claimed: int
    losses_booked: int = Field(description="lifetime loss in stablecoin units")
    loss_shares: Shares = Field(description="staked shares taken by those losses")
    released_shares: Shares = Field(
        description="stake released by near-total losses (RevenuePool StakeReleased) and not "
        "yet withdrawn, the rounding dust of releases (owned by nobody) included"
    )
    last_distributed_epoch: int
    risk: PoolRiskPublic | None = Field(description="null until the node's first settlement")
    loan: PoolLoanPublic | None = Field(description="null until the raise is drawn")
    collateral: PoolCollateralPublic | None = Field(
        description="book and marked value of the node; null if its node or GPU class "
        "has not been indexed"
    )
    as_of_block: int


class CoolingPublic(BaseModel):
    amount: Shares = Field(description="shares in cooldown after an unstake request")
    unlock_epoch: int | None = Field(description="first epoch they can be withdrawn")


class PoolPositionPublic(BaseModel):
    """RevenuePool.stakeOf plus the wallet balance, computed from the index."""

    pool: str
    node_id: int
    holder: str
    shares: Shares = Field(description="in the wallet (not staked)")
    staked: Shares = Field(description="earning + warming up")
    staked_earning: Shares
    staked_warming: Shares
    activation_epoch: int | None = Field(description="when warming stake starts earning")
    cooling: CoolingPublic
    claimable: int = Field(description="stablecoin units claimable now")
    claimed: int
    principal_shares: Shares = Field(description="shares staked and not yet withdrawn")
    loss_taken: Shares = Field(description="shares lost to booked losses")
    released: Shares = Field(
        description="stake returned by a release (a near-total loss ended the staking era): "
        "no longer at stake, withdrawable at once with withdraw()"
    )


class SkippedEpochsPublic(BaseModel):
    """A settlement of a range (EpochSettlement.NodeSettled, fromEpoch < epoch): the node's
    epochs ``from_epoch..to_epoch`` were not settled on their own but in this settlement, one
    range with its epoch; ``service`` is the debt service scheduled over the whole range."""

    from_epoch: int
    to_epoch: int
    service: int = Field(
        description="debt service scheduled over the whole range (these epochs and the "
        "settled one), stablecoin units"
    )


class PoolEpochPublic(BaseModel):
    epoch: int
    revenue_distributed: int = Field(description="debt service + stakers' share paid in")
    debt_paid: int
    stakers_share: int
    loss_assets: int
    loss_shares: Shares
    skipped: SkippedEpochsPublic | None = Field(
        description="the earlier epochs of the range settled at this epoch, where they owed "
        "service (null: none)"
    )


class SettlementSplitPublic(BaseModel):
    fee: int
    reserve: int
    operator: int
    debt_paid: int
    stakers: int


class NodeSettlementPublic(BaseModel):
    """One settled node-epoch: gross == fee + reserve + operator + debt_paid + stakers."""

    node_id: int
    epoch: int
    gross: int
    usage: int
    proceeds: int
    net: int = Field(description="gross - fee - reserve - operator: what services the debt")
    split: SettlementSplitPublic
    dscr_bps: int | None = Field(description="trailing DSCR after it; null = infinite")
    ltv_bps: int | None = Field(description="null = infinite or not read")
    flagged: bool
    dscr_breach: bool
    ltv_breach: bool
    collateral_value: int | None
    arrears: int | None
    skipped: SkippedEpochsPublic | None = Field(
        description="the earlier epochs of the range this settlement covered (null: it "
        "covered its own epoch only)"
    )
    block_number: int
    block_timestamp: int
    tx_hash: str


class PortfolioPublic(BaseModel):
    """What an address holds and owes, from the index."""

    address: str
    stablecoin: int
    capacity: list[HoldingPublic]
    reservations: list[ReservationPublic]
    nodes: list[NodePublic]
    pools: list[PoolPositionPublic] = Field(description="positions in revenue pools")
    as_of_block: int


class SigningNoncesPublic(BaseModel):
    """Nonces a wallet signs with: the forwarder's (ForwardRequest) and the stablecoin's
    (EIP-2612 permit). Read from the chain: they must be current, not indexed."""

    address: str
    forwarder: int
    stablecoin_permit: int
    stablecoin_name: str
    stablecoin: str
    chain_id: int
    chain_time: int = Field(
        description="the latest block's timestamp: set deadlines from it, not from a wall "
        "clock (the forwarder and the permit compare them with block time)"
    )


# -- node metrics (attested leaves, verified against the on-chain root) ----------


class NodeMetricPublic(BaseModel):
    """One node's attested figures for one epoch (an OracleHub leaf) and what follows.

    A coverage of 0 means the figure is unknown (published as 0, not measured as 0)."""

    epoch: int
    uptime_bps: int
    utilization_bps: int
    sample_coverage_bps: int
    utilization_coverage_bps: int
    energy_coverage_bps: int = Field(description="0: the energy is unknown, not zero")
    challenges_passed: int
    challenges_failed: int
    energy_joules: int
    energy_wh: int = Field(description="energy_joules in whole Wh, rounded down (derived)")
    milli_gpu_hours: int
    cum_milli_gpu_hours: int | None = Field(
        description="since the node's registration; null for a leaf v1 row"
    )
    cum_energy_joules: int | None
    cum_busy_gpu_seconds: int | None
    gpu_hours: float = Field(description="delivered GPU-hours: milli_gpu_hours / 1000")
    energy_efficiency: float | None = Field(
        description="delivered GPU-hours per kWh; null when the energy is unknown (coverage 0)"
    )


class NodeLeafPublic(BaseModel):
    """IOracleHub.NodeLeaf (v2), field for field (the tuple to pass to verifyLeaf)."""

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


class NodeLeafProofPublic(BaseModel):
    """A node's leaf, its Merkle proof and the epoch's attested root: anyone can check it
    with ``OracleHub.verifyLeaf(leaf, proof)`` (or ``MerkleProof.verify(proof, root,
    leaf_hash)``), without trusting this API."""

    leaf: NodeLeafPublic
    leaf_hash: str
    proof: list[str]
    root: str
    attestation_tx_hash: str
    attestation_block: int


class FleetClassMetricsPublic(BaseModel):
    """One GPU class's attested nodes in one epoch."""

    class_id: int
    class_name: str | None
    nodes: int
    mean_utilization_bps: float | None = Field(
        description="mean over the class's nodes weighted by their utilization coverage; "
        "null when no node's utilization is known"
    )
    utilization_unknown_nodes: int = Field(
        description="nodes whose utilization coverage is 0 (unknown, left out of the mean)"
    )
    mean_uptime_bps: float | None = Field(
        description="mean over the class's nodes weighted by their sample coverage; null "
        "when no node was observed"
    )
    uptime_unknown_nodes: int = Field(
        description="nodes whose sample coverage is 0 (unknown, left out of the mean)"
    )
    gpu_hours: float
    energy_joules: int = Field(description="summed over the nodes whose energy is known")
    energy_wh: int = Field(description="energy_joules in whole Wh, rounded down (derived)")
    energy_unknown_nodes: int = Field(
        description="nodes whose energy coverage is 0 (unknown, left out of the efficiency)"
    )
    energy_efficiency: float | None = Field(
        description="GPU-hours per kWh of the nodes whose energy is known (their GPU-hours "
        "over their energy); null when no node's energy is known"
    )


class FleetEpochMetricsPublic(BaseModel):
    epoch: int
    attested_at: int
    nodes: int
    gpu_hours: float
    energy_joules: int
    energy_wh: int = Field(description="energy_joules in whole Wh, rounded down (derived)")
    energy_unknown_nodes: int = Field(
        default=0,
        description="nodes whose energy coverage is 0 (unknown, left out of the efficiency)",
    )
    energy_efficiency: float | None = Field(
        default=None,
        description="GPU-hours per kWh of the nodes whose energy is known; null when none is",
    )
    classes: list[FleetClassMetricsPublic]


class WindowLoadPublic(BaseModel):
    """One delivery window of one node: what was billed against what it could deliver,
    and what the quorum attests it delivered. GPU-hour figures are in milli-GPU-hours
    (the leaves' unit), exact integers."""

    window_start: int = Field(description="unix time; the token id's window")
    window_end: int = Field(description="window_start + the CapacityToken's window length")
    token_id: str = Field(description="the CapacityToken id (class, window), as decimal text")
    status: Literal["upcoming", "open", "ended"] = Field(
        description="relative to as_of: not started, running, over"
    )
    sold_gpu_hours: int = Field(description="GPU-hours bought from the node's offers")
    reserved_gpu_hours: int = Field(
        description="of those, redeemed into reservations against this node"
    )
    refunded_milli_gpu_hours: int = Field(
        description="shortfall refunded at the settlement of its reservations (not billed)"
    )
    billed_milli_gpu_hours: int = Field(
        description="sold x 1000 - refunded: the hours paid for and kept (reserved or not: "
        "an hour sold and never redeemed is paid and kept all the same)"
    )
    registered_seconds: int = Field(
        description="seconds of the window the node was registered (from its NodeRegistered "
        "block to its NodeExited block, if any)"
    )
    available_milli_gpu_hours: int = Field(
        description="gpu_count x registered_seconds x 1000 / 3600, rounded down"
    )
    load_factor_bps: int | None = Field(
        description="billed / available in bps, rounded down; null when nothing was available"
    )
    first_epoch: int = Field(description="the first OracleHub epoch that counts toward the window")
    last_epoch: int = Field(description="the last one (an epoch counts where it ends)")
    attested_epochs: int = Field(description="epochs of the window attested so far")
    leaves: int = Field(description="verified leaves of the node among them")
    unknown_epochs: int = Field(
        description="attested epochs with no leaf of the node or a leaf of sample coverage 0: "
        "unknown, not idle"
    )
    delivered_milli_gpu_hours: int = Field(
        description="sum of the verified leaves' milliGpuHours over the window's epochs"
    )
    sample_coverage_bps: int | None = Field(
        description="the leaves' sample coverage summed over the attested epochs of the window "
        "(an epoch without a leaf counts 0) / attested epochs, rounded down; null before any"
    )


class NodeLoadPublic(BaseModel):
    """A node's load factor as billed, window by window (newest first), beside its attested
    delivery."""

    node_id: int
    gpu_count: int
    window_seconds: int
    as_of: int = Field(description="the newest indexed block's time: what `status` is relative to")
    registered_at: int = Field(description="unix time of the node's NodeRegistered block")
    exited_at: int | None = Field(description="unix time of its NodeExited block; null if not")
    windows: list[WindowLoadPublic]


# -- governance -----------------------------------------------------------------


class GovernanceChangePublic(BaseModel):
    """One admin change the GpucapTimelock announced: the call it will make, when it may
    take effect, and what became of it."""

    operation_id: str = Field(
        description="the timelock's operation id (hashOperation; one per batch): "
        "`python -m gpucap governance execute <operation_id>` carries it out once ready"
    )
    call_index: int = Field(description="the call's place in its batch (0 for a single call)")
    status: Literal["pending", "ready", "executed", "cancelled"] = Field(
        description="pending: waiting for its time of effect; ready: due, anyone may "
        "execute it; executed; cancelled (by a canceller, before it was executed)"
    )
    target: str = Field(description="the contract the timelock will call")
    contract: str | None = Field(
        description="the target's gpucap contract name (the manifest's, or `RevenuePool` "
        "for a bound pool); null when the target is not known yet (e.g. a pool the same "
        "batch binds), the call then decoded by any gpucap function of its selector"
    )
    function: str | None = Field(description="the function called; null if not decoded")
    args: dict[str, Any] | None = Field(
        description="the call's arguments by name (structs as objects, integers beyond "
        "2^53 as decimal text); null if not decoded"
    )
    value: str = Field(description="wei sent with the call, as decimal text")
    data: str = Field(description="the call's calldata, 0x-hex")
    predecessor: str = Field(description="an operation that must be executed first (0x00… none)")
    salt: str
    delay_seconds: int
    scheduled_at: int = Field(description="unix time of the scheduling block")
    eta: int = Field(description="time of effect: unix time from which it may be executed")
    scheduled_block: int
    scheduled_tx: str
    executed_at: int | None
    executed_tx: str | None
    cancelled_at: int | None
    cancelled_tx: str | None
