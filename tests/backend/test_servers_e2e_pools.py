"""test_e2e_pools.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
pools and epoch settlements indexed and served, a reorg undone."""

from __future__ import annotations

import pytest

from tests.backend.test_e2e_pools import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
