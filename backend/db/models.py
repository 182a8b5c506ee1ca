"""Tables. Portable SQLAlchemy 2 types only: the same models run on SQLite and PostgreSQL."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; this stores UTC
    and re-attaches the zone on read, so comparisons never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class BigUint(TypeDecorator[int]):
    """A uint256 (share amounts, staking units, revenue indexes) as a decimal string:
    BigInteger is signed 64-bit, and 1e5 shares of 18 decimals already overflow it."""

    impl = String(78)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value < 0:
            raise ValueError(f"negative value {value} given to a uint256 column")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class ActionKind(enum.StrEnum):
    FAUCET = "faucet"
    FORWARD = "forward"  # a wallet's EIP-712 forward request, relayed via GpucapForwarder
    PROVE_DELIVERY = "prove_delivery"  # attested leaves of a window's epochs, for a node
    SETTLE_RESERVATION = "settle_reservation"  # after its window (and proofs or grace)
    SETTLE_EPOCH = "settle_epoch"  # EpochSettlement.settle: one epoch, a batch of nodes
    DECLARE_DEFAULT = "declare_default"  # PoolLoans.declareDefault: one node, once due
    PERMIT = "permit"  # a wallet's EIP-2612 permit for the Market, sent by the relayer itself
    JAIL_NODE = "jail_node"  # ChallengeJail.jail: one node's attested failing leaves


class ActionStatus(enum.StrEnum):
    PENDING = "pending"  # accepted, no transaction signed yet
    SUBMITTED = "submitted"  # signed (tx_hash, nonce, raw_tx recorded) and broadcast
    CONFIRMED = "confirmed"  # mined with status 1 (``Action.final`` once buried deep enough)
    FAILED = "failed"  # will not succeed; error_code + error say why

    @property
    def is_final(self) -> bool:
        """The relayer's work is done (mined, or failed). Not the chain's finality: a
        reorg may still take a mined row's transaction away (then the row is re-opened);
        ``Action.final`` says it is buried under enough confirmations."""
        return self in (ActionStatus.CONFIRMED, ActionStatus.FAILED)


OPEN_STATUSES = (ActionStatus.PENDING.value, ActionStatus.SUBMITTED.value)


class Action(Base):
    """One user action: a row (with its idempotency key) before it is a transaction."""

    __tablename__ = "actions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(32))
    # Unique per chain identity (below), not globally: after a chain reset and a
    # redeploy the same request is a new action on the new chain.
    idempotency_key: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=ActionStatus.PENDING.value)
    sender: Mapped[str | None] = mapped_column(String(42))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    # The signed transaction, written before broadcast: after a crash the same
    # transaction is re-sent (same hash), never a second one for the same action.
    raw_tx: Mapped[str | None] = mapped_column(Text)
    # Fees of the current transaction (EIP-1559; wei) and when it was sent: a
    # transaction pending too long is replaced by one with the same nonce and
    # higher fees, and every hash it ever had stays listed (any one may be mined).
    max_fee_per_gas: Mapped[int | None] = mapped_column(BigInteger)
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(BigInteger)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replaced_tx_hashes: Mapped[list[str] | None] = mapped_column(JSON)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    # The mined transaction (confirmed, or failed on chain) is buried under
    # ``action_final_confirmations`` blocks. Until then a reorg that removes it re-opens
    # the row (relaying/finality.py).
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    # The chain the row was made on: chain id, genesis block hash (a reset node has a new
    # one) and the deployment (``ChainIdentity.deployment``). Rows of another chain are
    # never answered as current. NULL on rows older than these columns.
    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    genesis_hash: Mapped[str | None] = mapped_column(String(66))
    deployment: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "idempotency_key",
            "chain_id",
            "genesis_hash",
            "deployment",
            name="uq_actions_key_chain",
        ),
        Index("ix_actions_status_updated_at", "status", "updated_at"),
        # The finality review's rows, every index run: mined and not final yet.
        Index("ix_actions_final_status", "final", "status"),
        # A sender's open forward request (forward.open_request_of): a key-prefix range.
        Index("ix_actions_kind_status_key", "kind", "status", "idempotency_key"),
        # Relayed market fills the index does not show yet (market/book.py in_flight):
        # confirmed forward actions from a block on, without reading each row.
        Index("ix_actions_kind_status_block", "kind", "status", "block_number"),
    )


# ---------------------------------------------------------------------------
# Chain index: every gpucap event since the deployment block, and read models
# (projections) derived from those events alone. The API reads these, never the
# chain, on the request path. Projections can be dropped and rebuilt from
# ``chain_events`` at any time (that is how a reorg is undone).
# Amounts are stablecoin base units (6 decimals) and fit BigInteger; uint256
# token ids do not, so they are stored as decimal strings beside their parts.
# ---------------------------------------------------------------------------


class IndexerState(Base):
    """Where the indexer is, per chain id (one row in practice)."""

    __tablename__ = "indexer_state"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    deployment_block: Mapped[int] = mapped_column(BigInteger)
    # The first block not yet indexed.
    next_block: Mapped[int] = mapped_column(BigInteger)
    head_block: Mapped[int] = mapped_column(BigInteger, default=0)
    reorgs: Mapped[int] = mapped_column(Integer, default=0)
    resets: Mapped[int] = mapped_column(Integer, default=0)
    # The deployment's immutable schedule (no event carries it; read once per deployment):
    # CapacityToken.windowSeconds() and OracleHub's genesisTimestamp()/epochLengthSeconds().
    # NULL until the indexer has read them.
    window_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    epoch_genesis_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    epoch_length_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class IndexedBlock(Base):
    """Hashes of recently indexed blocks: a changed hash is a reorg (or a reset node)."""

    __tablename__ = "indexed_blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    timestamp: Mapped[int] = mapped_column(BigInteger)


class ChainEvent(Base):
    __tablename__ = "chain_events"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(66))
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    contract: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The emitting contract (checksummed). Needed for contracts the manifest does not
    # name one by one (RevenuePools, found through EpochSettlement.PoolSet).
    address: Mapped[str | None] = mapped_column(String(42), index=True)
    # Chain state read once when the event was indexed, at the event's block, for
    # figures the event does not carry (EpochSettlement.nodeRisk at NodeSettled). Stored
    # with the event so a rebuild (reorg) needs no chain reads; dropped with it.
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_chain_events_event", "event"),)


class GpuClassRow(Base):
    __tablename__ = "gpu_classes"

    class_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    reference_power_w: Mapped[int] = mapped_column(Integer)
    reference_throughput: Mapped[int] = mapped_column(BigInteger)
    economic_life_months: Mapped[int] = mapped_column(Integer)
    residual_value_bps: Mapped[int] = mapped_column(Integer)


class NodeRow(Base):
    __tablename__ = "nodes"

    node_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    operator: Mapped[str] = mapped_column(String(42), index=True)
    class_id: Mapped[int] = mapped_column(Integer, index=True)
    gpu_count: Mapped[int] = mapped_column(Integer)
    region: Mapped[str] = mapped_column(String(32))
    node_key: Mapped[str] = mapped_column(String(42))
    acquisition_cost: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    bonded: Mapped[int] = mapped_column(BigInteger, default=0)
    locked: Mapped[int] = mapped_column(BigInteger, default=0)
    slashed: Mapped[int] = mapped_column(BigInteger, default=0)
    registered_block: Mapped[int] = mapped_column(BigInteger)


class EpochRow(Base):
    __tablename__ = "epochs"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root: Mapped[str] = mapped_column(String(66))
    node_count: Mapped[int] = mapped_column(Integer)
    total_energy_joules: Mapped[int] = mapped_column(BigInteger)
    total_milli_gpu_hours: Mapped[int] = mapped_column(BigInteger)
    config_version: Mapped[int] = mapped_column(BigInteger)
    transmitter: Mapped[str] = mapped_column(String(42))
    block_number: Mapped[int] = mapped_column(BigInteger)
    attested_at: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))


class OfferRow(Base):
    __tablename__ = "offers"

    offer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, index=True)
    token_id: Mapped[str] = mapped_column(String(78))
    class_id: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    price_per_gpu_hour: Mapped[int] = mapped_column(BigInteger)
    bond_locked: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # open | cancelled
    published_block: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_offers_class_window", "class_id", "window_start"),)


class SaleRow(Base):
    """One CapacityBought event: the raw material of the price index."""

    __tablename__ = "sales"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    offer_id: Mapped[int] = mapped_column(BigInteger)
    node_id: Mapped[int] = mapped_column(BigInteger)
    buyer: Mapped[str] = mapped_column(String(42), index=True)
    token_id: Mapped[str] = mapped_column(String(78))
    class_id: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_sales_class_time", "class_id", "block_timestamp"),)


class ReservationRow(Base):
    __tablename__ = "reservations"

    reservation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holder: Mapped[str] = mapped_column(String(42), index=True)
    node_id: Mapped[int] = mapped_column(BigInteger, index=True)
    token_id: Mapped[str] = mapped_column(String(78))
    class_id: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    price_per_gpu_hour: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # reserved | settled
    refund: Mapped[int | None] = mapped_column(BigInteger)
    slashed: Mapped[int | None] = mapped_column(BigInteger)
    uncovered: Mapped[int] = mapped_column(BigInteger, default=0)
    # ReservationSettled.shortfallMilliGpuHours: the hours refunded, not billed (None: open).
    shortfall_milli_gpu_hours: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class BalanceRow(Base):
    """A holder's balance of one asset: the stablecoin (token_id "") or a capacity token."""

    __tablename__ = "balances"

    holder: Mapped[str] = mapped_column(String(42), primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), primary_key=True)  # "stablecoin" | "capacity"
    token_id: Mapped[str] = mapped_column(String(78), primary_key=True)
    class_id: Mapped[int | None] = mapped_column(Integer)
    window_start: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------------------
