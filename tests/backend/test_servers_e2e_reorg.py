"""test_e2e_reorg.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
reorgs against the whole stack: a removed action is executed again, exactly once."""

from __future__ import annotations

import pytest

from tests.backend.test_e2e_reorg import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
