"""The read cache on PostgreSQL (backend/app/data_version.py): never an answer older
than the last commit, single flight as on SQLite, and the API's sessions bounded so
the pool never runs out.

The app runs in-process (TestClient) on a throwaway database of the shared server
(tests/support/backends.py); writes come from other connections and another process,
as the worker's indexer's do. The server is shared with other test runs, whose
commits also change the data version (a cache miss, never a stale answer): a check
that needs "no commit meanwhile" brackets itself with two version reads and is tried
again if any landed in between.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import make_url

from backend.app.data_version import PostgresDataVersion, Version
from backend.app.main import create_app
from backend.app.read_cache import ReadCache
from backend.config import Settings
from backend.db.models import IndexerState
from backend.db.session import (
    API_SESSION_SLOTS,
    API_THREADS,
    SERVER_POOL_SIZE,
    get_engine,
    get_sessionmaker,
)
from gpucap import devchain
from tests.backend.backend_helpers import (
    assert_indexer_status_follows_another_process,
    node_row,
    wait_for,
)
from tests.backend.test_read_cache import Statements
from tests.support.backends import Backend

QUIET_TRIES = 50


@pytest.fixture(scope="module")
def pg(servers_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway database's SQLAlchemy URL (dropped at the end of the module)."""
    with servers_backend.database(tmp_path_factory.mktemp("pg")) as url:
        yield url
        get_engine(url).dispose()  # the drop forces them closed anyway; say so first


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Recording:
    """The app's data version, remembering what each request was given."""

    def __init__(self, conninfo: str) -> None:
        self.source = PostgresDataVersion(conninfo)
        self.seen: list[Version | None] = []

    async def __call__(self) -> Version | None:
        version = await self.source()
        self.seen.append(version)
        return version

    def close(self) -> None:
        self.source.close()


@pytest.fixture(scope="module")
def app_client(pg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        run_dir=tmp_path_factory.mktemp("api"),
        database_url=pg,
        redis_url=f"redis://127.0.0.1:{devchain.free_port()}/0",
    )
    app = create_app(settings, enqueue=lambda _action, **_: True)
    assert isinstance(app.state.read_cache, ReadCache)  # on PostgreSQL too, now
    app.state.read_cache.close()
    app.state.read_cache = ReadCache(Recording(libpq(pg)))
    with TestClient(app) as client:  # the lifespan migrates the database
        yield client


@pytest.fixture
def client(app_client: TestClient, pg: str) -> Iterator[TestClient]:
    """The module's app on emptied read tables."""
    with get_sessionmaker(pg)() as s:
        s.query(IndexerState).delete()
        s.query(type(node_row(1))).delete()
        s.commit()
    yield app_client


@pytest.fixture
def statements(pg: str) -> Iterator[Statements]:
    counter = Statements(pg)
    yield counter
    counter.remove()


@pytest.fixture
def probe(pg: str) -> Iterator[PostgresDataVersion]:
    """The test's own reader of the server's data version (its own connection)."""
    source = PostgresDataVersion(libpq(pg))
    yield source
    source.close()


def read(source: PostgresDataVersion) -> str:
    version = asyncio.run(source())
    assert isinstance(version, str)
    return version


def xmax_xip(version: str) -> tuple[int, set[int]]:
    _, xmax, xip = version.split(":")
    return int(xmax), {int(x) for x in xip.split(",") if x}