# Revenue pools (one per node, bound with EpochSettlement.setPool → PoolSet) and
# node settlements. The pool read models mirror RevenuePool's own accounting (units,
# cohorts, revenue index, eras) event by event, so a position's claimable revenue
# and loss are computed from the database exactly as the contract's stakeOf does.
# ---------------------------------------------------------------------------


class PoolTermsRow(Base):
    """A pool's immutable terms, read from the pool (one set of eth_calls) when its
    PoolSet is indexed. Not a projection: no event carries them. Dropped on a reset,
    and by a rollback that removes the pool's PoolSet."""

    __tablename__ = "pool_terms"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32))
    stablecoin: Mapped[str] = mapped_column(String(42))
    operator: Mapped[str] = mapped_column(String(42), index=True)
    target_assets: Mapped[int] = mapped_column(BigInteger)
    share_price: Mapped[int] = mapped_column(BigInteger)  # stablecoin units per whole share
    funding_deadline: Mapped[int] = mapped_column(BigInteger)
    tenor_epochs: Mapped[int] = mapped_column(BigInteger)
    rate_bps: Mapped[int] = mapped_column(Integer)
    genesis_timestamp: Mapped[int] = mapped_column(BigInteger)
    epoch_length_seconds: Mapped[int] = mapped_column(BigInteger)
    cooldown_epochs: Mapped[int] = mapped_column(BigInteger)
    pool_set_block: Mapped[int] = mapped_column(BigInteger)


