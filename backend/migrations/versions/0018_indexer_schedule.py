"""indexer_state: the deployment's window and epoch schedule; reservations: refunded hours

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08

The load factor per delivery window (``/api/v1/nodes/{id}/load``) maps a CapacityToken
window to the OracleHub epochs that count toward it. Both schedules are immutables of
the deployment that no event carries, so the indexer reads them once per deployment
(CapacityToken.windowSeconds(), OracleHub.genesisTimestamp()/epochLengthSeconds()) and
keeps them beside its position: the read routes answer from the database only.

``reservations.shortfall_milli_gpu_hours`` is ReservationSettled's
``shortfallMilliGpuHours``: the reserved hours refunded for a shortfall, which the load
factor does not count as billed. NULL while the reservation is open.

Up adds the three schedule columns, NULL (read by the indexer at its next step), and the
shortfall column, filled for the settled reservations from their stored
ReservationSettled events. Down drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("window_seconds", "epoch_genesis_timestamp", "epoch_length_seconds")


def upgrade() -> None:
    with op.batch_alter_table("indexer_state") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("shortfall_milli_gpu_hours", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    events = sa.table(
        "chain_events",
        sa.column("contract", sa.String),
        sa.column("event", sa.String),
        sa.column("args", sa.JSON),
    )
    reservations = sa.table(
        "reservations",
        sa.column("reservation_id", sa.BigInteger),
        sa.column("shortfall_milli_gpu_hours", sa.BigInteger),
    )
    settled = bind.execute(
        sa.select(events.c.args).where(
            events.c.contract == "CapacityToken", events.c.event == "ReservationSettled"
        )
    )
    for (args,) in settled:
        bind.execute(
            reservations.update()
            .where(reservations.c.reservation_id == int(args["reservationId"]))
            .values(shortfall_milli_gpu_hours=int(args["shortfallMilliGpuHours"]))
        )


def downgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("shortfall_milli_gpu_hours")
    with op.batch_alter_table("indexer_state") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
