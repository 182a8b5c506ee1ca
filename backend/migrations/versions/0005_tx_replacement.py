"""actions: fees, send time and replaced hashes, for replacing stuck transactions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("max_fee_per_gas", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("max_priority_fee_per_gas", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaced_tx_hashes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("replaced_tx_hashes")
        batch.drop_column("submitted_at")
        batch.drop_column("max_priority_fee_per_gas")
        batch.drop_column("max_fee_per_gas")
