"""test_settlement.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
the settlement keeper: proves and settles once."""

from __future__ import annotations

import pytest

from tests.backend.test_settlement import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
