"""The actions table's finality and chain columns (revision 0010), up and down, on
SQLite and PostgreSQL: what each direction keeps, and that the head is reached again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError, OperationalError

from backend.db.migrate import alembic_config, upgrade_to_head

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.db"
        return
    name = f"gpucap_migrations_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc.orig})")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _row(key: str, genesis: str | None = None) -> dict[str, object]:
    now = datetime.now(UTC)
    row: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "kind": "faucet",
        "idempotency_key": key,
        "params": "{}",
        "status": "confirmed",
        "attempts": 1,
        "created_at": now,
        "updated_at": now,
    }
    if genesis is not None:
        row.update(chain_id=31337, genesis_hash=genesis, deployment="1:abc")
    return row


def _insert(engine: sa.Engine, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO actions ({columns}) VALUES ({values})"), row)


def test_0010_up_down_up(database_url: str) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0009")
    engine = sa.create_engine(database_url)
    _insert(engine, _row("before"))  # a row older than the chain columns

    upgrade_to_head(database_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("actions")}
    assert {"final", "chain_id", "genesis_hash", "deployment"} <= columns
    assert "ix_actions_final_status" in {
        i["name"] for i in sa.inspect(engine).get_indexes("actions")
    }
    with engine.connect() as conn:
        old = conn.execute(sa.text("SELECT final, genesis_hash FROM actions")).one()
    assert (bool(old.final), old.genesis_hash) == (False, None)
    # One key on two chains (a reset node): two rows; twice on one chain: refused.
    _insert(engine, _row("k", "0x" + "11" * 32))
    _insert(engine, _row("k", "0x" + "22" * 32))
    with pytest.raises(IntegrityError):
        _insert(engine, _row("k", "0x" + "22" * 32))

    command.downgrade(cfg, "0009")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("actions")}
    assert not {"final", "chain_id", "genesis_hash", "deployment"} & columns
    assert "ix_actions_final_status" not in {
        i["name"] for i in sa.inspect(engine).get_indexes("actions")
    }
    with engine.connect() as conn:  # a key is unique again: the newest row of "k" stays
        keys = sorted(conn.scalars(sa.text("SELECT idempotency_key FROM actions")))
    assert keys == ["before", "k"]
    with pytest.raises(IntegrityError):
        _insert(engine, _row("k"))

    upgrade_to_head(database_url)
    assert "final" in {c["name"] for c in sa.inspect(engine).get_columns("actions")}
    engine.dispose()
