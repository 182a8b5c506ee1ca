"""A cache of rendered read responses that is never staler than the database's last
commit, but for the few milliseconds its new answer is being computed.

Read routes (``routers/reads.py``) answer from the chain index, which only changes
when a writer (the worker's indexer, or anything else) commits. Many clients ask
the same questions between two index runs (a dashboard polls ``/nodes``,
``/offers``, ``/indexer``), so a hit skips the thread hop, the session, the query
and the serialization, and is answered on the event loop.

Correctness rests on a *data version* read before the route runs: an entry
computed under version ``v`` is served only while the database still reports
``v``. The route's own read starts after ``v`` was read, so it saw every commit
``v`` stands for; and an unchanged version means no commit since. A commit
anywhere in the database (any table, any process) bumps it, so the cache can be
emptied more often than needed, never kept as current past a commit.

Where the version comes from (``data_version.py``): ``PRAGMA data_version`` on a
SQLite file, asked on every request (microseconds); ``pg_current_snapshot()`` on
PostgreSQL, one round trip shared by the requests that arrive while the one before
is on the wire. Other databases have no such version: there the cache is off
(``for_url`` returns ``None``) and every read runs its query.

What may use it: a GET route whose answer is a function of the request's path and
query and of the database only (no clock, no chain call, no caller identity).
When an entry is missing, one request per (path, query, version) computes it
(single flight): after each indexer commit, 200 clients polling 7 routes cost 7
queries, not 200. The others asking the same meanwhile get the answer of the
version before (stale-while-revalidate, RFC 5861), where the cache holds one, and
wait for the new one only where it holds none: an answer at most one change
behind, for at most one computation, instead of a queue behind every commit (the
indexer commits every couple of seconds, and the requests arriving while the
answers were recomputed were the whole of the read latency's tail). The request
that computes, and so any client reading after a commit it waited for, sees the
commit. Computations run one at a time per process: each runs in a thread that
takes turns with the event loop at the GIL, and several at once made every hit
wait behind all of them.

Requests that carry credentials (``Authorization``, ``Cookie``) always bypass
it, as a shared HTTP cache would (RFC 9111 section 3.5); so do non-200 answers.

Two halves: ``CachedReadRoute`` fills the cache (it knows which routes may be
cached) and answers misses with single flight; ``ReadCacheMiddleware`` answers
hits at the ASGI layer, before routing, dependency injection and the request
object exist. A hit is then one dict lookup and one version read: at 200 clients
polling, that is most requests, and the per-request cost of the framework (~0.3 ms
on this machine) was most of what they paid. The version the middleware read is kept
in the request's scope, and a miss's route uses it: one version read per request.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.app import data_version
from backend.app.data_version import Version

MAX_ENTRIES = 1024
MAX_BODY_BYTES = 1 << 20  # a page of 1,000 rows fits; anything larger is not kept
_BYPASS_HEADERS = (b"authorization", b"cookie")
# Where the middleware leaves the version it read for the route (same request).
_SCOPE_VERSION = "gpucap.read_cache.version"


@dataclass(frozen=True, slots=True)
class _Entry:
    body: bytes
    media_type: str | None

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-length", str(len(self.body)).encode())]
        if self.media_type is not None:
            headers.append((b"content-type", self.media_type.encode("latin-1")))
        return headers


def cache_key(scope: Scope) -> tuple[str, str]:
    """(path, query) of a request: the same key for the route that fills the cache and
    the middleware that answers from it."""
    return scope["path"], scope["query_string"].decode("latin-1")


def _bypasses(scope: Scope) -> bool:
    return any(name in _BYPASS_HEADERS for name, _ in scope["headers"])


class ReadCache:
    """Rendered 200 answers by (path, query), valid for one data version at a time."""

    def __init__(
        self,
        version: Callable[[], Awaitable[Version | None] | Version | None],
        *,
        max_entries: int = MAX_ENTRIES,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._version = version
        self._max_entries = max_entries
        self._max_body_bytes = max_body_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._entries_version: Version | None = None
        # The version before's answers: served only while the current one is computed.
        self._previous: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        # Entries being computed, by (key, version): followers await the leader's.
        self._inflight: dict[tuple[tuple[str, str], Version], asyncio.Future[_Entry | None]] = {}
        # One computation at a time per process (see ``get_or_compute``).
        self._computing = asyncio.Semaphore(1)
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_url(cls, url: str) -> ReadCache | None:
        """A cache for a database with a data version (``data_version.for_url``); None
        (no cache) for any other."""
        source = data_version.for_url(url)
        return None if source is None else cls(source)

    async def current_version(self) -> Version | None:
        """Ask the database; entries of any other version are dropped."""
        version = self._version()  # a plain function (tests) answers inline
        return self.observe(await version if inspect.isawaitable(version) else version)

    def observe(self, version: Version | None) -> Version | None:
        """Take ``version``, just read, as current: entries of any other are dropped."""
        with self._lock:
            if version != self._entries_version:
                self._previous = dict(self._entries) if version is not None else {}
                self._entries = OrderedDict()
                self._entries_version = version
        return version

    def refreshing(self, key: tuple[str, str], version: Version) -> _Entry | None:
        """The previous version's answer for ``key`` while a request computes the answer
        for ``version``; None when nobody computes it or there is no previous answer."""
        if (key, version) not in self._inflight:
            return None
        with self._lock:
            return self._previous.get(key) if version == self._entries_version else None

    def get(self, key: tuple[str, str], version: Version) -> Response | None:
        entry = self.lookup(key, version)
        return None if entry is None else Response(entry.body, media_type=entry.media_type)

    def lookup(
        self, key: tuple[str, str], version: Version, *, count_miss: bool = True
    ) -> _Entry | None:
        """The entry for ``key`` computed under ``version``, if any (counted as hit/miss;
        the middleware's miss is not counted: the route looks again and counts it)."""
        with self._lock:
            entry = self._entries.get(key) if version == self._entries_version else None
            if entry is None:
                self.misses += count_miss
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def put(self, key: tuple[str, str], version: Version, response: Response) -> _Entry | None:
        """Keep a 200 answer computed after ``version`` was read, if still current.

        Returns the entry kept, None if the answer is not cacheable or already stale.
        """
        if response.status_code != 200 or response.background is not None:
            return None
        body = getattr(response, "body", None)  # streaming responses have none
        if not isinstance(body, bytes) or len(body) > self._max_body_bytes:
            return None
        entry = _Entry(body, response.media_type)
        with self._lock:
            if version != self._entries_version:
                return None  # a commit landed meanwhile: the next request recomputes
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return entry

    async def get_or_compute(
        self,
        key: tuple[str, str],
        version: Version,
        compute: Callable[[], Awaitable[Response]],
    ) -> Response:
        """The cached answer, else the one a request already computing it gets, else compute.

        Event-loop only (the futures belong to the running loop).
        """
        hit = self.get(key, version)
        if hit is not None:
            return hit
        flight = (key, version)
        leader = self._inflight.get(flight)
        if leader is not None:
            stale = self.refreshing(key, version)
            if stale is not None:
                return Response(stale.body, media_type=stale.media_type)
            entry = await asyncio.shield(leader)
            if entry is not None:
                return Response(entry.body, media_type=entry.media_type)
            return await compute()  # the leader's answer was not cacheable (or it failed)
        future: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        try:
            # Leaders compute one after another. After a commit every route's first
            # request leads; run side by side, their threads and the event loop (which
            # answers every hit) took turns at the GIL, and a hit waited a switch
            # interval (5 ms) per thread ahead of it: that queue was the p99. One at a
            # time, a hit waits behind one computation at most, and the answers are
            # back no later in total (they share one core's worth of GIL either way).
            async with self._computing:
                response = await compute()
            future.set_result(self.put(key, version, response))
            return response
        finally:
            if not future.done():  # compute raised or was cancelled: followers compute
                future.set_result(None)
            del self._inflight[flight]

    def close(self) -> None:
        close = getattr(self._version, "close", None)
        if close is not None:
            close()


class CachedReadRoute(APIRoute):
    """An APIRoute whose GET answers go through ``app.state.read_cache`` (if set).

    Use as ``APIRouter(route_class=CachedReadRoute)`` for routers whose GET routes
    fit the rule in this module's docstring.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        if "GET" not in self.methods:
            return handler

        async def cached_handler(request: Request) -> Response:
            cache: ReadCache | None = getattr(request.app.state, "read_cache", None)
            if cache is None or request.method != "GET" or _bypasses(request.scope):
                return await handler(request)
            # The middleware's read for this request (before routing), else one now.
            if _SCOPE_VERSION in request.scope:
                version = request.scope[_SCOPE_VERSION]
            else:
                version = await cache.current_version()
            if version is None:
                return await handler(request)
            key = cache_key(request.scope)
            return await cache.get_or_compute(key, version, lambda: handler(request))

        return cached_handler


class ReadCacheMiddleware:
    """Answers a GET from ``app.state.read_cache`` before routing when it holds the
    answer for the database's current version; everything else goes on to the app.

    Only entries a ``CachedReadRoute`` put there can be hit, so the middleware needs no
    list of cacheable paths: a path no cached route serves never has an entry. A miss
    costs the version probe, which the route then reuses (same request, same version
    or a newer one: either way never staler than the database).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or _bypasses(scope):
            await self.app(scope, receive, send)
            return
        cache: ReadCache | None = getattr(scope["app"].state, "read_cache", None)
        version = None if cache is None else await cache.current_version()
        scope[_SCOPE_VERSION] = version
        entry = (
            None
            if cache is None or version is None
            else cache.lookup(cache_key(scope), version, count_miss=False)
        )
        if entry is None and cache is not None and version is not None:
            entry = cache.refreshing(cache_key(scope), version)
        if entry is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": entry.raw_headers})
        await send({"type": "http.response.body", "body": entry.body})
