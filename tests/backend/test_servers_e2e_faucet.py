"""test_e2e_faucet.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py).
Not here: the Redis outage test (it stops and restarts the embedded Redis; a shared
redis-server is not the test's to stop)."""

from __future__ import annotations

import pytest

from tests.backend.test_e2e_faucet import *  # noqa: F403
from tests.backend.test_e2e_faucet import test_redis_outage_loses_no_action
from tests.support.backends import Backend

del test_redis_outage_loses_no_action


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
