"""governance: the timelock's scheduled admin changes and its delay

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Outside the dev chain (and in the demo after seeding) every admin power is a call the
GpucapTimelock makes after its delay. ``governance_changes`` holds each scheduled call
(CallScheduled, its salt from CallSalt, then CallExecuted or Cancelled) with the call
decoded where the target is a gpucap contract, and its time of effect;
``governance_delays`` the timelock's delay changes (MinDelayChange). Both are read models
of ``chain_events``. An index that stored timelock events before this revision did not
fold them: its indexer state is marked stale (deployment block -1) so the next step
starts over and rebuilds everything with the new handlers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

U256 = sa.String(78)  # uint256 as a decimal string (models.BigUint)


def upgrade() -> None:
    op.create_table(
        "governance_changes",
        sa.Column("block_number", sa.BigInteger(), primary_key=True),
        sa.Column("log_index", sa.Integer(), primary_key=True),
        sa.Column("operation_id", sa.String(66), nullable=False),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(42), nullable=False),
        sa.Column("value", U256, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("predecessor", sa.String(66), nullable=False),
        sa.Column("salt", sa.String(66), nullable=False),
        sa.Column("delay_seconds", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_at", sa.BigInteger(), nullable=False),
        sa.Column("eta", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_tx", sa.String(66), nullable=False),
        sa.Column("contract", sa.String(64), nullable=True),
        sa.Column("function", sa.String(64), nullable=True),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("executed_at", sa.BigInteger(), nullable=True),
        sa.Column("executed_tx", sa.String(66), nullable=True),
        sa.Column("cancelled_at", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_tx", sa.String(66), nullable=True),
    )
    op.create_index("ix_governance_changes_operation_id", "governance_changes", ["operation_id"])
    op.create_index("ix_governance_changes_status_eta", "governance_changes", ["status", "eta"])
    op.create_table(
        "governance_delays",
        sa.Column("block_number", sa.BigInteger(), primary_key=True),
        sa.Column("log_index", sa.Integer(), primary_key=True),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("old_delay_seconds", sa.BigInteger(), nullable=False),
        sa.Column("new_delay_seconds", sa.BigInteger(), nullable=False),
    )
    bind = op.get_bind()
    events = sa.table("chain_events", sa.column("contract", sa.String()))
    stale = bind.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.contract == "GpucapTimelock")
    ).scalar_one()
    if stale:
        state = sa.table("indexer_state", sa.column("deployment_block", sa.BigInteger()))
        bind.execute(sa.update(state).values(deployment_block=-1))


def downgrade() -> None:
    op.drop_table("governance_delays")
    op.drop_index("ix_governance_changes_status_eta", table_name="governance_changes")
    op.drop_index("ix_governance_changes_operation_id", table_name="governance_changes")
    op.drop_table("governance_changes")
