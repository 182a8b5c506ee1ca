"""balances: stablecoin and capacity-token balances per holder, from Transfer events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Existing indexes are rebuilt from their stored events by the indexer's next
reorg or reset; a fresh index fills the table as it goes. To backfill an index
that predates this table, delete its indexer_state row (it re-indexes).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("holder", sa.String(42), primary_key=True),
        sa.Column("asset", sa.String(16), primary_key=True),
        sa.Column("token_id", sa.String(78), primary_key=True),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("window_start", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("balances")
