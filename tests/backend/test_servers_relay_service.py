"""test_relay_service.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
the relayer's exactly-once path: relaying twice drips once, a crash between record
and broadcast re-sends the same transaction, a taken nonce is re-signed."""

from __future__ import annotations

import pytest

from tests.backend.test_relay_service import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