class PoolRow(Base):
    """A pool's running state (RevenuePool's storage, as its events tell it)."""

    __tablename__ = "pools"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    raised: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    drawn: Mapped[bool] = mapped_column(default=False)
    draw_epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    drawn_assets: Mapped[int] = mapped_column(BigInteger, default=0)
    total_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    staked_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    total_units: Mapped[int] = mapped_column(BigUint(), default=0)
    earning_units: Mapped[int] = mapped_column(BigUint(), default=0)
    revenue_index: Mapped[int] = mapped_column(BigUint(), default=0)
    era: Mapped[int] = mapped_column(BigInteger, default=0)
    # {era: revenue index when that era ended (wiped out or released)}, as decimal strings.
    era_end_index: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # {era: [staked shares, total units] when it ended in a release} (RevenuePool._eraRelease),
    # as decimal strings: that era's positions are worth units x shares / units.
    era_release: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    # Released shares not yet withdrawn, rounding dust of releases included.
    released_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    revenue_in: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    loss_assets: Mapped[int] = mapped_column(BigInteger, default=0)
    loss_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    last_distributed_epoch: Mapped[int] = mapped_column(BigInteger, default=0)


class PoolCohortRow(Base):
    """Stake in warm-up that activates at one epoch (RevenuePool.Cohort)."""

    __tablename__ = "pool_cohorts"

    pool: Mapped[str] = mapped_column(String(42), primary_key=True)
    activation_epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    units: Mapped[int] = mapped_column(BigUint(), default=0)
    index_at_fold: Mapped[int] = mapped_column(BigUint(), default=0)
    era: Mapped[int] = mapped_column(BigInteger, default=0)
    queued: Mapped[bool] = mapped_column(default=False)
    folded: Mapped[bool] = mapped_column(default=False)


