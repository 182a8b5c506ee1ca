"""One revision's up-and-down test, the shape every migration test shares: the database
at the revision before, rows put there, up, checks, down, checks, and the head again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from backend.db.migrate import alembic_config, upgrade_to_head
from backend.db.models import Base


@dataclass
class RevisionStep:
    """``revision`` on a database at the revision before it (``before``)."""

    cfg: Config
    engine: sa.Engine
    revision: str
    before: str

    def up(self) -> None:
        command.upgrade(self.cfg, self.revision)

    def down(self) -> None:
        command.downgrade(self.cfg, self.before)

    def columns(self, table: str) -> set[str]:
        return {c["name"] for c in sa.inspect(self.engine).get_columns(table)}

    def indexes(self, table: str) -> set[str]:
        return {str(i["name"]) for i in sa.inspect(self.engine).get_indexes(table)}

    def tables(self) -> set[str]:
        return set(sa.inspect(self.engine).get_table_names())

    def scalar(self, sql: str) -> object:
        with self.engine.connect() as conn:
            return conn.scalar(sa.text(sql))

    def mark_indexed(self, deployment_block: int = 5) -> None:
        """An indexer that has run (chain 31337, from ``deployment_block``): what a
        revision that marks the index stale (deployment block -1) looks at."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO indexer_state (chain_id, deployment_block, next_block, "
                    "head_block, reorgs, resets, updated_at) VALUES (31337, :block, 100, 100, "
                    "0, 0, :now)"
                ),
                {"block": deployment_block, "now": datetime.now(UTC)},
            )


@contextmanager
def revision_step(database_url: str, revision: str) -> Iterator[RevisionStep]:
    """The database at ``revision``'s parent; the body goes up (and down) with the step;
    after it the head is reached again, with every table the models have."""
    cfg = alembic_config(database_url)
    before = ScriptDirectory.from_config(cfg).get_revision(revision).down_revision
    assert isinstance(before, str), f"{revision} has no single parent"
    command.upgrade(cfg, before)
    engine = sa.create_engine(database_url)
    try:
        step = RevisionStep(cfg, engine, revision, before)
        yield step
        upgrade_to_head(database_url)
        assert set(Base.metadata.tables) <= step.tables()
    finally:
        engine.dispose()
