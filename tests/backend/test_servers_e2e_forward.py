"""test_e2e_forward.py's tests again, on PostgreSQL + redis-server (tests/support/backends.py):
the forward flow: gasless buys, batches with an outcome per request, refusals."""

from __future__ import annotations

import pytest

from tests.backend.test_e2e_forward import *  # noqa: F403
from tests.support.backends import Backend


@pytest.fixture(scope="module")
def backend(servers_backend: Backend) -> Backend:
    return servers_backend