class PoolPositionRow(Base):
    """One holder in one pool: wallet shares and RevenuePool.Position as of its last event
    (bring it up to date with ``pool_book.settled`` before reading revenue or loss)."""

    __tablename__ = "pool_positions"

    pool: Mapped[str] = mapped_column(String(42), primary_key=True)
    holder: Mapped[str] = mapped_column(String(42), primary_key=True, index=True)
    shares: Mapped[int] = mapped_column(BigUint(), default=0)  # in the wallet, not staked
    units: Mapped[int] = mapped_column(BigUint(), default=0)
    pending_units: Mapped[int] = mapped_column(BigUint(), default=0)
    cooling_units: Mapped[int] = mapped_column(BigUint(), default=0)
    revenue_index: Mapped[int] = mapped_column(BigUint(), default=0)
    accrued_scaled: Mapped[int] = mapped_column(BigUint(), default=0)
    principal_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)
    era: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    activation_epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    unlock_epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    # RevenuePool._releasedOf: released stake credited to the holder, not yet withdrawn.
    released_shares: Mapped[int] = mapped_column(BigUint(), default=0)


class PoolEpochRow(Base):
    """What happened to a pool in one epoch: revenue in, debt service, losses."""

    __tablename__ = "pool_epochs"

    pool: Mapped[str] = mapped_column(String(42), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    revenue_distributed: Mapped[int] = mapped_column(BigInteger, default=0)
    debt_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    stakers_share: Mapped[int] = mapped_column(BigInteger, default=0)
    loss_assets: Mapped[int] = mapped_column(BigInteger, default=0)
    loss_shares: Mapped[int] = mapped_column(BigUint(), default=0)
    # The node's settlement at this epoch covered a range (NodeSettled.fromEpoch < epoch)
    # owing service (null: none): its earlier epochs, never settled on their own, and the
    # service scheduled over the whole range (this epoch included).
    skipped_from_epoch: Mapped[int | None] = mapped_column(BigInteger)
    skipped_to_epoch: Mapped[int | None] = mapped_column(BigInteger)
    skipped_service: Mapped[int | None] = mapped_column(BigInteger)


class NodeSettlementRow(Base):
    """One node-epoch settlement (EpochSettlement.NodeSettled, its CovenantStatus if one
    was emitted, and the nodeRisk snapshot read at its block)."""

    __tablename__ = "node_settlements"

    node_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    usage: Mapped[int] = mapped_column(BigInteger, default=0)
    proceeds: Mapped[int] = mapped_column(BigInteger, default=0)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    reserve: Mapped[int] = mapped_column(BigInteger, default=0)
    operator_share: Mapped[int] = mapped_column(BigInteger, default=0)
    debt_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    stakers: Mapped[int] = mapped_column(BigInteger, default=0)
    # Covenant figures: from CovenantStatus when the contract emitted one for this
    # settlement (covenant_event), else from the nodeRisk snapshot (flags then false).
    covenant_event: Mapped[bool] = mapped_column(default=False)
    dscr_bps: Mapped[int | None] = mapped_column(BigUint())
    ltv_bps: Mapped[int | None] = mapped_column(BigUint())
    flagged: Mapped[bool] = mapped_column(default=False)
    dscr_breach: Mapped[bool] = mapped_column(default=False)
    ltv_breach: Mapped[bool] = mapped_column(default=False)
    # From the nodeRisk snapshot (None if it could not be read).
    collateral_value: Mapped[int | None] = mapped_column(BigUint())
    debt_outstanding: Mapped[int | None] = mapped_column(BigUint())
    arrears: Mapped[int | None] = mapped_column(BigUint())
    window_net_revenue: Mapped[int | None] = mapped_column(BigUint())
    window_debt_service: Mapped[int | None] = mapped_column(BigUint())
    # From NodeSettled when it covered a range (fromEpoch < epoch; null: one epoch): the
    # range's earlier epochs (fromEpoch..epoch-1), never settled on their own, and the
    # service scheduled over the whole range, this epoch included (serviceAssets).
    skipped_from_epoch: Mapped[int | None] = mapped_column(BigInteger)
    skipped_to_epoch: Mapped[int | None] = mapped_column(BigInteger)
    skipped_service: Mapped[int | None] = mapped_column(BigInteger)
    settled: Mapped[bool] = mapped_column(default=False)  # NodeSettled seen (not only covenant)
    block_number: Mapped[int] = mapped_column(BigInteger, default=0)
    block_timestamp: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_hash: Mapped[str] = mapped_column(String(66), default="")


class NodeMetricRow(Base):
    """One node's attested leaf for one epoch, verified against the epoch's on-chain root.

    Not a projection: it comes from the oracle's published proofs files, not from
    events. ``root`` is the root it was verified against; reads join it with
    ``epochs`` on (epoch, root), so a leaf whose epoch a reorg dropped or
    re-attested under another root is never served (and is re-ingested).
    """

    __tablename__ = "node_metrics"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root: Mapped[str] = mapped_column(String(66))
    uptime_bps: Mapped[int] = mapped_column(Integer)
    utilization_bps: Mapped[int] = mapped_column(Integer)
    sample_coverage_bps: Mapped[int] = mapped_column(Integer)
    utilization_coverage_bps: Mapped[int] = mapped_column(Integer)
    # 0 = the energy is unknown (energy_joules is then 0, not a measured zero).
    energy_coverage_bps: Mapped[int] = mapped_column(Integer)
    challenges_passed: Mapped[int] = mapped_column(Integer)
    challenges_failed: Mapped[int] = mapped_column(Integer)
    energy_joules: Mapped[int] = mapped_column(BigInteger)
    milli_gpu_hours: Mapped[int] = mapped_column(BigInteger)
    # Since the node's registration (leaf v2); NULL on rows ingested from v1 leaves.
    cum_milli_gpu_hours: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cum_energy_joules: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cum_busy_gpu_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    leaf_hash: Mapped[str] = mapped_column(String(66))
    proof: Mapped[list[str]] = mapped_column(JSON)

    __table_args__ = (Index("ix_node_metrics_node_epoch", "node_id", "epoch"),)


class LeafIngestRow(Base):
    """How ingesting an attested epoch's published leaves went (one row per epoch).

    status: ``complete`` (every leaf verified), ``partial`` (some leaves failed
    verification and were rejected), ``unavailable`` (no readable file yet),
    ``mismatch`` (the file commits to another root, or not to all the epoch's
    leaves). All but ``complete`` are retried.
    """

    __tablename__ = "leaf_ingests"

    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root: Mapped[str] = mapped_column(String(66))
    status: Mapped[str] = mapped_column(String(16))
    leaves: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# ---------------------------------------------------------------------------
# Secondary market (contracts/Market.sol). The book (``market_orders``) is off-chain
# state the API writes: signed orders, kept whatever the chain does. What happened to
# them on-chain (fills, cancellations, nonce floors) are projections of Market's
# events, rebuilt with the others after a reorg. Amounts are uint256 (pool shares have
# 18 decimals): decimal strings.
# ---------------------------------------------------------------------------


class MarketOrderRow(Base):
    """A signed limit order the API accepted into the book. ``id`` orders time priority;
    ``dropped`` says why the book no longer offers it though the chain might still fill
    it (the maker's funds or approval went, the capacity window started)."""

    __tablename__ = "market_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_hash: Mapped[str] = mapped_column(String(66), unique=True)
    maker: Mapped[str] = mapped_column(String(42), index=True)
    asset: Mapped[str] = mapped_column(String(42))
    token_id: Mapped[str] = mapped_column(String(78))
    sell: Mapped[bool] = mapped_column(Boolean)
    amount: Mapped[int] = mapped_column(BigUint)
    quote_amount: Mapped[int] = mapped_column(BigUint)
    nonce: Mapped[int] = mapped_column(BigUint)
    expiry: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    dropped: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_market_orders_instrument", "asset", "token_id"),)


class MarketFillRow(Base):
    """One OrderFilled: the market's trades, and each order's filled total."""

    __tablename__ = "market_fills"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66))
    order_hash: Mapped[str] = mapped_column(String(66), index=True)
    maker: Mapped[str] = mapped_column(String(42))
    taker: Mapped[str] = mapped_column(String(42))
    asset: Mapped[str] = mapped_column(String(42))
    token_id: Mapped[str] = mapped_column(String(78))
    maker_sells: Mapped[bool] = mapped_column(Boolean)
    amount: Mapped[int] = mapped_column(BigUint)
    quote: Mapped[int] = mapped_column(BigUint)
    maker_fee: Mapped[int] = mapped_column(BigUint)
    taker_fee: Mapped[int] = mapped_column(BigUint)
    filled_total: Mapped[int] = mapped_column(BigUint)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    # "self_trade" (maker == taker) or "wash_trade" (the same two addresses trading this
    # instrument back and forth within market_index.WASH_WINDOW_SECONDS); None: neither.
    wash_flag: Mapped[str | None] = mapped_column(String(16))
    # GPU-hours: the token's class and delivery window (the price index's keys, as in
    # ``sales``); null for pool shares (token id 0).
    class_id: Mapped[int | None] = mapped_column(Integer)
    window_start: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_market_fills_instrument", "asset", "token_id", "block_number"),
        # A pair's earlier trades, for the wash flag (market_index._wash_flag).
        Index("ix_market_fills_pair", "maker", "taker"),
        # A class's trades in a lookback (collateral marks) and per window (price index).
        Index("ix_market_fills_class_time", "class_id", "block_timestamp"),
    )


