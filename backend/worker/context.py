"""What tasks need (database, chain, relayer), built once per worker process, lazily.

Lazily because the chain and the manifest may not be there yet when the worker
starts (the demo deploys first, but a worker must survive a node restart).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from backend.config import Settings
from backend.db.session import get_sessionmaker
from backend.services.chain import Chain
from backend.services.indexing.indexer import Indexer
from backend.services.relaying.relay_kick import ForwardKick
from backend.services.relaying.relayer import Relayer

_lock = threading.Lock()


@dataclass
class WorkerContext:
    settings: Settings

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return get_sessionmaker(self.settings.sqlalchemy_url)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.effective_redis_url, socket_connect_timeout=1.0, socket_timeout=5.0
        )

    @cached_property
    def forward_kick(self) -> ForwardKick:
        return ForwardKick(self.redis, window_seconds=self.settings.forward_batch_window_seconds)

    @cached_property
    def relayer(self) -> Relayer:
        s = self.settings
        chain = Chain.connect(s.rpc_endpoints, str(s.manifest_path), s.rpc_timeout_seconds)
        return Relayer(
            chain,
            s.relayer_private_key,
            self.redis,
            receipt_timeout=s.receipt_timeout_seconds,
            lock_seconds=s.nonce_lock_seconds,
            lease_seconds=s.lease_seconds,
            replace_after_seconds=s.replace_after_seconds,
            fee_bump_percent=s.fee_bump_percent,
        )

    @cached_property
    def indexer(self) -> Indexer:
        s = self.settings
        chain = Chain.connect(s.rpc_endpoints, str(s.manifest_path), s.rpc_timeout_seconds)
        return Indexer(
            chain,
            self.sessions,
            confirmations=s.index_confirmations,
            proofs_dir=s.proof_sources,
            leaf_retry_seconds=s.leaf_ingest_retry_seconds,
        )


def indexer_of(app: Celery) -> Indexer:
    ctx = context_of(app)
    with _lock:
        return ctx.indexer


def context_of(app: Celery) -> WorkerContext:
    with _lock:
        ctx = app.conf.get("gpucap_context")
        if ctx is None:
            ctx = WorkerContext(settings=app.conf["gpucap_settings"])
            app.conf["gpucap_context"] = ctx
            # Build the shared pieces under the lock (threads pool).
            _ = ctx.sessions, ctx.redis, ctx.forward_kick
        return ctx  # type: ignore[no-any-return]


def relayer_of(app: Celery) -> Relayer:
    ctx = context_of(app)
    with _lock:
        return ctx.relayer
