"""test_indexer.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
the chain indexer: read models, restarts, reorgs undone, resets."""

from __future__ import annotations

import pytest

from tests.backend.test_indexer import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
