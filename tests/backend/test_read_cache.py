"""The read cache never answers from a state older than the database's last commit.

The app runs in-process (TestClient) on a migrated SQLite file; writes come from
other connections, one of them another process, as the worker's indexer does.
Whether an answer was cached is seen from the SQL the API's engine executed.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Response
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import QueuePool

from backend.app.main import create_app
from backend.app.read_cache import ReadCache
from backend.config import Settings
from backend.db.models import IndexerState
from backend.db.session import SQLITE_POOL_SIZE, get_engine, get_sessionmaker
from gpucap import devchain
from tests.backend.backend_helpers import assert_indexer_status_follows_another_process, node_row

OPERATOR = "0x000000000000000000000000000000000000dEaD"
ROOT = Path(__file__).resolve().parents[2]
PRAGMAS = ("journal_mode", "synchronous", "busy_timeout")


class Statements:
    """Counts SQL statements the API's engine executes."""

    def __init__(self, url: str) -> None:
        self.count = 0
        self._engine = get_engine(url)
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "api.db"


@pytest.fixture
def client(db_path: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        run_dir=tmp_path,
        database_url=f"sqlite:///{db_path}",
        redis_url=f"redis://127.0.0.1:{devchain.free_port()}/0",
    )
    app = create_app(settings, enqueue=lambda _action, **_: True)
    with TestClient(app) as c:  # the lifespan migrates the file
        # The API's first connection turns the fresh file to WAL (session.py's
        # pragmas), a change like any commit: done here, not in the middle of a test.
        with get_engine(settings.sqlalchemy_url).connect():
            pass
        yield c


@pytest.fixture
def writer(db_path: Path, client: TestClient) -> Any:
    """Sessions on the same engine as the API's (other connections than the probe's)."""
    return get_sessionmaker(f"sqlite:///{db_path}")


@pytest.fixture
def statements(db_path: Path, client: TestClient) -> Iterator[Statements]:
    counter = Statements(f"sqlite:///{db_path}")
    yield counter
    counter.remove()


def test_a_repeated_read_runs_no_query_until_a_commit(
    client: TestClient, writer: Any, statements: Statements
) -> None:
    with writer() as s:
        s.add(node_row(1))
        s.commit()
    first = client.get("/api/v1/nodes")
    assert [n["node_id"] for n in first.json()] == [1]
    ran = statements.count
    assert ran > 0

    again = client.get("/api/v1/nodes")
    assert again.content == first.content
    assert statements.count == ran  # answered from the cache

    with writer() as s:
        s.add(node_row(2))
        s.commit()
    after = client.get("/api/v1/nodes")
    assert [n["node_id"] for n in after.json()] == [1, 2]
    assert statements.count > ran


