"""actions: finality and the chain each row was made on

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A mined action's transaction can leave the chain (a reorg) and a reset node is a new
chain on the same database. ``final`` says a mined row is buried deep enough;
``chain_id``, ``genesis_hash`` and ``deployment`` say which chain a row belongs to, and
the idempotency key is unique per chain, not across chains (a fresh chain answers a
request afresh). Rows made before this revision have no chain (NULL): they match no
chain, so they are never answered as current.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite cannot drop a constraint in place (the table is copied).
    with op.batch_alter_table("actions") as batch:
        batch.add_column(
            sa.Column("final", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("chain_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("genesis_hash", sa.String(66), nullable=True))
        batch.add_column(sa.Column("deployment", sa.String(80), nullable=True))
        batch.drop_constraint("uq_actions_idempotency_key", type_="unique")
        batch.create_unique_constraint(
            "uq_actions_key_chain", ["idempotency_key", "chain_id", "genesis_hash", "deployment"]
        )
    # Every index run reviews the mined rows not final yet.
    op.create_index("ix_actions_final_status", "actions", ["final", "status"])


def downgrade() -> None:
    # Keys used on several chains cannot all stay: keep each key's newest row.
    actions = sa.table(
        "actions",
        sa.column("id", sa.String),
        sa.column("idempotency_key", sa.String),
        sa.column("created_at", sa.DateTime),
    )
    newer = actions.alias("newer")
    op.execute(
        actions.delete().where(
            sa.exists().where(
                newer.c.idempotency_key == actions.c.idempotency_key,
                sa.or_(
                    newer.c.created_at > actions.c.created_at,
                    sa.and_(newer.c.created_at == actions.c.created_at, newer.c.id > actions.c.id),
                ),
            )
        )
    )
    op.drop_index("ix_actions_final_status", table_name="actions")
    with op.batch_alter_table("actions") as batch:
        batch.drop_constraint("uq_actions_key_chain", type_="unique")
        batch.create_unique_constraint("uq_actions_idempotency_key", ["idempotency_key"])
        batch.drop_column("deployment")
        batch.drop_column("genesis_hash")
        batch.drop_column("chain_id")
        batch.drop_column("final")
