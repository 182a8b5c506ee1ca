"""market: the off-chain order book and the projections of Market's events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

``market_orders`` holds signed orders the API accepted (state of its own, kept through
reorgs); ``market_fills``, ``market_cancels`` and ``market_nonces`` are read models of
OrderFilled, OrderCancelled and NoncesCancelled. An index older than this revision has
the market's events in ``chain_events`` already but never folded them: its indexer
state is marked stale (deployment block -1), as 0011 does for the timelock, so the
next step rebuilds every projection from the deployment block.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

U256 = sa.String(78)  # uint256 as a decimal string (models.BigUint)


def upgrade() -> None:
    op.create_table(
        "market_orders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_hash", sa.String(66), nullable=False, unique=True),
        sa.Column("maker", sa.String(42), nullable=False),
        sa.Column("asset", sa.String(42), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("sell", sa.Boolean(), nullable=False),
        sa.Column("amount", U256, nullable=False),
        sa.Column("quote_amount", U256, nullable=False),
        sa.Column("nonce", U256, nullable=False),
        sa.Column("expiry", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("dropped", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_market_orders_maker", "market_orders", ["maker"])
    op.create_index("ix_market_orders_instrument", "market_orders", ["asset", "token_id"])
    op.create_table(
        "market_fills",
        sa.Column("block_number", sa.BigInteger(), primary_key=True),
        sa.Column("log_index", sa.Integer(), primary_key=True),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("order_hash", sa.String(66), nullable=False),
        sa.Column("maker", sa.String(42), nullable=False),
        sa.Column("taker", sa.String(42), nullable=False),
        sa.Column("asset", sa.String(42), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("maker_sells", sa.Boolean(), nullable=False),
        sa.Column("amount", U256, nullable=False),
        sa.Column("quote", U256, nullable=False),
        sa.Column("maker_fee", U256, nullable=False),
        sa.Column("taker_fee", U256, nullable=False),
        sa.Column("filled_total", U256, nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_market_fills_order_hash", "market_fills", ["order_hash"])
    op.create_index(
        "ix_market_fills_instrument", "market_fills", ["asset", "token_id", "block_number"]
    )
    op.create_table(
        "market_cancels",
        sa.Column("order_hash", sa.String(66), primary_key=True),
        sa.Column("maker", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "market_nonces",
        sa.Column("maker", sa.String(42), primary_key=True),
        sa.Column("min_valid_nonce", U256, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
    )

    bind = op.get_bind()
    events = sa.table("chain_events", sa.column("contract", sa.String()))
    stale = bind.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.contract == "Market")
    ).scalar_one()
    if stale:
        state = sa.table("indexer_state", sa.column("deployment_block", sa.BigInteger()))
        bind.execute(sa.update(state).values(deployment_block=-1))


def downgrade() -> None:
    op.drop_table("market_nonces")
    op.drop_table("market_cancels")
    op.drop_index("ix_market_fills_instrument", table_name="market_fills")
    op.drop_index("ix_market_fills_order_hash", table_name="market_fills")
    op.drop_table("market_fills")
    op.drop_index("ix_market_orders_instrument", table_name="market_orders")
    op.drop_index("ix_market_orders_maker", table_name="market_orders")
    op.drop_table("market_orders")
