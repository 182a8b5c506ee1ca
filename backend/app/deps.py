"""Dependencies as Annotated aliases, so routes read like their signatures."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import Annotated, Any, Protocol

import anyio
import redis
from celery import Celery
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.services import auth
from backend.services.chain import Chain
from backend.services.errors import AuthFailed, Forbidden
from backend.services.pricing.trades import MarkRule
from backend.services.relaying.client_limit import ClientLimit
from backend.services.relaying.relay_kick import ForwardKick
from backend.worker.celery_app import RELAY_TASK

log = logging.getLogger(__name__)


class Enqueuer(Protocol):
    def __call__(self, action_id: str, *, batched: bool = False) -> bool:
        """Wake a worker for the action; False (never an exception) if the queue is down.
        ``batched``: a forward action, relayed in a batch with the others pending."""


class CeleryEnqueuer:
    def __init__(self, celery: Celery, kick: ForwardKick | None = None) -> None:
        self.celery = celery
        self.kick = kick

    def __call__(self, action_id: str, *, batched: bool = False) -> bool:
        try:
            if batched and (kick := self.kick) is not None:
                # No task if one is queued: it claims this row with the others.
                kick.send_once(lambda: self._send(action_id, kick.window_seconds or None))
            else:
                self._send(action_id, None)
            return True
        except (OperationalError, RedisError, OSError) as exc:
            log.warning(
                "enqueue of action %s failed (%s); the sweep will pick it up", action_id, exc
            )
            return False

    def _send(self, action_id: str, countdown: float | None) -> None:
        # retry=False: a down Redis fails this request's enqueue at once; the row is
        # committed already and the sweep enqueues it later.
        self.celery.send_task(
            RELAY_TASK, args=[action_id], ignore_result=True, retry=False, countdown=countdown
        )


def forward_kick(settings: Settings) -> ForwardKick:
    """The API's side of the relay kick (one Redis connection pool per process)."""
    client = redis.Redis.from_url(
        settings.effective_redis_url, socket_connect_timeout=1.0, socket_timeout=3.0
    )
    return ForwardKick(client, window_seconds=settings.forward_batch_window_seconds)


def _limits_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.effective_redis_url, socket_connect_timeout=1.0, socket_timeout=3.0
    )


def faucet_client_limit(settings: Settings) -> ClientLimit:
    return ClientLimit(
        _limits_redis(settings),
        "faucet",
        settings.faucet_client_limit,
        settings.faucet_client_window_seconds,
    )


def permit_client_limit(settings: Settings) -> ClientLimit:
    """Strict: each relayed permit costs the relayer gas on whatever chain this is."""
    return ClientLimit(
        _limits_redis(settings),
        "permit",
        settings.permit_client_limit,
        settings.permit_client_window_seconds,
        strict=True,
    )


def client_address(request: Request) -> str:
    """Who a per-client limit counts: the connecting address, or the one a trusted proxy
    named (uvicorn's proxy headers, from GPUCAP_TRUSTED_PROXIES only)."""
    return request.client.host if request.client is not None else "unknown"


class ChainProvider:
    """Connects on first use (the manifest may appear after the API starts), then caches."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._chain: Chain | None = None
        self._lock = threading.Lock()

    @property
    def connected(self) -> Chain | None:
        """The chain if connected already (no I/O, no lock), else None."""
        return self._chain

    def __call__(self) -> Chain:
        with self._lock:
            if self._chain is None:
                s = self._settings
                self._chain = Chain.connect(
                    s.rpc_endpoints, str(s.manifest_path), s.rpc_timeout_seconds
                )
            return self._chain


# Dependencies that do no I/O are async: FastAPI runs a sync one in a worker thread,
# a hop per dependency per request. get_chain connects (I/O) in a thread on first use.


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, closed after the response is sent.

    On a server database the request first takes one of the process's session slots
    (``app.state.session_slots``), waiting for it here on the event loop, where it
    holds no thread and no connection: the pool is sized so that a slot holder's
    checkout never waits (``backend/db/session.py`` says why the numbers)."""
    slots: asyncio.Semaphore | None = request.app.state.session_slots
    async with slots if slots is not None else nullcontext():
        session = request.app.state.sessions()
        try:
            yield session
        finally:
            # close() returns the connection (a rollback: a round trip on a server): in
            # a thread, under a limiter of its own so that it never waits for one of
            # the route threads (the requests those serve may be waiting for this one's
            # slot or connection), as FastAPI runs a sync dependency's exit.
            await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


async def get_chain(request: Request) -> Chain:
    provider: ChainProvider = request.app.state.chain_provider
    return provider.connected or await run_in_threadpool(provider)


async def get_enqueuer(request: Request) -> Enqueuer:
    return request.app.state.enqueue  # type: ignore[no-any-return]


async def get_mark_rule(request: Request) -> MarkRule:
    """When a class's trades are enough to mark collateral to (the settings' mark_*)."""
    s: Settings = request.app.state.settings
    return MarkRule(
        lookback_seconds=s.mark_lookback_seconds,
        min_trades=s.mark_min_trades,
        min_volume=s.mark_min_volume,
        source=s.mark_price_source,
    )


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
MarkRuleDep = Annotated[MarkRule, Depends(get_mark_rule)]
SessionDep = Annotated[Session, Depends(get_session)]
ChainDep = Annotated[Chain, Depends(get_chain)]
EnqueueDep = Annotated[Enqueuer, Depends(get_enqueuer)]


# auto_error=False: a missing header is our 401 with a code, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="session token from POST /api/v1/auth/login")


def get_bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthFailed("sign in first: Authorization: Bearer <token>", code="Unauthorized")
    return credentials.credentials


def get_principal(
    request: Request,
    token: Annotated[str, Depends(get_bearer_token)],
    session: Annotated[Session, Depends(get_session)],
) -> auth.Principal:
    return auth.authenticate(session, token, request.app.state.settings.admins)


TokenDep = Annotated[str, Depends(get_bearer_token)]
PrincipalDep = Annotated[auth.Principal, Depends(get_principal)]


def require_role(role: str) -> Any:
    """A dependency that admits only sessions whose address holds ``role``."""

    def _check(principal: PrincipalDep) -> auth.Principal:
        if role not in principal.roles:
            raise Forbidden(
                f"{principal.address} does not hold the {role} role", code="RoleRequired"
            )
        return principal

    return Depends(_check)
