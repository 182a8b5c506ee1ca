"""Health of each part the API depends on; every check is bounded by a short timeout.

Besides the parts (chain, Redis, database, worker, index), the work they exist for:
attestation (ended epochs the oracles have not attested, and for how long), the
oracles' own /health endpoints where configured, the epoch-settlement keeper's
progress (epochs behind, as its last run recorded it in Redis), the relayer's
oldest open action, and the actions a reorg re-opened (their transaction left the
chain; recorded in Redis by whoever re-opened them: the index run or a keeper).
Each is not ok when stale, so /health is not green while
attestation or settlement has stopped.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.services.chain import Chain
from backend.services.errors import ServiceError
from gpucap.deployment import ManifestError

Check = dict[str, Any]


@dataclass(frozen=True)
class WorkLimits:
    """When the work the parts exist for counts as stale (see the settings)."""

    max_attestation_lag_s: float | None = None  # default: two epoch lengths
    max_keeper_epochs_behind: int = 2
    max_keeper_age_s: float = 120.0
    max_pending_age_s: float = 300.0
    oracle_health_urls: list[str] = field(default_factory=list)


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
    work: WorkLimits | None = None,
) -> dict[str, Check]:
    """All checks at once; the whole thing takes about ``2 × timeout`` at worst."""
    work = work or WorkLimits()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {
            "attestation": pool.submit(check_attestation, get_chain, work.max_attestation_lag_s),
            "keeper": pool.submit(
                check_keeper,
                redis_url,
                timeout,
                max_epochs_behind=work.max_keeper_epochs_behind,
                max_age_s=work.max_keeper_age_s,
            ),
            "relayer": pool.submit(check_relayer, sessions, work.max_pending_age_s),
            "reorgs": pool.submit(
                check_reopened, sessions, redis_url, timeout, work.max_pending_age_s
            ),
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
        if work.oracle_health_urls:
            futures["oracles"] = pool.submit(check_oracles, work.oracle_health_urls, timeout)
        results: dict[str, Check] = {}
        for name, fut in futures.items():
            try:
                results[name] = fut.result(timeout=timeout * 3)
            except FutureTimeout:
                results[name] = {"ok": False, "detail": f"no answer within {timeout * 3}s"}
        results["worker"] = check_worker(celery, timeout, results["redis"]["ok"])
    return results


def check_attestation(get_chain: Callable[[], Chain], max_lag_seconds: float | None) -> Check:
    """Ended epochs not attested yet, and how long ago the oldest of them ended. Not ok
    past ``max_lag_seconds`` (default: two epoch lengths)."""
    try:
        chain = get_chain()
        hub = chain.contract("OracleHub")
        current, last, length, now = chain.call(
            "reading the attestation state",
            lambda: (
                int(hub.functions.currentEpoch().call()),
                int(hub.functions.lastAttestedEpoch().call()),
                int(hub.functions.epochLengthSeconds().call()),
                int(chain.w3.eth.get_block("latest")["timestamp"]),
            ),
        )
        waiting = max(0, current - 1 - last)  # epochs that ended and are not attested
        lag = 0
        if waiting:
            oldest_end = int(
                chain.call(
                    "reading an epoch's end", lambda: hub.functions.epochEnd(last + 1).call()
                )
            )
            lag = max(0, now - oldest_end)
    except (ServiceError, ManifestError) as exc:
        return {"ok": False, "detail": str(exc)}
    limit = max_lag_seconds if max_lag_seconds is not None else 2.0 * length
    ok = lag <= limit
    detail = (
        f"epoch {last} attested, none waiting"
        if not waiting
        else f"epoch {last} attested; {waiting} ended epoch(s) waiting, the oldest for {lag}s"
    )
    if not ok:
        detail += f" (stale: over {limit:.0f}s)"
    return {
        "ok": ok,
        "detail": detail,
        "last_attested_epoch": last,
        "current_epoch": current,
        "epochs_waiting": waiting,
        "lag_seconds": lag,
    }


def check_oracles(urls: list[str], timeout: float) -> Check:
    """Each oracle daemon's own /health (liveness, its last successful step, its lag)."""
    oracles = []
    for url in urls:
        try:
            resp = requests.get(url, timeout=timeout)
            body = resp.json()
            oracles.append(
                {
                    "url": url,
                    "ok": resp.status_code == 200,
                    "last_success_age_seconds": body.get("lastSuccessAgeSeconds"),
                    "reasons": body.get("reasons", []),
                    "last_error": body.get("lastError"),
                }
            )
        except (requests.RequestException, ValueError) as exc:
            oracles.append({"url": url, "ok": False, "reasons": [f"unreachable: {exc}"[:200]]})
    live = sum(1 for o in oracles if o["ok"])
    return {
        "ok": live == len(oracles),
        "detail": f"{live} of {len(oracles)} oracle(s) healthy",
        "oracles": oracles,
    }


KEEPER_KEY = "gpucap:health:epoch-keeper"


