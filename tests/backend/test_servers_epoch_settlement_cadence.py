"""test_epoch_settlement_cadence.py's tests again, on PostgreSQL + redis-server
(tests/support/backends.py): a node settles one range when its cadence says so, a node not
due is deferred (the planner's own plan), a drawn loan's node and an overdue one settle."""

from __future__ import annotations

import pytest

from tests.backend.test_epoch_settlement_cadence import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