def test_a_hit_is_answered_before_routing_with_the_same_answer(
    client: TestClient, writer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with writer() as s:
        s.add(node_row(1))
        s.commit()
    first = client.get("/api/v1/nodes")
    routed: list[str] = []
    router = client.app.router  # type: ignore[attr-defined]
    original = type(router).__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(type(router), "__call__", counting)
    again = client.get("/api/v1/nodes")
    assert routed == []  # ReadCacheMiddleware answered
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert int(again.headers["content-length"]) == len(first.content)

    # A miss (another query) and a credentialed request go on to the routes.
    client.get("/api/v1/nodes", params={"limit": 1})
    client.get("/api/v1/nodes", headers={"Authorization": "Bearer someone"})
    assert routed == ["/api/v1/nodes", "/api/v1/nodes"]


def test_a_commit_from_another_process_is_seen_at_once(
    client: TestClient, writer: Any, db_path: Path
) -> None:
    with writer() as s:
        s.add(IndexerState(chain_id=31337, deployment_block=1, next_block=10, head_block=9))
        s.commit()
    assert client.get("/api/v1/indexer").json()["next_block"] == 10
    assert client.get("/api/v1/indexer").json()["next_block"] == 10  # cached now
    assert_indexer_status_follows_another_process(client, f"sqlite:///{db_path}")


def test_a_rolled_back_write_keeps_the_cached_answer(
    client: TestClient, db_path: Path, statements: Statements
) -> None:
    client.get("/api/v1/nodes")
    ran = statements.count
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO nodes (node_id, operator, class_id, gpu_count, region, node_key, "
        "acquisition_cost, acquired_at, status, bonded, locked, slashed, registered_block) "
        f"VALUES (7, '{OPERATOR}', 1, 8, 'eu-west', '0x07', 1, 1, 'active', 0, 0, 0, 1)"
    )
    conn.rollback()
    conn.close()
    assert client.get("/api/v1/nodes").json() == []
    assert statements.count == ran


def test_each_path_and_query_is_its_own_entry(client: TestClient, writer: Any) -> None:
    with writer() as s:
        s.add_all([node_row(1, gpus=4), node_row(2, gpus=8)])
        s.commit()
    assert [n["node_id"] for n in client.get("/api/v1/nodes", params={"limit": 1}).json()] == [1]
    assert [n["node_id"] for n in client.get("/api/v1/nodes").json()] == [1, 2]
    assert client.get("/api/v1/nodes/2").json()["gpu_count"] == 8
    page2 = client.get("/api/v1/nodes", params={"limit": 1, "offset": 1}).json()
    assert [n["node_id"] for n in page2] == [2]


def test_errors_and_credentialed_requests_are_never_cached(
    client: TestClient, writer: Any, statements: Statements
) -> None:
    assert client.get("/api/v1/nodes/5").status_code == 404
    ran = statements.count
    assert client.get("/api/v1/nodes/5").json()["code"] == "NodeNotFound"
    assert statements.count > ran  # a 404 is recomputed

    assert client.get("/api/v1/nodes").status_code == 200
    ran = statements.count
    client.get("/api/v1/nodes", headers={"Authorization": "Bearer someone"})
    assert statements.count > ran
    ran = statements.count
    client.get("/api/v1/nodes", cookies={"session": "someone"})
    assert statements.count > ran


def test_an_answer_computed_across_a_commit_is_not_kept() -> None:
    versions = iter([1, 2, 2])
    cache = ReadCache(lambda: next(versions))
    before = asyncio.run(cache.current_version())  # read before the route ran
    assert before == 1
    assert asyncio.run(cache.current_version()) == 2  # a commit landed while it ran
    cache.put(("/api/v1/nodes", ""), before, Response(b"[]", media_type="application/json"))
    assert cache.get(("/api/v1/nodes", ""), 2) is None


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache = ReadCache(lambda: 1, max_entries=2, max_body_bytes=8)
    v = asyncio.run(cache.current_version())
    assert v == 1
    for name in ("a", "b"):
        cache.put((name, ""), v, Response(b"1", media_type="application/json"))
    assert cache.get(("a", ""), v) is not None  # a is now the most recent
    cache.put(("c", ""), v, Response(b"1", media_type="application/json"))
    assert cache.get(("b", ""), v) is None
    assert cache.get(("a", ""), v) is not None and cache.get(("c", ""), v) is not None
    cache.put(("big", ""), v, Response(b"123456789", media_type="application/json"))
    assert cache.get(("big", ""), v) is None


def test_no_cache_without_a_data_version() -> None:
    """No SQLite file, no PostgreSQL (test_servers_read_cache.py): no cache."""
    assert ReadCache.for_url("mysql+pymysql://u:p@db/gpucap") is None
    assert ReadCache.for_url("sqlite://") is None
    assert ReadCache.for_url("sqlite:///:memory:") is None


def test_sqlite_pool_reuses_connections_and_never_makes_a_session_wait(tmp_path: Path) -> None:
    """More sessions holding connections at once than the pool keeps: none waits."""
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    engine = get_engine(url)
    assert isinstance(engine.pool, QueuePool)
    held = [engine.connect() for _ in range(SQLITE_POOL_SIZE + 20)]
    try:
        assert all(c.execute(text("SELECT 1")).scalar() == 1 for c in held)
    finally:
        for c in held:
            c.close()
    assert engine.pool.checkedin() == SQLITE_POOL_SIZE  # kept for reuse, extras closed


def test_sqlite_runs_wal_and_a_killed_process_loses_no_commit(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL (no fsync per commit): what a process committed
    survives that process being killed before it closes anything."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    with get_engine(url).connect() as conn:
        pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in PRAGMAS]
    assert pragmas == ["wal", 1, 5000]  # synchronous: 1 = NORMAL
    writer = textwrap.dedent(
        f"""
        import os, signal
        from sqlalchemy import text
        from backend.db.session import get_engine
        engine = get_engine({url!r})
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1), (2)"))
            conn.commit()
            conn.execute(text("INSERT INTO t VALUES (3)"))  # not committed
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", writer], cwd=ROOT, check=False)
    assert done.returncode == -signal.SIGKILL
    fresh = create_engine(url)  # a new engine, as a restarted process has
    with fresh.connect() as conn:
        assert conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 2]
    fresh.dispose()


def test_concurrent_misses_compute_once_and_a_failed_leader_lets_followers_compute() -> None:
    async def scenario() -> None:
        cache = ReadCache(lambda: 1)
        v = await cache.current_version()
        assert v == 1
        release = asyncio.Event()
        computed: list[str] = []

        async def compute(body: bytes, fail: bool = False) -> Response:
            computed.append(body.decode())
            await release.wait()
            if fail:
                raise RuntimeError("database went away")
            return Response(body, media_type="application/json")

        key = ("/api/v1/nodes", "")
        tasks = [asyncio.create_task(cache.get_or_compute(key, v, lambda: compute(b"[1]")))]
        tasks += [
            asyncio.create_task(cache.get_or_compute(key, v, lambda: compute(b"[2]")))
            for _ in range(9)
        ]
        await asyncio.sleep(0)
        release.set()
        assert [t.body for t in await asyncio.gather(*tasks)] == [b"[1]"] * 10
        assert computed == ["[1]"]

        computed.clear()
        release.clear()
        other = ("/api/v1/offers", "")
        leader = asyncio.create_task(
            cache.get_or_compute(other, v, lambda: compute(b"x", fail=True))
        )
        await asyncio.sleep(0)
        follower = asyncio.create_task(cache.get_or_compute(other, v, lambda: compute(b"[3]")))
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(RuntimeError):
            await leader
        assert (await follower).body == b"[3]"
        assert computed == ["x", "[3]"]

    asyncio.run(scenario())


def test_leaders_of_different_routes_compute_one_at_a_time() -> None:
    """After a commit each route's first request computes its answer: one computation at
    a time per process, in arrival order, each getting its own route's answer."""

    async def scenario() -> None:
        cache = ReadCache(lambda: 1)
        v = await cache.current_version()
        assert v == 1
        running: list[str] = []
        overlap: list[tuple[str, ...]] = []
        started: list[str] = []

        async def compute(path: str) -> Response:
            started.append(path)
            running.append(path)
            overlap.append(tuple(running))
            await asyncio.sleep(0.01)  # the route's thread, in the real app
            running.remove(path)
            return Response(path.encode(), media_type="application/json")

        paths = [f"/api/v1/{name}" for name in ("nodes", "offers", "epochs", "indexer")]
        answers = await asyncio.gather(
            *(cache.get_or_compute((p, ""), v, lambda p=p: compute(p)) for p in paths)
        )
        assert [a.body.decode() for a in answers] == paths
        assert started == paths
        assert all(len(now) == 1 for now in overlap), overlap

    asyncio.run(scenario())


def test_while_a_new_answer_is_computed_others_get_the_previous_one() -> None:
    """Stale-while-revalidate, bounded: the request computing the new version's answer
    gets it; requests meanwhile get the version before's answer at once; after the
    computation everyone gets the new one. With no previous answer, they wait."""

    async def scenario() -> None:
        versions = {"now": 1}
        cache = ReadCache(lambda: versions["now"])
        key = ("/api/v1/nodes", "")
        release = asyncio.Event()

        async def compute(body: bytes) -> Response:
            await release.wait()
            return Response(body, media_type="application/json")

        release.set()
        v1 = await cache.current_version()
        assert (await cache.get_or_compute(key, v1, lambda: compute(b"[1]"))).body == b"[1]"

        versions["now"] = 2  # a commit
        release.clear()
        v2 = await cache.current_version()
        assert cache.refreshing(key, v2) is None  # nobody computes yet: a request computes
        leader = asyncio.create_task(cache.get_or_compute(key, v2, lambda: compute(b"[1,2]")))
        await asyncio.sleep(0)
        follower = await cache.get_or_compute(key, v2, lambda: compute(b"never"))
        assert follower.body == b"[1]"  # at once, the answer of version 1
        assert cache.refreshing(key, v2).body == b"[1]"  # what the middleware serves
        release.set()
        assert (await leader).body == b"[1,2]"
        assert cache.refreshing(key, v2) is None
        assert cache.get(key, v2).body == b"[1,2]"

        # Two changes on, nothing of version 1 is served any more.
        versions["now"] = 3
        release.clear()
        v3 = await cache.current_version()
        versions["now"] = 4
        v4 = await cache.current_version()
        leader = asyncio.create_task(cache.get_or_compute(key, v4, lambda: compute(b"[4]")))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(cache.get_or_compute(key, v4, lambda: compute(b"no")))
        await asyncio.sleep(0)
        assert not waiting.done() and v3 == 3  # no answer of version 3 to give: it waits
        release.set()
        assert (await leader).body == (await waiting).body == b"[4]"

    asyncio.run(scenario())