def record_keeper_progress(client: redis.Redis, plan: Any) -> None:
    """The settlement keeper's last run, for /health (best effort: Redis may be down)."""
    reasons = [*plan.rejected, *plan.waiting]
    record = {
        "at": time.time(),
        "epochs_behind": plan.epochs_behind,
        "enqueued": len(plan.actions),
        "waiting": len(plan.waiting),
        "rejected": len(plan.rejected),
        "first_reason": reasons[0][:300] if reasons else None,
    }
    with contextlib.suppress(redis.RedisError):  # /health then says the keeper is silent
        client.set(KEEPER_KEY, json.dumps(record), ex=86_400)


def check_keeper(url: str, timeout: float, *, max_epochs_behind: int, max_age_s: float) -> Check:
    """Not ok if the keeper has not run for ``max_age_s`` or trails by more epochs."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        raw = client.get(KEEPER_KEY)
    except redis.RedisError as exc:
        return {"ok": False, "detail": f"redis unreachable: {exc}"}
    finally:
        client.close()
    if raw is None:
        return {"ok": True, "detail": "the settlement keeper has not run yet", "epochs_behind": 0}
    record = json.loads(raw)
    age = time.time() - float(record["at"])
    behind = int(record["epochs_behind"])
    reasons = []
    if age > max_age_s:
        reasons.append(f"no run for {age:.0f}s")
    if behind > max_epochs_behind:
        reasons.append(f"{behind} epoch(s) behind")
    detail = f"{behind} epoch(s) behind, last run {age:.0f}s ago"
    if record.get("first_reason") and behind > 1:
        detail += f"; {record['first_reason']}"
    return {
        "ok": not reasons,
        "detail": detail,
        "epochs_behind": behind,
        "last_run_age_seconds": round(age, 1),
        "waiting": record.get("waiting", 0),
        "rejected": record.get("rejected", 0),
    }


def check_relayer(sessions: sessionmaker[Session], max_pending_age_s: float) -> Check:
    """The oldest open (pending or submitted) action: not ok once it waited too long."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from backend.db.models import OPEN_STATUSES, Action

    try:
        with sessions() as session:
            oldest, count = session.execute(
                select(func.min(Action.created_at), func.count()).where(
                    Action.status.in_(OPEN_STATUSES)
                )
            ).one()
    except SQLAlchemyError as exc:
        return {"ok": False, "detail": f"database error: {type(exc).__name__}"}
    if oldest is None:
        return {"ok": True, "detail": "nothing pending", "pending": 0, "oldest_pending_age_s": 0}
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - oldest).total_seconds()
    ok = age <= max_pending_age_s
    detail = f"{count} open action(s), the oldest for {age:.0f}s"
    if not ok:
        detail += f" (stale: over {max_pending_age_s:.0f}s)"
    return {"ok": ok, "detail": detail, "pending": count, "oldest_pending_age_s": round(age, 1)}


REOPENED_KEY = "gpucap:health:reopened-actions"
REOPENED_KEEP_S = 86_400.0  # a re-open is remembered this long (and counted while open)
REOPENED_RECENT_S = 3_600.0


def record_reopened(client: redis.Redis, ids: Sequence[str]) -> None:
    """Actions a reorg re-opened, with the time (best effort: Redis may be down; an
    action re-opened twice counts once, at its latest re-open)."""
    if not ids:
        return
    now = time.time()
    with contextlib.suppress(redis.RedisError):
        pipe = client.pipeline()
        pipe.zadd(REOPENED_KEY, dict.fromkeys(ids, now))
        pipe.zremrangebyscore(REOPENED_KEY, "-inf", now - REOPENED_KEEP_S)
        pipe.expire(REOPENED_KEY, int(REOPENED_KEEP_S))
        pipe.execute()


def check_reopened(
    sessions: sessionmaker[Session], url: str, timeout: float, max_open_age_s: float
) -> Check:
    """Actions re-opened after a reorg: how many in the last hour, how many are still
    open (not mined again yet). Not ok once one stays open ``max_open_age_s`` after its
    re-open: the reorg's work is not being redone."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from backend.db.models import OPEN_STATUSES, Action

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    now = time.time()
    try:
        reopened = {
            member.decode(): float(score)
            for member, score in client.zrangebyscore(
                REOPENED_KEY, now - REOPENED_KEEP_S, "+inf", withscores=True
            )
        }
    except redis.RedisError as exc:
        return {"ok": False, "detail": f"redis unreachable: {exc}"}
    finally:
        client.close()
    still_open: list[str] = []
    if reopened:
        try:
            with sessions() as session:
                still_open = list(
                    session.scalars(
                        select(Action.id).where(
                            Action.id.in_(reopened), Action.status.in_(OPEN_STATUSES)
                        )
                    )
                )
        except SQLAlchemyError as exc:
            return {"ok": False, "detail": f"database error: {type(exc).__name__}"}
    recent = sum(1 for at in reopened.values() if at >= now - REOPENED_RECENT_S)
    oldest = max((now - reopened[i] for i in still_open), default=0.0)
    ok = oldest <= max_open_age_s
    detail = (
        f"{recent} action(s) re-opened after a reorg in the last hour; {len(still_open)} still open"
    )
    if still_open:
        detail += f", the oldest re-opened {oldest:.0f}s ago"
    if not ok:
        detail += f" (stale: over {max_open_age_s:.0f}s)"
    return {
        "ok": ok,
        "detail": detail,
        "reopened_last_hour": recent,
        "reopened_open": len(still_open),
        "oldest_reopened_open_age_s": round(oldest, 1),
    }