class MarketCancelRow(Base):
    """An order its maker cancelled on-chain (OrderCancelled)."""

    __tablename__ = "market_cancels"

    order_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    maker: Mapped[str] = mapped_column(String(42))
    block_number: Mapped[int] = mapped_column(BigInteger)


class MarketNonceRow(Base):
    """A maker's minimum valid nonce (NoncesCancelled): orders below it never fill."""

    __tablename__ = "market_nonces"

    maker: Mapped[str] = mapped_column(String(42), primary_key=True)
    min_valid_nonce: Mapped[int] = mapped_column(BigUint)
    block_number: Mapped[int] = mapped_column(BigInteger)


# Dropped with the index when the indexer starts over (another deployment or chain).
# ---------------------------------------------------------------------------
# Governance: the GpucapTimelock's schedule of admin changes (CallScheduled, CallSalt,
# CallExecuted, Cancelled) and its delay (MinDelayChange).
# ---------------------------------------------------------------------------


class GovernanceChangeRow(Base):
    """One call the timelock scheduled (one per index of a batch), keyed by its
    CallScheduled event (an operation id can be scheduled again once cancelled). Stored
    states: pending, executed, cancelled; ``ready`` is a pending one whose ``eta`` the
    chain's clock has reached (decided when read)."""

    __tablename__ = "governance_changes"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(66), index=True)
    call_index: Mapped[int] = mapped_column(Integer)  # within a scheduleBatch
    target: Mapped[str] = mapped_column(String(42))
    value: Mapped[int] = mapped_column(BigUint())  # wei sent with the call
    data: Mapped[str] = mapped_column(Text)  # the calldata, 0x-hex
    predecessor: Mapped[str] = mapped_column(String(66))
    salt: Mapped[str] = mapped_column(String(66))  # CallSalt (zero when none was given)
    delay_seconds: Mapped[int] = mapped_column(BigInteger)
    scheduled_at: Mapped[int] = mapped_column(BigInteger)  # the scheduling block's time
    eta: Mapped[int] = mapped_column(BigInteger)  # time of effect: scheduled_at + delay
    scheduled_tx: Mapped[str] = mapped_column(String(66))
    # The call decoded with the gpucap ABI of its target (the manifest's contracts, bound
    # pools); None when the target or the selector is not one of gpucap's.
    contract: Mapped[str | None] = mapped_column(String(64))
    function: Mapped[str | None] = mapped_column(String(64))
    args: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    executed_at: Mapped[int | None] = mapped_column(BigInteger)
    executed_tx: Mapped[str | None] = mapped_column(String(66))
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_tx: Mapped[str | None] = mapped_column(String(66))

    __table_args__ = (Index("ix_governance_changes_status_eta", "status", "eta"),)


