"""stake release and skipped epochs: released shares per pool and holder, each released
era's final rate, and the skipped epochs of a settlement

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

RevenuePool now ends a staking era on a near-total loss by releasing the stake still
at stake (StakeReleased, ReleasedStakeWithdrawn) and EpochSettlement reports the epochs
a settlement skipped (EpochsSkipped). An index built before this revision stored those
events without folding them into its read models: if it holds any, its indexer state is
marked stale (deployment block -1), so the next indexer step starts over from the
deployment block and rebuilds everything with the new handlers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

U256 = sa.String(78)  # uint256 as a decimal string (models.BigUint)
NEW_EVENTS = ("StakeReleased", "ReleasedStakeWithdrawn", "EpochsSkipped")


def _skipped(batch: object) -> None:
    for name in ("skipped_from_epoch", "skipped_to_epoch", "skipped_service"):
        batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))  # type: ignore[attr-defined]


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(
            sa.Column("era_release", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("released_shares", U256, nullable=False, server_default="0"))
    with op.batch_alter_table("pool_positions") as batch:
        batch.add_column(sa.Column("released_shares", U256, nullable=False, server_default="0"))
    with op.batch_alter_table("pool_epochs") as batch:
        _skipped(batch)
    with op.batch_alter_table("node_settlements") as batch:
        _skipped(batch)
    bind = op.get_bind()
    events = sa.table("chain_events", sa.column("event", sa.String()))
    stale = bind.execute(
        sa.select(sa.func.count()).select_from(events).where(events.c.event.in_(NEW_EVENTS))
    ).scalar_one()
    if stale:
        state = sa.table("indexer_state", sa.column("deployment_block", sa.BigInteger()))
        bind.execute(sa.update(state).values(deployment_block=-1))


def downgrade() -> None:
    for table in ("node_settlements", "pool_epochs"):
        with op.batch_alter_table(table) as batch:
            for name in ("skipped_service", "skipped_to_epoch", "skipped_from_epoch"):
                batch.drop_column(name)
    with op.batch_alter_table("pool_positions") as batch:
        batch.drop_column("released_shares")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("released_shares")
        batch.drop_column("era_release")
