"""chain index: indexer state, recent block hashes, raw events and read models

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "indexer_state",
        sa.Column("chain_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("deployment_block", sa.BigInteger(), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=False),
        sa.Column("head_block", sa.BigInteger(), nullable=False),
        sa.Column("reorgs", sa.Integer(), nullable=False),
        sa.Column("resets", sa.Integer(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "indexed_blocks",
        sa.Column("number", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "chain_events",
        sa.Column("block_number", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("log_index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
    )
    op.create_index("ix_chain_events_event", "chain_events", ["event"])
    op.create_table(
        "gpu_classes",
        sa.Column("class_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("reference_power_w", sa.Integer(), nullable=False),
        sa.Column("reference_throughput", sa.BigInteger(), nullable=False),
        sa.Column("economic_life_months", sa.Integer(), nullable=False),
        sa.Column("residual_value_bps", sa.Integer(), nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("operator", sa.String(42), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("node_key", sa.String(42), nullable=False),
        sa.Column("acquisition_cost", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bonded", sa.BigInteger(), nullable=False),
        sa.Column("locked", sa.BigInteger(), nullable=False),
        sa.Column("slashed", sa.BigInteger(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_nodes_operator", "nodes", ["operator"])
    op.create_index("ix_nodes_class_id", "nodes", ["class_id"])
    op.create_table(
        "epochs",
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("total_energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("total_milli_gpu_hours", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.BigInteger(), nullable=False),
        sa.Column("transmitter", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("attested_at", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
    )
    op.create_table(
        "offers",
        sa.Column("offer_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("sold", sa.BigInteger(), nullable=False),
        sa.Column("price_per_gpu_hour", sa.BigInteger(), nullable=False),
        sa.Column("bond_locked", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("published_block", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_offers_node_id", "offers", ["node_id"])
    op.create_index("ix_offers_class_window", "offers", ["class_id", "window_start"])
    op.create_table(
        "sales",
        sa.Column("block_number", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("log_index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("offer_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer", sa.String(42), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sales_buyer", "sales", ["buyer"])
    op.create_index("ix_sales_class_time", "sales", ["class_id", "block_timestamp"])
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(42), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("price_per_gpu_hour", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refund", sa.BigInteger(), nullable=True),
        sa.Column("slashed", sa.BigInteger(), nullable=True),
        sa.Column("uncovered", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_reservations_holder", "reservations", ["holder"])
    op.create_index("ix_reservations_node_id", "reservations", ["node_id"])


def downgrade() -> None:
    for table in (
        "reservations",
        "sales",
        "offers",
        "epochs",
        "nodes",
        "gpu_classes",
        "chain_events",
        "indexed_blocks",
        "indexer_state",
    ):
        op.drop_table(table)
