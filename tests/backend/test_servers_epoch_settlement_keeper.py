"""test_epoch_settlement_keeper.py's tests again, on PostgreSQL + redis-server
(tests/support/backends.py): the epoch-settlement keeper through a worker process, in
order, bad input isolated, a batch a reorg removed settled again once."""

from __future__ import annotations

import pytest

from tests.backend.test_epoch_settlement_keeper import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
