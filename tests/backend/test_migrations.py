"""Revisions up and down on SQLite and PostgreSQL: the actions table's finality and chain
columns (0010), the governance tables (0011), the loan book (0013), leaf v2 (0016), the
index of market fills in flight (0017) and the indexer's schedule and refunded hours (0018);
what each direction keeps, and that the head is reached again (tests/support/migrations.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError, OperationalError

from backend.db.migrate import alembic_config, upgrade_to_head
from tests.support.migrations import RevisionStep, revision_step

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


GOVERNANCE_TABLES = {"governance_changes", "governance_delays"}


def _stored_events(step: RevisionStep, contract: str, event: str, count: int) -> None:
    """``count`` events of ``contract`` the index stored (before a revision folds them)."""
    with step.engine.begin() as conn:
        for n in range(count):
            conn.execute(
                sa.text(
                    "INSERT INTO chain_events (block_number, log_index, block_hash, "
                    "block_timestamp, tx_hash, contract, event, args) VALUES (:n, 0, :h, 1, :h, "
                    ":contract, :event, '{}')"
                ),
                {"n": 10 + n, "h": "0x" + "ab" * 32, "contract": contract, "event": event},
            )


@pytest.mark.parametrize("timelock_events", [0, 1])
def test_0011_up_down_up(database_url: str, timelock_events: int) -> None:
    with revision_step(database_url, "0011") as step:
        step.mark_indexed()
        _stored_events(step, "GpucapTimelock", "MinDelayChange", timelock_events)

        step.up()
        assert step.tables() >= GOVERNANCE_TABLES
        assert {
            "ix_governance_changes_status_eta",
            "ix_governance_changes_operation_id",
        } <= step.indexes("governance_changes")
        # An index that stored timelock events without folding them starts over; others stay.
        assert step.scalar("SELECT deployment_block FROM indexer_state") == (
            -1 if timelock_events else 5
        )
        with step.engine.begin() as conn:  # the model's columns are there: a change fits
            conn.execute(
                sa.text(
                    "INSERT INTO governance_changes (block_number, log_index, operation_id, "
                    "call_index, target, value, data, predecessor, salt, delay_seconds, "
                    "scheduled_at, eta, scheduled_tx, status) VALUES (1, 0, :op, 0, :t, '0', "
                    "'0x', :op, :op, 90, 1, 91, :op, 'pending')"
                ),
                {"op": "0x" + "00" * 32, "t": "0x" + "11" * 20},
            )

        step.down()
        assert not GOVERNANCE_TABLES & step.tables()


LOAN_TABLES = {"pool_loans", "pool_loan_events"}


@pytest.mark.parametrize("loan_events", [0, 1])
def test_0013_up_down_up(database_url: str, loan_events: int) -> None:
    with revision_step(database_url, "0013") as step:
        step.mark_indexed()
        _stored_events(step, "PoolLoans", "LoanParamsSet", loan_events)

        step.up()
        assert step.tables() >= LOAN_TABLES
        assert "ix_pool_loan_events_node_id" in step.indexes("pool_loan_events")
        # An index that stored loan events without folding them starts over; others stay.
        assert step.scalar("SELECT deployment_block FROM indexer_state") == (
            -1 if loan_events else 5
        )
        with step.engine.begin() as conn:  # the model's columns are there: a loan fits
            conn.execute(
                sa.text(
                    "INSERT INTO pool_loans (node_id, state, pledge_taken, pledged, "
                    "pledge_released, bond_seized) VALUES (7, 'defaulted', true, 0, 0, 500)"
                )
            )

        step.down()
        assert not LOAN_TABLES & step.tables()


def test_0016_leaf_v2_up_down_up(database_url: str) -> None:
    """Energy becomes joules (× 3600, exact); a v1 row's 0 Wh becomes unknown (coverage
    0), its cumulative counters NULL; down gives whole Wh back."""
    with revision_step(database_url, "0016") as step:
        h = "0x" + "ab" * 32
        with step.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO epochs (epoch, root, node_count, total_energy_wh, "
                    "total_milli_gpu_hours, config_version, transmitter, block_number, "
                    "attested_at, tx_hash) VALUES (3, :h, 2, 150, 9, 1, :a, 10, 1000, :h)"
                ),
                {"h": h, "a": "0x" + "11" * 20},
            )
            for node, energy in ((1, 150), (2, 0)):
                conn.execute(
                    sa.text(
                        "INSERT INTO node_metrics (epoch, node_id, root, uptime_bps, "
                        "utilization_bps, sample_coverage_bps, energy_wh, milli_gpu_hours, "
                        "leaf_hash, proof) VALUES (3, :n, :h, 10000, 5000, 9000, :e, 4, :h, '[]')"
                    ),
                    {"n": node, "h": h, "e": energy},
                )

        step.up()
        assert step.scalar("SELECT total_energy_joules FROM epochs") == 540_000
        with step.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT node_id, energy_joules, utilization_coverage_bps, energy_coverage_bps,"
                    " challenges_passed, cum_milli_gpu_hours FROM node_metrics ORDER BY node_id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, 540_000, 9_000, 9_000, 0, None),
            (2, 0, 9_000, 0, 0, None),  # v1's 0 Wh: unknown, not zero
        ]
        assert "total_energy_wh" not in step.columns("epochs")

        step.down()
        assert step.scalar("SELECT total_energy_wh FROM epochs") == 150
        with step.engine.connect() as conn:
            energies = conn.execute(sa.text("SELECT energy_wh FROM node_metrics ORDER BY node_id"))
            assert [e for (e,) in energies] == [150, 0]
        assert not step.columns("node_metrics") & {"energy_joules", "cum_energy_joules"}


def test_0017_in_flight_index_up_down_up(database_url: str) -> None:
    """The index the market's fills in flight are read by comes and goes; rows stay."""
    with revision_step(database_url, "0017") as step:
        _insert(step.engine, _row("forward:0xab:0"))
        step.up()
        assert "ix_actions_kind_status_block" in step.indexes("actions")
        step.down()
        assert "ix_actions_kind_status_block" not in step.indexes("actions")
        assert step.scalar("SELECT count(*) FROM actions") == 1