def test_every_transaction_that_ends_after_a_read_changes_the_version(pg: str) -> None:
    """The two cases of data_version.py's argument, seen in the snapshot's own fields:
    a writer's id below xmax is listed as running and leaves the list when it ends; an
    id at or above xmax lifts xmax past it when it ends."""

    async def scenario() -> None:
        source = PostgresDataVersion(libpq(pg))
        try:
            with psycopg.connect(libpq(pg)) as a, psycopg.connect(libpq(pg)) as b:
                # Case 1: a takes an id, b a later one and commits: a's id is below xmax.
                xa = int(a.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
                b.execute("SELECT pg_current_xact_id()")
                b.commit()
                v1 = await source()
                assert isinstance(v1, str)
                xmax1, xip1 = xmax_xip(v1)
                assert xa < xmax1 and xa in xip1
                a.commit()
                v2 = await source()
                assert isinstance(v2, str) and v2 != v1
                assert xa not in xmax_xip(v2)[1]

                # Case 2: a takes the newest id (others may end meanwhile: then case 1).
                xa = int(a.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
                v3 = await source()
                assert isinstance(v3, str)
                xmax3, xip3 = xmax_xip(v3)
                assert xa >= xmax3 or xa in xip3
                a.rollback()  # a rollback ends it as well: a change, never harmful
                v4 = await source()
                assert isinstance(v4, str) and v4 != v3
                xmax4, xip4 = xmax_xip(v4)
                assert xmax4 > xa and xa not in xip4
        finally:
            source.close()

    asyncio.run(scenario())


def test_callers_share_probes_each_sent_after_they_asked(pg: str) -> None:
    """100 requests asking at once cost at most two probes, and the answer each gets
    reflects a commit that ended before it asked."""

    async def scenario() -> None:
        source = PostgresDataVersion(libpq(pg))
        try:
            first = await source()
            with psycopg.connect(libpq(pg), autocommit=True) as writer:
                writer.execute("SELECT pg_current_xact_id()")  # a transaction that ends
            sent = source.probes
            answers = await asyncio.gather(*(source() for _ in range(100)))
            assert source.probes - sent <= 2
            assert first not in answers and None not in answers
        finally:
            source.close()

    asyncio.run(scenario())


def test_a_repeated_read_runs_no_query_and_another_process_commit_is_seen_at_once(
    client: TestClient, pg: str, statements: Statements, probe: PostgresDataVersion
) -> None:
    with get_sessionmaker(pg)() as s:
        s.add(IndexerState(chain_id=31337, deployment_block=1, next_block=10, head_block=9))
        s.commit()
    for _ in range(QUIET_TRIES):
        before = read(probe)
        first = client.get("/api/v1/indexer")
        ran = statements.count
        again = client.get("/api/v1/indexer")
        if read(probe) == before:  # no commit anywhere on the server in between
            break
    else:
        pytest.fail(f"the server never stayed still for two requests in {QUIET_TRIES} tries")
    assert first.json()["next_block"] == 10 and again.content == first.content
    assert ran > 0 and statements.count == ran  # the second answered from the cache
    assert_indexer_status_follows_another_process(client, pg)


def test_concurrent_reads_after_a_commit_compute_once(
    client: TestClient, pg: str, statements: Statements
) -> None:
    """20 clients ask what nobody asked since a commit: one computes, all get its
    answer, which holds the commit. The computation is held until all 20 wait. A burst
    that another test run's commit split across two versions is tried again."""
    with get_sessionmaker(pg)() as s:
        s.add(node_row(1))
        s.commit()
    ran = statements.count
    assert [n["node_id"] for n in client.get("/api/v1/nodes", params={"limit": 50}).json()] == [1]
    per_computation = statements.count - ran

    with get_sessionmaker(pg)() as s:
        s.add(node_row(2))
        s.commit()
    cache: ReadCache = client.app.state.read_cache  # type: ignore[attr-defined]
    recording = cache._version  # noqa: SLF001 - the Recording the fixture put there
    assert isinstance(recording, Recording)
    for attempt in range(QUIET_TRIES):
        seen, ran, bodies = len(recording.seen), statements.count, burst(client, cache, attempt)
        assert all([n["node_id"] for n in b] == [1, 2] for b in bodies)
        if len(set(recording.seen[seen:])) == 1:
            break
    else:
        pytest.fail(f"no burst of 20 requests saw one data version in {QUIET_TRIES} tries")
    assert statements.count - ran == per_computation


def burst(client: TestClient, cache: ReadCache, attempt: int) -> list[Any]:
    """20 requests for a page nobody read yet, its computation held until all wait."""
    release = threading.Event()

    def hold(*_: Any) -> None:
        release.wait(10)

    engine = get_engine(str(client.app.state.settings.sqlalchemy_url))  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", hold)
    misses = cache.misses
    try:
        with ThreadPoolExecutor(20) as pool:
            answers = [
                pool.submit(client.get, "/api/v1/nodes", params={"limit": 60 + attempt})
                for _ in range(20)
            ]
            wait_for(lambda: cache.misses - misses >= 20, 10, "20 requests at the cache")
            release.set()
            return [a.result().json() for a in answers]
    finally:
        release.set()
        event.remove(engine, "before_cursor_execute", hold)


def test_sessions_are_bounded_by_the_slots_and_the_pool_never_waits(
    client: TestClient, pg: str
) -> None:
    """A burst of three times as many uncached requests (credentials bypass the cache)
    as there are session slots, each holding its session while held at the database:
    only the slot holders hold a connection, the rest wait for a slot without one, and
    all answer 200. With 4 slots instead of the API's 40: the shared server's
    max_connections is not this test's to fill."""

    async def limiter_tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(limiter_tokens) == API_THREADS  # what the sizes assume
    engine = get_engine(pg)
    assert engine.pool.size() == SERVER_POOL_SIZE == API_SESSION_SLOTS + API_THREADS
    app = client.app
    assert isinstance(app.state.session_slots, asyncio.Semaphore)  # type: ignore[attr-defined]
    slots = 4
    held = {"now": 0, "peak": 0}
    lock = threading.Lock()
    release = threading.Event()

    def checkout(*_: Any) -> None:
        with lock:
            held["now"] += 1
            held["peak"] = max(held["peak"], held["now"])

    def checkin(*_: Any) -> None:
        with lock:
            held["now"] -= 1

    def hold(*_: Any) -> None:
        release.wait(10)

    listeners = (("checkout", checkout), ("checkin", checkin), ("before_cursor_execute", hold))
    original = app.state.session_slots  # type: ignore[attr-defined]
    app.state.session_slots = asyncio.Semaphore(slots)  # type: ignore[attr-defined]
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        with ThreadPoolExecutor(3 * slots) as pool:
            answers = [
                pool.submit(client.get, "/api/v1/nodes", headers={"Authorization": "Bearer x"})
                for _ in range(3 * slots)
            ]
            wait_for(lambda: held["now"] >= slots, 10, "every slot holding a connection")
            release.set()
            statuses = [a.result().status_code for a in answers]
    finally:
        release.set()
        for name, fn in listeners:
            event.remove(engine, name, fn)
        app.state.session_slots = original  # type: ignore[attr-defined]
    assert statuses == [200] * (3 * slots)
    assert held["peak"] == slots


def test_for_url_picks_the_source_by_database() -> None:
    cache = ReadCache.for_url("postgresql+psycopg://u:p@db:5433/gpucap")
    assert cache is not None
    assert isinstance(cache._version, PostgresDataVersion)  # noqa: SLF001
    assert cache._version._conninfo == "postgresql://u:p@db:5433/gpucap"  # noqa: SLF001
    cache.close()  # never connected: nothing to close but the object
