"""leaf v2: energy in joules, per-figure coverage, challenge counts, cumulative counters

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

OracleHub's leaf v2 (contracts/interfaces/IOracleHub.sol) carries energy in joules,
the coverage of the utilization and of the energy (0 = unknown), the epoch's challenge
counts and cumulative counters since the node's registration; its EpochReport carries
``totalEnergyJoules``.

Up: ``epochs.total_energy_wh`` becomes ``total_energy_joules`` and
``node_metrics.energy_wh`` becomes ``energy_joules`` (values × 3600: exact). The rows
already ingested are v1 leaves: their utilization coverage is their sample coverage,
their energy coverage is the sample coverage where they carry energy and 0 (unknown)
where they say 0 Wh (v1 published an unknown energy as 0), no challenge was counted,
and their cumulative counters are NULL (not in a v1 leaf; never invented).

Down: back to whole Wh (rounded down) and the v2 columns dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOULES_PER_WH = 3_600
NEW_COUNTS = (
    "utilization_coverage_bps",
    "energy_coverage_bps",
    "challenges_passed",
    "challenges_failed",
)
CUMULATIVE = ("cum_milli_gpu_hours", "cum_energy_joules", "cum_busy_gpu_seconds")


def upgrade() -> None:
    with op.batch_alter_table("epochs") as batch:
        batch.add_column(sa.Column("total_energy_joules", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE epochs SET total_energy_joules = total_energy_wh * {JOULES_PER_WH}")
    with op.batch_alter_table("epochs") as batch:
        batch.alter_column("total_energy_joules", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("total_energy_wh")

    with op.batch_alter_table("node_metrics") as batch:
        batch.add_column(sa.Column("energy_joules", sa.BigInteger(), nullable=True))
        for name in NEW_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
        for name in CUMULATIVE:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE node_metrics SET"
        f" energy_joules = energy_wh * {JOULES_PER_WH},"
        " utilization_coverage_bps = sample_coverage_bps,"
        " energy_coverage_bps = CASE WHEN energy_wh > 0 THEN sample_coverage_bps ELSE 0 END,"
        " challenges_passed = 0, challenges_failed = 0"
    )
    with op.batch_alter_table("node_metrics") as batch:
        batch.alter_column("energy_joules", existing_type=sa.BigInteger(), nullable=False)
        for name in NEW_COUNTS:
            batch.alter_column(name, existing_type=sa.Integer(), nullable=False)
        batch.drop_column("energy_wh")


def downgrade() -> None:
    with op.batch_alter_table("node_metrics") as batch:
        batch.add_column(sa.Column("energy_wh", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE node_metrics SET energy_wh = energy_joules / {JOULES_PER_WH}")
    with op.batch_alter_table("node_metrics") as batch:
        batch.alter_column("energy_wh", existing_type=sa.BigInteger(), nullable=False)
        for name in ("energy_joules", *NEW_COUNTS, *CUMULATIVE):
            batch.drop_column(name)

    with op.batch_alter_table("epochs") as batch:
        batch.add_column(sa.Column("total_energy_wh", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE epochs SET total_energy_wh = total_energy_joules / {JOULES_PER_WH}")
    with op.batch_alter_table("epochs") as batch:
        batch.alter_column("total_energy_wh", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("total_energy_joules")
