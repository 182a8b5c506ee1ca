"""Engine and session factory per database URL (one pool per process)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool, StaticPool

# A database that is down, unreachable, dropped the connection or is too busy to hand
# one out: the failed transaction was rolled back, the same work may be tried again.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


def database_reason(exc: BaseException) -> str:
    """The driver's first line (connection refused, server closed the connection, …)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # API and worker are separate processes on one file: WAL lets readers and
    # a writer work together, busy_timeout waits for a lock instead of failing.
    # synchronous=NORMAL (SQLite's advice for WAL): a commit is written to the WAL
    # but not fsynced; the WAL is synced at checkpoints. A crashed process loses
    # nothing it committed (the OS has it); a power loss may roll back the last
    # commits, never corrupt the file. FULL held the one write lock that the API
    # processes and the worker share through an fsync per commit: the bench's
    # accept rate of relayed requests went 194 -> 239 per second with NORMAL.
    # Deployments that must survive power loss use PostgreSQL.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


# Pool sizes. FastAPI runs sync routes and sync dependencies in a thread pool
# (anyio's default limiter: API_THREADS), and a request's session keeps its
# connection from its first query until the dependency's teardown, after the
# response is sent: in between, the request waits for a thread again to serialize
# its answer, holding the connection and no thread. So more requests than threads
# can hold a connection at once, and a pool that makes a request wait for a
# connection can wait on requests that wait for a thread (fastapi#3205: `make bench`
# saw every request time out at 200 clients with the default 5 + 10; on PostgreSQL
# at 200 clients the 20 + 40 this replaces ran out and answered 503 after its 10 s
# timeout). So the pool never makes anyone wait:
# - SQLite: keep SQLITE_POOL_SIZE connections open for reuse (as many as the API has
#   threads) and open more on demand, without limit (max_overflow=-1), closing the
#   extras when returned. Reuse matters: a fresh connection costs a connect, the
#   pragmas below and a schema parse on its first query, on every request (the
#   NullPool this replaces did exactly that).
# - Server databases: each connection is a server process and the server caps them
#   (PostgreSQL's max_connections, 100 by default), so the API bounds what it holds
#   instead. A request's session dependency first takes one of API_SESSION_SLOTS
#   slots, waiting on the event loop with no thread and no connection held
#   (``backend/app/deps.py``); routes that open a session themselves do it inside a
#   worker thread (accepting a forward request or a fill, /health), one per thread
#   at most. Connections an API process holds at once <= API_SESSION_SLOTS +
#   API_THREADS = SERVER_POOL_SIZE: a checkout never waits, the timeout is a
#   backstop. One slot per thread keeps every thread busy with a session-holding
#   request; more would wait at the pool instead of the event loop. The server must
#   allow the processes' pools (80 per API process, the worker's as many at most,
#   it uses about its thread count, plus one read-cache probe per API process):
#   raise max_connections, or put PgBouncer in front, for more than one API process
#   under full load.
SQLITE_POOL_SIZE = 40
API_THREADS = 40  # anyio's default thread limiter (the API never changes it)
API_SESSION_SLOTS = API_THREADS
SERVER_POOL_SIZE = API_SESSION_SLOTS + API_THREADS
SERVER_POOL_TIMEOUT_S = 10


def uses_session_slots(url: str) -> bool:
    """Whether the API bounds its sessions on this database (server databases)."""
    return make_url(url).get_backend_name() != "sqlite"


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 5}
        if parsed.database and parsed.database != ":memory:":
            # A file connection does not drop like a socket: no pre-ping round trip.
            kwargs.update(poolclass=QueuePool, pool_size=SQLITE_POOL_SIZE, max_overflow=-1)
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:  # one in-memory database lives as long as its one connection
            kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(
            pool_pre_ping=True,
            pool_size=SERVER_POOL_SIZE,
            max_overflow=0,
            pool_timeout=SERVER_POOL_TIMEOUT_S,
        )
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@lru_cache(maxsize=8)
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


# SQLite has one writer at a time per database. Threads that all try at once do not
# queue: each loser sleeps in SQLite's busy handler (1, 2, 5 ... 100 ms steps) and
# retries, so under load the write lock sits free between sleeps and a burst of
# inserts takes tens to hundreds of ms each (`make bench`, figure 3: commit p90
# 235 ms at 40 API threads). Writers of one process take turns on this lock
# instead (a hand-off, no sleep); only the one holding it meets other processes'
# writers in SQLite's busy handler. Server databases lock rows, not the database.
_sqlite_write_locks: dict[Engine, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_turn(engine: Engine) -> AbstractContextManager[Any]:
    """Hold around a short write transaction (insert/update and commit, nothing slow
    inside): for SQLite, one such writer of this process at a time; else no-op."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _locks_guard:
        lock = _sqlite_write_locks.setdefault(engine, threading.Lock())
    return lock