class GovernanceDelayRow(Base):
    """A change of the timelock's delay (MinDelayChange; the first is its construction)."""

    __tablename__ = "governance_delays"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    old_delay_seconds: Mapped[int] = mapped_column(BigInteger)
    new_delay_seconds: Mapped[int] = mapped_column(BigInteger)


class PoolLoanRow(Base):
    """A node's pool loan as PoolLoans' events tell it (one Loan per node on-chain):
    lifecycle state and since when, the pledged bond, and the default's figures."""

    __tablename__ = "pool_loans"

    node_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    pool: Mapped[str | None] = mapped_column(String(42))  # BondPledged's pool
    state: Mapped[str] = mapped_column(String(16))  # performing | cash_sweep | defaulted
    since_epoch: Mapped[int | None] = mapped_column(BigInteger)  # last LoanStateChanged
    pledge_taken: Mapped[bool] = mapped_column(default=False)
    pledged: Mapped[int] = mapped_column(BigInteger, default=0)  # locked now (stablecoin)
    pledge_released: Mapped[int] = mapped_column(BigInteger, default=0)
    # LoanDefaulted / LossWaterfall (null until a default), stablecoin units.
    default_epoch: Mapped[int | None] = mapped_column(BigInteger)
    principal_accelerated: Mapped[int | None] = mapped_column(BigInteger)
    arrears_at_default: Mapped[int | None] = mapped_column(BigInteger)
    recovery_claim: Mapped[int | None] = mapped_column(BigInteger)  # at default
    bond_seized: Mapped[int | None] = mapped_column(BigInteger)
    stakers_loss: Mapped[int | None] = mapped_column(BigInteger)
    reserve_cover: Mapped[int | None] = mapped_column(BigInteger)
    holders_loss: Mapped[int | None] = mapped_column(BigInteger)
    default_tx: Mapped[str | None] = mapped_column(String(66))


