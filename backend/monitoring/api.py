"""The API's ``GET /metrics``: requests by route and status, their latency, and the
actions gauges (monitoring/actions.py).

Labels are route templates (``/actions/{action_id}``), never raw paths: one series per
route whatever the ids. Several API processes (``--workers N``) share one port and a
scrape reaches one of them: they then write their samples to files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by
``python -m backend api``) and each answers for all.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.monitoring.actions import ActionsCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Reads answer in about a millisecond, relayed writes in tens; a slow node in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # 404s: no route, and no raw path as a label
OTHER = "other"  # /docs, /openapi.json, the dashboard's files
# Paths whose route template is remembered for read-cache hits (then forgotten at once).
MAX_REMEMBERED_PATHS = 10_000


class ApiMetrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        # Each app its own registry (tests build several apps in one process).
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gpucap_api_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gpucap_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.actions = ActionsCollector(sessions)

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        return generate_latest(registry) + generate_latest(_Only(self.actions))


class _Only(CollectorRegistry):
    def __init__(self, collector: Any) -> None:
        super().__init__(auto_describe=False)
        self.register(collector)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request). Outermost, so
    that read-cache hits (answered before routing) are counted under their route."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[str, str] = {}  # path -> route template, as routed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes is a 500 to the client

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self._route(scope)
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")  # set by the router when it ran
        if route is not None:
            # A route of an included router knows its path without the prefix; FastAPI
            # keeps the full one on the route's effective context.
            context = (scope.get("fastapi") or {}).get("effective_route_context")
            template = str(
                getattr(context, "path_format", None)
                or getattr(route, "path_format", None)
                or route.path
            )
            if len(self._templates) >= MAX_REMEMBERED_PATHS:
                self._templates.clear()
            self._templates[scope["path"]] = template
            return template
        # A read-cache hit never reaches the router; the entry it answered from was
        # filled by a routed request of this process for the same path.
        template = self._templates.get(scope["path"])
        if template is not None:
            return template
        # Starlette's own routes (/docs, the dashboard's static files) set no route.
        return OTHER if "endpoint" in scope else UNMATCHED


def install_metrics(app: FastAPI, sessions: sessionmaker[Session]) -> ApiMetrics:
    metrics = ApiMetrics(sessions)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics
