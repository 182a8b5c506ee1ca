"""The market's tables (revision 0012), up and down, on SQLite and PostgreSQL: they
match the models, keep uint256 amounts exactly, refuse a second row of one order, and
leave nothing behind going down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from eth_utils import to_checksum_address
from sqlalchemy.exc import IntegrityError

from backend.db.migrate import alembic_config, upgrade_to_head
from backend.db.models import Base
from tests.backend.test_migrations import database_url  # noqa: F401 - the fixture

MARKET_TABLES = ("market_orders", "market_fills", "market_cancels", "market_nonces")
FILL_CLASS_COLUMNS = {"class_id", "window_start"}  # added by 0015
LATER_COLUMNS = {"market_fills": {"wash_flag"} | FILL_CLASS_COLUMNS}  # added by 0014, 0015


def _order(order_hash: str) -> dict[str, object]:
    return {
        "order_hash": order_hash,
        "maker": "0x" + "11" * 20,
        "asset": "0x" + "22" * 20,
        "token_id": str(2**128 + 7),
        "sell": True,
        "amount": str(10**24),  # beyond 64 bits: pool shares have 18 decimals
        "quote_amount": "25000000",
        "nonce": "0",
        "expiry": 2**63 - 1,
        "signature": "0x" + "ab" * 65,
        "created_at": datetime.now(UTC),
    }


def _insert(engine: sa.Engine, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO market_orders ({columns}) VALUES ({values})"), row)


def test_0012_up_down_up(database_url: str) -> None:  # noqa: F811 - the fixture
    cfg = alembic_config(database_url)
    before = ScriptDirectory.from_config(cfg).get_revision("0012").down_revision
    command.upgrade(cfg, "0012")
    engine = sa.create_engine(database_url)
    inspector = sa.inspect(engine)
    for table in MARKET_TABLES:
        migrated = {c["name"] for c in inspector.get_columns(table)}
        expected = set(Base.metadata.tables[table].columns.keys()) - LATER_COLUMNS.get(table, set())
        assert migrated == expected, table
    assert {"ix_market_orders_instrument", "ix_market_orders_maker"} <= {
        i["name"] for i in inspector.get_indexes("market_orders")
    }
    _insert(engine, _order("0x" + "aa" * 32))
    with engine.connect() as conn:
        amount, token_id = conn.execute(sa.text("SELECT amount, token_id FROM market_orders")).one()
    assert (int(amount), int(token_id)) == (10**24, 2**128 + 7)
    with pytest.raises(IntegrityError):
        _insert(engine, _order("0x" + "aa" * 32))

    command.downgrade(cfg, str(before))
    assert not set(MARKET_TABLES) & set(sa.inspect(engine).get_table_names())

    upgrade_to_head(database_url)
    assert set(MARKET_TABLES) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.parametrize("market_events", [0, 1])
def test_0012_rebuilds_an_index_that_stored_market_events(
    database_url: str,  # noqa: F811 - the fixture
    market_events: int,
) -> None:
    """An index older than 0012 stored the market's events without folding them: it is
    marked stale (deployment block -1) so the next step rebuilds the projections."""
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0011")
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO indexer_state (chain_id, deployment_block, next_block, head_block, "
                "reorgs, resets, updated_at) VALUES (31337, 5, 100, 100, 0, 0, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        for n in range(market_events):
            conn.execute(
                sa.text(
                    "INSERT INTO chain_events (block_number, log_index, block_hash, "
                    "block_timestamp, tx_hash, contract, event, args) VALUES (:n, 0, :h, 1, :h, "
                    "'Market', 'OrderFilled', '{}')"
                ),
                {"n": 10 + n, "h": "0x" + "ef" * 32},
            )
    command.upgrade(cfg, "0012")
    with engine.connect() as conn:
        block = conn.scalar(sa.text("SELECT deployment_block FROM indexer_state"))
    assert block == (-1 if market_events else 5)
    engine.dispose()


@pytest.mark.parametrize("indexed_fills", [0, 1])
def test_0014_checksums_addresses_adds_the_wash_flag_and_rebuilds_flagless_fills(
    database_url: str,  # noqa: F811 - the fixture
    indexed_fills: int,
) -> None:
    """0014 rewrites a book row's addresses in the form the queries compare (EIP-55), adds
    ``market_fills.wash_flag`` and its pair index, and marks an index holding fills stale
    so a rebuild flags them; down drops the column and the index (addresses stay)."""
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0013")
    engine = sa.create_engine(database_url)
    lower = "0x" + "ab" * 20  # an all-lowercase maker, an all-uppercase asset
    _insert(engine, {**_order("0x" + "aa" * 32), "maker": lower, "asset": "0x" + "AB" * 20})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO indexer_state (chain_id, deployment_block, next_block, head_block, "
                "reorgs, resets, updated_at) VALUES (31337, 5, 100, 100, 0, 0, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        for n in range(indexed_fills):
            conn.execute(
                sa.text(
                    "INSERT INTO market_fills (block_number, log_index, tx_hash, order_hash, "
                    "maker, taker, asset, token_id, maker_sells, amount, quote, maker_fee, "
                    "taker_fee, filled_total, block_timestamp) VALUES (:n, 0, :h, :h, :m, :m, "
                    ":m, '0', true, '1', '1', '0', '0', '1', 1)"
                ),
                {"n": 10 + n, "h": "0x" + "ef" * 32, "m": to_checksum_address(lower)},
            )
    command.upgrade(cfg, "0014")
    checksummed = to_checksum_address(lower)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT maker, asset FROM market_orders")).one() == (
            checksummed,
            checksummed,
        )
        block = conn.scalar(sa.text("SELECT deployment_block FROM indexer_state"))
    assert block == (-1 if indexed_fills else 5)
    inspector = sa.inspect(engine)
    migrated = {c["name"] for c in inspector.get_columns("market_fills")}
    expected = set(Base.metadata.tables["market_fills"].columns.keys()) - FILL_CLASS_COLUMNS
    assert migrated == expected
    assert "ix_market_fills_pair" in {i["name"] for i in inspector.get_indexes("market_fills")}

    command.downgrade(cfg, "0013")
    inspector = sa.inspect(engine)
    assert "wash_flag" not in {c["name"] for c in inspector.get_columns("market_fills")}
    assert "ix_market_fills_pair" not in {i["name"] for i in inspector.get_indexes("market_fills")}
    upgrade_to_head(database_url)
    engine.dispose()


def test_0015_gives_indexed_fills_their_class_and_window(
    database_url: str,  # noqa: F811 - the fixture
) -> None:
    """0015 adds ``market_fills.class_id``/``window_start`` and fills them in from the
    token ids of the fills already indexed (GPU-hours: classId << 64 | windowStart; pool
    shares, token id 0, keep nulls), so the index needs no rebuild; down drops them."""
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0014")
    engine = sa.create_engine(database_url)
    capacity = (3 << 64) | 1_764_003_600
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO indexer_state (chain_id, deployment_block, next_block, head_block, "
                "reorgs, resets, updated_at) VALUES (31337, 5, 100, 100, 0, 0, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        for n, token in enumerate((str(capacity), "0", str(capacity))):
            conn.execute(
                sa.text(
                    "INSERT INTO market_fills (block_number, log_index, tx_hash, order_hash, "
                    "maker, taker, asset, token_id, maker_sells, amount, quote, maker_fee, "
                    "taker_fee, filled_total, block_timestamp) VALUES (:n, 0, :h, :h, :m, :m, "
                    ":m, :token, true, '1', '1', '0', '0', '1', 1)"
                ),
                {"n": 10 + n, "h": "0x" + "ef" * 32, "m": "0x" + "11" * 20, "token": token},
            )
    command.upgrade(cfg, "0015")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT class_id, window_start FROM market_fills ORDER BY block_number")
        ).all()
        block = conn.scalar(sa.text("SELECT deployment_block FROM indexer_state"))
    assert [tuple(r) for r in rows] == [(3, 1_764_003_600), (None, None), (3, 1_764_003_600)]
    assert block == 5  # not marked stale: nothing to rebuild
    inspector = sa.inspect(engine)
    migrated = {c["name"] for c in inspector.get_columns("market_fills")}
    assert migrated == set(Base.metadata.tables["market_fills"].columns.keys())
    indexes = {i["name"] for i in inspector.get_indexes("market_fills")}
    assert "ix_market_fills_class_time" in indexes

    command.downgrade(cfg, "0014")
    inspector = sa.inspect(engine)
    assert not FILL_CLASS_COLUMNS & {c["name"] for c in inspector.get_columns("market_fills")}
    indexes = {i["name"] for i in inspector.get_indexes("market_fills")}
    assert "ix_market_fills_class_time" not in indexes
    upgrade_to_head(database_url)
    engine.dispose()
