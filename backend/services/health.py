"""Health of each part the API depends on; every check is bounded by a short timeout."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.services.chain import Chain
from backend.services.errors import ServiceError
from gpucap.deployment import ManifestError

Check = dict[str, Any]


def check_database(sessions: sessionmaker[Session]) -> Check:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with sessions() as session:
            revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return {"ok": revision is not None, "detail": f"schema revision {revision}"}
    except SQLAlchemyError as exc:
        return {"ok": False, "detail": f"database error: {type(exc).__name__}: {exc}"[:300]}


def check_redis(url: str, timeout: float) -> Check:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return {"ok": True, "detail": "PONG"}
    except redis.RedisError as exc:
        return {"ok": False, "detail": f"redis unreachable: {exc}"}
    finally:
        client.close()


def check_chain(get_chain: Callable[[], Chain]) -> Check:
    try:
        chain = get_chain()
        chain_id = chain.check_chain_id()
        block = chain.call("eth_blockNumber", lambda: chain.w3.eth.block_number)
        return {"ok": True, "detail": "node answering", "chain_id": chain_id, "block": block}
    except (ServiceError, ManifestError) as exc:
        return {"ok": False, "detail": str(exc)}


def check_indexer(
    sessions: sessionmaker[Session], *, max_lag_blocks: int, max_age_s: float
) -> Check:
    """Reads are only as fresh as the index: not ok if it never ran, stopped, or trails."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from backend.db.models import IndexerState

    try:
        with sessions() as session:
            state = session.scalars(
                select(IndexerState).order_by(IndexerState.updated_at.desc())
            ).first()
    except SQLAlchemyError as exc:
        return {"ok": False, "detail": f"database error: {type(exc).__name__}"}
    if state is None:
        return {"ok": False, "detail": "the chain indexer has not run yet"}
    lag = max(0, state.head_block - (state.next_block - 1))
    age = (datetime.now(UTC) - state.updated_at).total_seconds()
    ok = lag <= max_lag_blocks and age <= max_age_s
    detail = f"{lag} block(s) behind, last run {age:.0f}s ago"
    return {"ok": ok, "detail": detail, "lag_blocks": lag, "next_block": state.next_block}


def check_worker(celery: Celery, timeout: float, redis_ok: bool) -> Check:
    if not redis_ok:
        return {"ok": False, "detail": "cannot reach workers: broker (Redis) is down"}
    try:
        replies = celery.control.ping(timeout=timeout)
    except (OperationalError, redis.RedisError, OSError) as exc:
        return {"ok": False, "detail": f"ping failed: {exc}"}
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return {
            "ok": False,
            "detail": f"no worker answered a ping within {timeout}s",
            "workers": [],
        }
    return {"ok": True, "detail": f"{len(names)} worker(s) answered", "workers": names}


def run_checks(
    *,
    sessions: sessionmaker[Session],
    redis_url: str,
    celery: Celery,
    get_chain: Callable[[], Chain],
    timeout: float,
    index_max_lag_blocks: int = 50,
    index_max_age_seconds: float = 60.0,
) -> dict[str, Check]:
    """All checks at once; the whole thing takes about ``2 × timeout`` at worst."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            "chain": pool.submit(check_chain, get_chain),
            "redis": pool.submit(check_redis, redis_url, timeout),
            "database": pool.submit(check_database, sessions),
            "indexer": pool.submit(
                check_indexer,
                sessions,
                max_lag_blocks=index_max_lag_blocks,
                max_age_s=index_max_age_seconds,
            ),
        }
        results: dict[str, Check] = {}
        for name, fut in futures.items():
            try:
                results[name] = fut.result(timeout=timeout * 3)
            except FutureTimeout:
                results[name] = {"ok": False, "detail": f"no answer within {timeout * 3}s"}
        results["worker"] = check_worker(celery, timeout, results["redis"]["ok"])
    return results
