"""Engine and session factory per database URL (one pool per process)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # API and worker are separate processes on one file: WAL lets readers and
    # a writer work together, busy_timeout waits for a lock instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


# Why no small pool: FastAPI runs sync routes and their sync `yield` dependencies in
# a thread pool of 40; with SQLAlchemy's default pool (5 + 10 overflow), requests
# beyond 15 block threads waiting for a connection while the requests holding one
# wait for a thread to finish their teardown (fastapi#3205). `make bench` saw every
# request time out at 200 clients. SQLite connections are cheap to open: no pool.
# Server databases get a pool larger than the API's thread pool.
SERVER_POOL_SIZE = 20
SERVER_MAX_OVERFLOW = 40


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 5}
        if parsed.database and parsed.database != ":memory:":
            kwargs["poolclass"] = NullPool
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:  # one in-memory database lives as long as its one connection
            kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=SERVER_POOL_SIZE, max_overflow=SERVER_MAX_OVERFLOW, pool_timeout=10)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@lru_cache(maxsize=8)
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)
