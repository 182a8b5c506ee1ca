"""node metrics: attested leaves per node and epoch, verified against the on-chain root

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

Filled by the indexer from the oracle's published proofs files of every attested
epoch (existing indexes catch up on their next runs: every attested epoch
without an ingest row is ingested).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_metrics",
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("node_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("uptime_bps", sa.Integer(), nullable=False),
        sa.Column("utilization_bps", sa.Integer(), nullable=False),
        sa.Column("sample_coverage_bps", sa.Integer(), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("milli_gpu_hours", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.String(66), nullable=False),
        sa.Column("proof", sa.JSON(), nullable=False),
    )
    op.create_index("ix_node_metrics_node_epoch", "node_metrics", ["node_id", "epoch"])
    op.create_table(
        "leaf_ingests",
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("leaves", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leaf_ingests")
    op.drop_index("ix_node_metrics_node_epoch", table_name="node_metrics")
    op.drop_table("node_metrics")
