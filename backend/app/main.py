"""``create_app(settings)``: the FastAPI app (``python -m backend api`` serves it with uvicorn)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend.app.deps import (
    CeleryEnqueuer,
    ChainProvider,
    Enqueuer,
    faucet_client_limit,
    forward_kick,
    permit_client_limit,
)
from backend.app.errors import document_errors, install_error_handlers
from backend.app.read_cache import ReadCache, ReadCacheMiddleware
from backend.app.routers import api_router
from backend.config import Settings, get_settings
from backend.dashboard import mount_dashboard
from backend.db.migrate import upgrade_to_head
from backend.db.session import API_SESSION_SLOTS, get_sessionmaker, uses_session_slots
from backend.monitoring.api import install_metrics
from backend.services.relaying import forward
from backend.worker.celery_app import create_celery
from gpucap.deployment import Deployment, ManifestError
from gpucap.logs import configure_logging

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    enqueue: Enqueuer | None = None,
    migrate: bool = True,
    warm: bool = False,
) -> FastAPI:
    """Build the app. ``enqueue`` replaces the Celery enqueue (unit tests). ``warm``: do
    the process's one-off work before serving (``warm_up``; served processes do)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if migrate:
            upgrade_to_head(settings.sqlalchemy_url)
        if warm:
            warm_up(app, settings)
        if uses_session_slots(settings.sqlalchemy_url):
            # Made here, on the loop that serves (backend/db/session.py: why the count).
            app.state.session_slots = asyncio.Semaphore(API_SESSION_SLOTS)
        yield
        if app.state.read_cache is not None:
            app.state.read_cache.close()

    app = FastAPI(
        title="gpucap API",
        version="0.1.0",
        description="Relays user actions to gpucap's contracts and reports their status.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = get_sessionmaker(settings.sqlalchemy_url)
    app.state.session_slots = None  # server databases: set by the lifespan
    # Rendered read answers, valid while the database's data version stands (read_cache.py).
    app.state.read_cache = ReadCache.for_url(settings.sqlalchemy_url)
    app.state.celery = create_celery(settings)
    app.state.enqueue = enqueue or CeleryEnqueuer(app.state.celery, forward_kick(settings))
    app.state.chain_provider = ChainProvider(settings)
    app.state.faucet_limit = faucet_client_limit(settings)
    app.state.permit_limit = permit_client_limit(settings)
    # Hits are answered before routing; misses fall through to the cached routes.
    app.add_middleware(ReadCacheMiddleware)
    # Outermost (added last): it counts cache hits too.
    install_metrics(app, app.state.sessions)
    install_error_handlers(app)
    app.include_router(api_router)
    document_errors(app)
    mount_dashboard(app, settings)
    return app


def warm_up(app: FastAPI, settings: Settings) -> None:
    """What each API process does once, done before it serves: FastAPI's route tables
    (built on a router's first request: pydantic schemas for every route's parameters)
    and the OpenAPI schema, and the ABIs accepting a forward request reads (megabytes
    of build artifact, parsed once). Left to the first requests, a burst of them after
    a start queued behind a few hundred ms of it with the event loop held (`make
    bench`, figure 3). Local work only, no node or database: a manifest that is not
    there yet is left to the first request that needs it."""
    app.openapi()
    try:
        forward.load_abis(Deployment.load(settings.manifest_path))
    except (ManifestError, OSError, json.JSONDecodeError, KeyError) as exc:
        log.info("ABIs not loaded ahead (%s): the first forward request will", exc)


def create_served_app() -> FastAPI:
    """The app of one of several API processes (``python -m backend api --workers N``):
    settings from the environment, migrations already run by the parent. uvicorn starts
    it in a fresh interpreter, so it sets up logging as its parent did (gpucap.logs)."""
    configure_logging()
    return create_app(get_settings(), migrate=False, warm=True)
