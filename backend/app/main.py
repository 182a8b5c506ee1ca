"""``create_app(settings)``: the FastAPI app (``python -m backend api`` serves it with uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend.app.deps import (
    CeleryEnqueuer,
    ChainProvider,
    Enqueuer,
    faucet_client_limit,
    forward_kick,
)
from backend.app.errors import document_errors, install_error_handlers
from backend.app.read_cache import ReadCache, ReadCacheMiddleware
from backend.app.routers import api_router
from backend.config import Settings, get_settings
from backend.dashboard import mount_dashboard
from backend.db.migrate import upgrade_to_head
from backend.db.session import get_sessionmaker
from backend.monitoring.api import install_metrics
from backend.worker.celery_app import create_celery
from gpucap.logs import configure_logging


def create_app(
    settings: Settings | None = None, *, enqueue: Enqueuer | None = None, migrate: bool = True
) -> FastAPI:
    """Build the app. ``enqueue`` replaces the Celery enqueue (unit tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if migrate:
            upgrade_to_head(settings.sqlalchemy_url)
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
    # Rendered read answers, valid while the database's data version stands (read_cache.py).
    app.state.read_cache = ReadCache.for_url(settings.sqlalchemy_url)
    app.state.celery = create_celery(settings)
    app.state.enqueue = enqueue or CeleryEnqueuer(app.state.celery, forward_kick(settings))
    app.state.chain_provider = ChainProvider(settings)
    app.state.faucet_limit = faucet_client_limit(settings)
    # Hits are answered before routing; misses fall through to the cached routes.
    app.add_middleware(ReadCacheMiddleware)
    # Outermost (added last): it counts cache hits too.
    install_metrics(app, app.state.sessions)
    install_error_handlers(app)
    app.include_router(api_router)
    document_errors(app)
    mount_dashboard(app, settings)
    return app


def create_served_app() -> FastAPI:
    """The app of one of several API processes (``python -m backend api --workers N``):
    settings from the environment, migrations already run by the parent. uvicorn starts
    it in a fresh interpreter, so it sets up logging as its parent did (gpucap.logs)."""
    configure_logging()
    return create_app(get_settings(), migrate=False)