class PoolLoanEventRow(Base):
    """One PoolLoans event of a node (history): a transition, a pledge or its release, the
    default and its waterfall. ``amounts``: the event's stablecoin figures by name."""

    __tablename__ = "pool_loan_events"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, index=True)
    event: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    amounts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))


LEAF_TABLES: tuple[type[Base], ...] = (NodeMetricRow, LeafIngestRow)


PROJECTIONS: tuple[type[Base], ...] = (
    GpuClassRow,
    NodeRow,
    EpochRow,
    OfferRow,
    SaleRow,
    ReservationRow,
    BalanceRow,
    PoolRow,
    PoolCohortRow,
    PoolPositionRow,
    PoolEpochRow,
    NodeSettlementRow,
    GovernanceChangeRow,
    GovernanceDelayRow,
    MarketFillRow,
    MarketCancelRow,
    MarketNonceRow,
    PoolLoanRow,
    PoolLoanEventRow,
)


# ---------------------------------------------------------------------------
# Sign-In with Ethereum: server nonces (single use) and session tokens (stored
# as SHA-256 digests: a database leak does not leak usable tokens).
# ---------------------------------------------------------------------------


class AuthNonce(Base):
    __tablename__ = "auth_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuthSession(Base):
    __tablename__ = "auth_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
