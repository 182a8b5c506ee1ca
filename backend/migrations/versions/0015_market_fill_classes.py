"""market: each GPU-hour fill's class and delivery window, for the price index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09

The price index adds secondary trades to the primary sales, per GPU class and delivery
window, and a pool's collateral is marked to its class's trades in a lookback. ``sales``
carries ``class_id`` and ``window_start``; ``market_fills`` now does too (null for pool
shares, token id 0), with ``ix_market_fills_class_time`` for a class's trades in a time
range. The fills already indexed are filled in from their token ids here (a CapacityToken
id is ``classId << 64 | windowStart``): nothing needs rebuilding.

Down drops the index and the columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WINDOW_MASK = (1 << 64) - 1


def upgrade() -> None:
    with op.batch_alter_table("market_fills") as batch:
        batch.add_column(sa.Column("class_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("window_start", sa.BigInteger(), nullable=True))
    op.create_index("ix_market_fills_class_time", "market_fills", ["class_id", "block_timestamp"])

    bind = op.get_bind()
    fills = sa.table(
        "market_fills",
        sa.column("token_id", sa.String()),
        sa.column("class_id", sa.Integer()),
        sa.column("window_start", sa.BigInteger()),
    )
    tokens = bind.execute(sa.select(fills.c.token_id).distinct()).scalars().all()
    for token in tokens:
        token_id = int(token)
        if token_id == 0:  # a pool's shares
            continue
        bind.execute(
            sa.update(fills)
            .where(fills.c.token_id == token)
            .values(class_id=token_id >> 64, window_start=token_id & WINDOW_MASK)
        )


def downgrade() -> None:
    op.drop_index("ix_market_fills_class_time", table_name="market_fills")
    with op.batch_alter_table("market_fills") as batch:
        batch.drop_column("window_start")
        batch.drop_column("class_id")
