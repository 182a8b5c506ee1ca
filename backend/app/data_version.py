"""The database's *data version*: a value that changes whenever any commit lands,
read before a cached read route runs (``read_cache.py`` rests on it).

What a source must give, for a value ``v`` it returns: (1) every commit that had
ended before the call started is visible to a query started after the call returned;
(2) if a later call returns ``v`` again, no commit ended in between. Changing more
often than that (a rollback, another database's commit) only costs cache misses.

**SQLite**: ``PRAGMA data_version`` on a connection that never writes changes
whenever another connection (any process) commits to the file. Microseconds, so it
is asked synchronously, on every request.

**PostgreSQL**: ``pg_current_snapshot()`` (PostgreSQL 13+) as text,
``xmin:xmax:xip,...``, read in its own autocommit transaction. Why it is a data
version: ``xmax`` is one past the latest *completed* transaction id and never goes
back; ``xip`` lists the transactions still running whose id is below ``xmax``.
Every transaction that writes has an id (a write assigns one; a subtransaction's
write assigns its parent's first), and ids are never reused (64-bit ``xid8``, no
wraparound in the text). Take a writing transaction T, id ``x``, that ends after
``v`` was read, whenever ``x`` was assigned:
- ``x < xmax(v)``: T was running, so ``x`` is in ``xip(v)``; after T ends ``x`` is
  in no later ``xip``, so every later value differs;
- ``x >= xmax(v)`` (T took its id after the latest completion before ``v``, or
  after ``v`` itself): once T ends the latest completed id is at least ``x``, so
  every later ``xmax`` is above ``xmax(v)``.
Either way (2) holds; a transaction that ended before ``v`` was read is in ``v``'s
snapshot and in every later one (1). Read-only transactions have no id and change
nothing; sequence advances (``nextval``) are not transactional and no cached route
reads them. A transaction that starts, even one that takes an id, leaves the value
as it was: only endings (commit or rollback) anywhere on the server change it.
Alternatives rejected: a counter row bumped by every writer (correct only while
every writer, including ones not written yet and an operator's ``psql``, bumps it
in the same transaction) and LISTEN/NOTIFY (delivered after the commit,
asynchronously: a read in between would get the old answer).

It costs a round trip (about 0.4 ms here, more under load), so it is asked
asynchronously, on a connection of its own (never the pool's: the probe must not
wait behind the requests it serves), and shared: callers that arrive while a probe
is on the wire wait for the *next* one, which is sent after they arrived (one sent
earlier could miss a commit that ended between its read and their arrival, which
(1) forbids). At any rate, at most one probe is in flight per process and a caller
waits at most two round trips; under load one probe serves every request that
arrived during the one before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

Version = int | str
# A database that does not answer a trivial query within this long would not answer
# the route's either: its requests then run uncached (and meet the database's error).
POSTGRES_PROBE_TIMEOUT_S = 2.0


class DataVersion(Protocol):
    async def __call__(self) -> Version | None:
        """The current version, or None when it cannot be known right now (no caching)."""

    def close(self) -> None: ...


class SqliteDataVersion:
    """``PRAGMA data_version`` of one SQLite file, on a connection that never writes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def __call__(self) -> int | None:
        return self.read()

    def read(self) -> int | None:
        with self._lock:
            try:
                if self._conn is None:
                    if not self._path.exists():
                        return None
                    # timeout=0: the probe runs on the event loop, it must never wait on
                    # a lock; a busy database means "unknown", and the request just runs.
                    self._conn = sqlite3.connect(
                        self._path, timeout=0, isolation_level=None, check_same_thread=False
                    )
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                log.warning("read cache: data_version of %s unavailable (%s)", self._path, exc)
                self._close_unlocked()
                return None

    def _close_unlocked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_unlocked()


class PostgresDataVersion:
    """``pg_current_snapshot()::text`` of a PostgreSQL server, probes shared as the
    module docstring says. Event-loop only: one loop at a time uses an instance."""

    QUERY = "SELECT pg_current_snapshot()::text"

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.AsyncConnection[tuple[str]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Callers waiting for a probe not sent yet, and the task that sends probes.
        self._next: asyncio.Future[str | None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self.probes = 0  # sent (tests and measurements: callers per probe)

    async def __call__(self) -> str | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (a test's next client): start afresh
            self.close()
            self._loop = loop
        if self._next is None:
            self._next = loop.create_future()
        waiting = self._next
        if self._prober is None or self._prober.done():
            self._prober = loop.create_task(self._probe_while_asked())
        return await asyncio.shield(waiting)

    async def _probe_while_asked(self) -> None:
        while (batch := self._next) is not None:
            # Whoever asks from here on waits for the next probe: this one is sent
            # after every caller in ``batch`` arrived, not after theirs.
            self._next = None
            version: str | None = None
            try:
                version = await asyncio.wait_for(self._read(), POSTGRES_PROBE_TIMEOUT_S)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("read cache: pg_current_snapshot unavailable (%s)", exc)
                self._drop_connection()
            finally:
                if not batch.done():
                    batch.set_result(version)

    async def _read(self) -> str:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=2
            )
        self.probes += 1
        cursor = await self._conn.execute(self.QUERY)
        row = await cursor.fetchone()
        assert row is not None  # a SELECT of one value returns one row
        return row[0]

    def _drop_connection(self) -> None:
        if self._conn is not None:
            # Synchronous: libpq closes the socket; callable from any loop or none.
            self._conn.pgconn.finish()
            self._conn = None

    def close(self) -> None:
        """Stop probing; callers still waiting run uncached. The loop may be closed
        already (a test's client gone): then its futures are only forgotten."""
        with contextlib.suppress(RuntimeError):  # "Event loop is closed"
            if self._next is not None and not self._next.done():
                self._next.set_result(None)
            if self._prober is not None and not self._prober.done():
                self._prober.cancel()
        self._prober = self._next = None
        self._drop_connection()


def for_url(url: str) -> DataVersion | None:
    """The data version of a SQLite file or a PostgreSQL server; None for anything else
    (an in-memory SQLite database has no other connection to commit)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return SqliteDataVersion(Path(parsed.database))
    if backend == "postgresql":
        # libpq takes the URL without SQLAlchemy's "+driver".
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresDataVersion(conninfo)
    return None
