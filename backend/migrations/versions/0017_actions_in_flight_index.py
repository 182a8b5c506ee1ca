"""actions: an index for the market's fills in flight (kind, status, block_number)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Every book read and every fill's checks ask which relayed fills the index does not show
yet (market/book.py ``in_flight``): open forward actions, and confirmed ones mined at or
after the indexer's next block. With only ``ix_actions_kind_status_key`` SQLite found
the confirmed ones by reading ``block_number`` from every confirmed forward action ever
relayed, a row that carries its batch's whole signed transaction (tens of kB of
overflow pages): each request read megabytes, more with every fill. With this index
both halves of that question are index ranges.

Down drops the index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_actions_kind_status_block"


def upgrade() -> None:
    op.create_index(INDEX, "actions", ["kind", "status", "block_number"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="actions")
