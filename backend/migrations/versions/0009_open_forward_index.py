"""an index for "does this sender have a forward request open?"

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

POST /api/v1/forward asks it on every request (one open request per sender). The
sender is in the idempotency key's prefix; with only the (status, updated_at) index the
query read every open action, hundreds during a burst of requests. On (kind, status,
idempotency_key) it is one short range per open status.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_actions_kind_status_key", "actions", ["kind", "status", "idempotency_key"])


def downgrade() -> None:
    op.drop_index("ix_actions_kind_status_key", table_name="actions")
