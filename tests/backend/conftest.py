"""Backend test catalogue: real Redis, real API and worker processes.

``backend`` is the database and Redis a module runs on (tests/support/backends.py):
the embedded pair by default; the ``test_servers_*.py`` modules run chosen modules'
tests again on PostgreSQL and redis-server by overriding it with ``servers_backend``.

No fn_isolation here: worker processes act on the chain while tests run, and a
snapshot revert would pull state from under them (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db.session import get_sessionmaker
from tests.backend.backend_helpers import Stack, running_stack
from tests.support.backends import (
    EMBEDDED,
    SERVERS,
    Backend,
    RedisHandle,
    migrated_database,
    servers_unreachable,
)


@pytest.fixture(scope="module")
def backend() -> Backend:
    """The embedded pair; a ``test_servers_*`` module overrides it."""
    return EMBEDDED


@pytest.fixture(scope="session")
def servers_backend() -> Backend:
    """PostgreSQL + redis-server, or a skip saying why not (the header said it once)."""
    if (why := servers_unreachable()) is not None:
        pytest.skip(f"servers back end not run: {why}")
    return SERVERS


@pytest.fixture(scope="module")
def stack(
    live_deployment: Any, tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("backend"), live_deployment, backend=backend) as s:
        yield s


@pytest.fixture(scope="module")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[RedisHandle]:
    server = backend.redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sessions(tmp_path: Path, backend: Backend) -> Iterator[sessionmaker[Session]]:
    """A fresh database at the migrations' head, for service-level tests."""
    with migrated_database(backend, tmp_path) as url:
        yield get_sessionmaker(url)
