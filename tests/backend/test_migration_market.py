"""The market's tables (revision 0012), up and down, on SQLite and PostgreSQL: they
match the models, keep uint256 amounts exactly, refuse a second row of one order, and
leave nothing behind going down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from eth_utils import to_checksum_address
from sqlalchemy.exc import IntegrityError

from backend.db.models import Base
from tests.backend.test_migrations import database_url  # noqa: F401 - the fixture
from tests.support.migrations import revision_step

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


def _insert_fills(engine: sa.Engine, tokens: list[str], party: str) -> None:
    """One indexed fill per token id, in blocks 10, 11, ... (the columns before 0014)."""
    with engine.begin() as conn:
        for n, token in enumerate(tokens):
            conn.execute(
                sa.text(
                    "INSERT INTO market_fills (block_number, log_index, tx_hash, order_hash, "
                    "maker, taker, asset, token_id, maker_sells, amount, quote, maker_fee, "
                    "taker_fee, filled_total, block_timestamp) VALUES (:n, 0, :h, :h, :m, :m, "
                    ":m, :token, true, '1', '1', '0', '0', '1', 1)"
                ),
                {"n": 10 + n, "h": "0x" + "ef" * 32, "m": party, "token": token},
            )


def test_0012_up_down_up(database_url: str) -> None:  # noqa: F811 - the fixture
    with revision_step(database_url, "0012") as step:
        step.up()
        for table in MARKET_TABLES:
            expected = set(Base.metadata.tables[table].columns.keys())
            assert step.columns(table) == expected - LATER_COLUMNS.get(table, set()), table
        assert {"ix_market_orders_instrument", "ix_market_orders_maker"} <= step.indexes(
            "market_orders"
        )
        _insert(step.engine, _order("0x" + "aa" * 32))
        with step.engine.connect() as conn:
            amount, token_id = conn.execute(
                sa.text("SELECT amount, token_id FROM market_orders")
            ).one()
        assert (int(amount), int(token_id)) == (10**24, 2**128 + 7)
        with pytest.raises(IntegrityError):
            _insert(step.engine, _order("0x" + "aa" * 32))

        step.down()
        assert not set(MARKET_TABLES) & step.tables()


@pytest.mark.parametrize("market_events", [0, 1])
def test_0012_rebuilds_an_index_that_stored_market_events(
    database_url: str,  # noqa: F811 - the fixture
    market_events: int,
) -> None:
    """An index older than 0012 stored the market's events without folding them: it is
    marked stale (deployment block -1) so the next step rebuilds the projections."""
    with revision_step(database_url, "0012") as step:
        step.mark_indexed()
        with step.engine.begin() as conn:
            for n in range(market_events):
                conn.execute(
                    sa.text(
                        "INSERT INTO chain_events (block_number, log_index, block_hash, "
                        "block_timestamp, tx_hash, contract, event, args) VALUES (:n, 0, :h, "
                        "1, :h, 'Market', 'OrderFilled', '{}')"
                    ),
                    {"n": 10 + n, "h": "0x" + "ef" * 32},
                )
        step.up()
        assert step.scalar("SELECT deployment_block FROM indexer_state") == (
            -1 if market_events else 5
        )


@pytest.mark.parametrize("indexed_fills", [0, 1])
def test_0014_checksums_addresses_adds_the_wash_flag_and_rebuilds_flagless_fills(
    database_url: str,  # noqa: F811 - the fixture
    indexed_fills: int,
) -> None:
    """0014 rewrites a book row's addresses in the form the queries compare (EIP-55), adds
    ``market_fills.wash_flag`` and its pair index, and marks an index holding fills stale
    so a rebuild flags them; down drops the column and the index (addresses stay)."""
    lower = "0x" + "ab" * 20  # an all-lowercase maker, an all-uppercase asset
    checksummed = to_checksum_address(lower)
    with revision_step(database_url, "0014") as step:
        _insert(
            step.engine, {**_order("0x" + "aa" * 32), "maker": lower, "asset": "0x" + "AB" * 20}
        )
        step.mark_indexed()
        _insert_fills(step.engine, ["0"] * indexed_fills, checksummed)
        step.up()
        with step.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT maker, asset FROM market_orders")).one() == (
                checksummed,
                checksummed,
            )
        assert step.scalar("SELECT deployment_block FROM indexer_state") == (
            -1 if indexed_fills else 5
        )
        expected = set(Base.metadata.tables["market_fills"].columns.keys()) - FILL_CLASS_COLUMNS
        assert step.columns("market_fills") == expected
        assert "ix_market_fills_pair" in step.indexes("market_fills")

        step.down()
        assert "wash_flag" not in step.columns("market_fills")
        assert "ix_market_fills_pair" not in step.indexes("market_fills")


def test_0015_gives_indexed_fills_their_class_and_window(
    database_url: str,  # noqa: F811 - the fixture
) -> None:
    """0015 adds ``market_fills.class_id``/``window_start`` and fills them in from the
    token ids of the fills already indexed (GPU-hours: classId << 64 | windowStart; pool
    shares, token id 0, keep nulls), so the index needs no rebuild; down drops them."""
    capacity = (3 << 64) | 1_764_003_600
    with revision_step(database_url, "0015") as step:
        step.mark_indexed()
        _insert_fills(step.engine, [str(capacity), "0", str(capacity)], "0x" + "11" * 20)
        step.up()
        with step.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT class_id, window_start FROM market_fills ORDER BY block_number")
            ).all()
        assert [tuple(r) for r in rows] == [(3, 1_764_003_600), (None, None), (3, 1_764_003_600)]
        assert step.scalar("SELECT deployment_block FROM indexer_state") == 5  # no rebuild
        assert step.columns("market_fills") == set(
            Base.metadata.tables["market_fills"].columns.keys()
        )
        assert "ix_market_fills_class_time" in step.indexes("market_fills")

        step.down()
        assert not FILL_CLASS_COLUMNS & step.columns("market_fills")
        assert "ix_market_fills_class_time" not in step.indexes("market_fills")
