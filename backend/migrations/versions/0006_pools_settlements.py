"""pools and settlements: pool terms, pool state/cohorts/positions/epochs, node settlements;
chain_events learns the emitting address and a snapshot of state read at indexing time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The new read models fill from the events of pools discovered through PoolSet. An index
that predates this revision never fetched pool logs: delete its indexer_state row to
re-index (the indexer starts over from the deployment block).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

U256 = sa.String(78)  # uint256 as a decimal string (models.BigUint)


def _big(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _u256(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, U256, nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("chain_events") as batch:
        batch.add_column(sa.Column("address", sa.String(42), nullable=True))
        batch.add_column(sa.Column("snapshot", sa.JSON(), nullable=True))
        batch.create_index("ix_chain_events_address", ["address"])
    op.create_table(
        "pool_terms",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("node_id", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("stablecoin", sa.String(42), nullable=False),
        sa.Column("operator", sa.String(42), nullable=False),
        _big("target_assets"),
        _big("share_price"),
        _big("funding_deadline"),
        _big("tenor_epochs"),
        sa.Column("rate_bps", sa.Integer(), nullable=False),
        _big("genesis_timestamp"),
        _big("epoch_length_seconds"),
        _big("cooldown_epochs"),
        _big("pool_set_block"),
    )
    op.create_index("ix_pool_terms_operator", "pool_terms", ["operator"])
    op.create_table(
        "pools",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("node_id", sa.BigInteger(), nullable=False, unique=True),
        _big("raised"),
        _big("refunded"),
        sa.Column("drawn", sa.Boolean(), nullable=False),
        _big("draw_epoch"),
        _big("drawn_assets"),
        _u256("total_shares"),
        _u256("staked_shares"),
        _u256("total_units"),
        _u256("earning_units"),
        _u256("revenue_index"),
        _big("era"),
        sa.Column("era_end_index", sa.JSON(), nullable=False),
        _big("revenue_in"),
        _big("revenue_paid"),
        _big("loss_assets"),
        _u256("loss_shares"),
        _big("last_distributed_epoch"),
    )
    op.create_table(
        "pool_cohorts",
        sa.Column("pool", sa.String(42), primary_key=True),
        sa.Column("activation_epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        _u256("units"),
        _u256("index_at_fold"),
        _big("era"),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("folded", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "pool_positions",
        sa.Column("pool", sa.String(42), primary_key=True),
        sa.Column("holder", sa.String(42), primary_key=True),
        _u256("shares"),
        _u256("units"),
        _u256("pending_units"),
        _u256("cooling_units"),
        _u256("revenue_index"),
        _u256("accrued_scaled"),
        _u256("principal_shares"),
        _big("claimed"),
        _big("era"),
        _u256("lost_shares"),
        _big("activation_epoch"),
        _big("unlock_epoch"),
    )
    op.create_index("ix_pool_positions_holder", "pool_positions", ["holder"])
    op.create_table(
        "pool_epochs",
        sa.Column("pool", sa.String(42), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        _big("revenue_distributed"),
        _big("debt_paid"),
        _big("stakers_share"),
        _big("loss_assets"),
        _u256("loss_shares"),
    )
    op.create_table(
        "node_settlements",
        sa.Column("node_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        _big("usage"),
        _big("proceeds"),
        _big("fee"),
        _big("reserve"),
        _big("operator_share"),
        _big("debt_paid"),
        _big("stakers"),
        sa.Column("covenant_event", sa.Boolean(), nullable=False),
        _u256("dscr_bps", nullable=True),
        _u256("ltv_bps", nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("dscr_breach", sa.Boolean(), nullable=False),
        sa.Column("ltv_breach", sa.Boolean(), nullable=False),
        _u256("collateral_value", nullable=True),
        _u256("debt_outstanding", nullable=True),
        _u256("arrears", nullable=True),
        _u256("window_net_revenue", nullable=True),
        _u256("window_debt_service", nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        _big("block_number"),
        _big("block_timestamp"),
        sa.Column("tx_hash", sa.String(66), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "node_settlements",
        "pool_epochs",
        "pool_positions",
        "pool_cohorts",
        "pools",
        "pool_terms",
    ):
        op.drop_table(table)
    with op.batch_alter_table("chain_events") as batch:
        batch.drop_index("ix_chain_events_address")
        batch.drop_column("snapshot")
        batch.drop_column("address")
