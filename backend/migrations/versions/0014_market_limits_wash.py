"""market: addresses stored checksummed, and wash-trade flags on indexed fills

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

The book's queries compare ``market_orders.asset`` and ``maker`` as stored, so that the
``(asset, token_id)`` and ``maker`` indexes serve them (a ``lower(asset)`` comparison
read every row); every row is rewritten in the one form the API writes, EIP-55
checksummed. ``market_fills.wash_flag`` marks a self-trade or a wash trade (the same two
addresses trading one instrument back and forth within an hour; ``ix_market_fills_pair``
finds a pair's earlier trades); the fills indexed
before this revision have none, so an index holding any is marked stale (deployment
block -1) and the next step rebuilds every projection with the flags.

Down drops the column; the addresses stay checksummed (the form 0012's code wrote too).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from eth_utils import to_checksum_address

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("market_fills") as batch:
        batch.add_column(sa.Column("wash_flag", sa.String(16), nullable=True))
    op.create_index("ix_market_fills_pair", "market_fills", ["maker", "taker"])

    bind = op.get_bind()
    orders = sa.table(
        "market_orders",
        sa.column("id", sa.Integer()),
        sa.column("maker", sa.String()),
        sa.column("asset", sa.String()),
    )
    for row_id, maker, asset in bind.execute(
        sa.select(orders.c.id, orders.c.maker, orders.c.asset)
    ).all():
        normal = (to_checksum_address(maker), to_checksum_address(asset))
        if normal != (maker, asset):
            bind.execute(
                sa.update(orders)
                .where(orders.c.id == row_id)
                .values(maker=normal[0], asset=normal[1])
            )

    fills = sa.table("market_fills", sa.column("order_hash", sa.String()))
    if bind.execute(sa.select(sa.func.count()).select_from(fills)).scalar_one():
        state = sa.table("indexer_state", sa.column("deployment_block", sa.BigInteger()))
        bind.execute(sa.update(state).values(deployment_block=-1))


def downgrade() -> None:
    op.drop_index("ix_market_fills_pair", table_name="market_fills")
    with op.batch_alter_table("market_fills") as batch:
        batch.drop_column("wash_flag")