def test_0018_schedule_and_refunded_hours_up_down_up(database_url: str) -> None:
    """The indexer's schedule columns come and go; a settled reservation's refunded hours
    are filled from its stored ReservationSettled event, an open one's stay NULL."""
    with revision_step(database_url, "0018") as step:
        with step.engine.begin() as conn:
            for rid, status in ((1, "settled"), (2, "reserved")):
                conn.execute(
                    sa.text(
                        "INSERT INTO reservations (reservation_id, holder, node_id, token_id,"
                        " class_id, window_start, amount, price_per_gpu_hour, status, refund,"
                        " slashed, uncovered) VALUES (:r, :h, 1, '5', 1, 86400, 4, 2, :s,"
                        " NULL, NULL, 0)"
                    ),
                    {"r": rid, "h": "0x" + "11" * 20, "s": status},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO chain_events (block_number, log_index, block_hash,"
                    " block_timestamp, tx_hash, contract, event, args) VALUES (7, 0, :h, 1, :h,"
                    " 'CapacityToken', 'ReservationSettled', :a)"
                ),
                {
                    "h": "0x" + "ab" * 32,
                    "a": '{"reservationId": 1, "nodeId": 1, "shortfallMilliGpuHours": 3780,'
                    ' "refund": 9, "slashed": 9, "bondUnlocked": 9}',
                },
            )
        step.up()
        assert {"window_seconds", "epoch_length_seconds"} <= step.columns("indexer_state")
        with step.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT reservation_id, shortfall_milli_gpu_hours FROM reservations"
                    " ORDER BY reservation_id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [(1, 3_780), (2, None)]
        step.down()
        assert "shortfall_milli_gpu_hours" not in step.columns("reservations")
        assert "window_seconds" not in step.columns("indexer_state")
        assert step.scalar("SELECT count(*) FROM reservations") == 2
