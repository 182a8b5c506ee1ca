"""pool loans: each node's loan lifecycle, pledge, default and waterfall (PoolLoans events)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

``pool_loans`` holds each node's loan as PoolLoans' events tell it (state and since which
epoch, the pledged bond, the default's claim and its loss waterfall per class);
``pool_loan_events`` the history of those events. Both are read models of
``chain_events``. An index that stored PoolLoans events before this revision did not fold
them: its indexer state is marked stale (deployment block -1) so the next step starts
over and rebuilds everything with the new handlers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pool_loans",
        sa.Column("node_id", sa.BigInteger(), primary_key=True),
        sa.Column("pool", sa.String(42), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since_epoch", sa.BigInteger(), nullable=True),
        sa.Column("pledge_taken", sa.Boolean(), nullable=False),
        sa.Column("pledged", sa.BigInteger(), nullable=False),
        sa.Column("pledge_released", sa.BigInteger(), nullable=False),
        sa.Column("default_epoch", sa.BigInteger(), nullable=True),
        sa.Column("principal_accelerated", sa.BigInteger(), nullable=True),
        sa.Column("arrears_at_default", sa.BigInteger(), nullable=True),
        sa.Column("recovery_claim", sa.BigInteger(), nullable=True),
        sa.Column("bond_seized", sa.BigInteger(), nullable=True),
        sa.Column("stakers_loss", sa.BigInteger(), nullable=True),
        sa.Column("reserve_cover", sa.BigInteger(), nullable=True),
        sa.Column("holders_loss", sa.BigInteger(), nullable=True),
        sa.Column("default_tx", sa.String(66), nullable=True),
    )
    op.create_table(
        "pool_loan_events",
        sa.Column("block_number", sa.BigInteger(), primary_key=True),
        sa.Column("log_index", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=True),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("amounts", sa.JSON(), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
    )
    op.create_index("ix_pool_loan_events_node_id", "pool_loan_events", ["node_id"])
    bind = op.get_bind()
    events = sa.table("chain_events", sa.column("contract", sa.String()))
    stale = bind.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.contract == "PoolLoans")
    ).scalar_one()
    if stale:
        state = sa.table("indexer_state", sa.column("deployment_block", sa.BigInteger()))
        bind.execute(sa.update(state).values(deployment_block=-1))


def downgrade() -> None:
    op.drop_index("ix_pool_loan_events_node_id", table_name="pool_loan_events")
    op.drop_table("pool_loan_events")
    op.drop_table("pool_loans")
