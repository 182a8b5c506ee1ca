"""The worker's Celery app: ``celery -A backend.worker.main:app worker``.

Also runs one sweep as soon as the worker is ready, so actions left open by a
crash or a Redis outage move on without waiting for the first beat tick. That
sweep takes every open action, however recently it was enqueued: a task held by
a worker killed a moment ago sits unacknowledged in Redis until the broker's
visibility timeout (an hour), and waiting for the periodic sweep's staleness
threshold is waiting for nothing. A duplicate wake-up of an action another worker
is relaying is harmless (the relay task is idempotent).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_ready
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from backend.config import get_settings
from backend.monitoring import worker as worker_metrics
from backend.worker import tasks
from backend.worker.celery_app import PERIODIC_QUEUE, RELAY_QUEUE, create_celery
from backend.worker.context import context_of
from gpucap.logs import configure_logging

log = logging.getLogger(__name__)

_settings = get_settings()
_settings.run_dir.mkdir(parents=True, exist_ok=True)
app = create_celery(_settings)


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery leaves logging to this receiver (it then adds no handler of its own and
    redirects no output): the worker and beat log as every gpucap process does, at the
    level of their ``--loglevel``."""
    configure_logging(level=loglevel)


@worker_ready.connect
def _sweep_at_start(sender: Any = None, **_: Any) -> None:
    try:
        ids = tasks.run_sweep(app, older_than_seconds=0)
        log.info("start-up sweep re-enqueued %d action(s)", len(ids))
    except (RedisError, OperationalError) as exc:
        log.warning("start-up sweep could not enqueue (%s); beat will retry", exc)


@worker_ready.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    port = _settings.worker_metrics_port
    if port is None:
        return
    ctx = context_of(app)
    worker_metrics.serve(
        port,
        _settings.worker_metrics_host,
        ctx.sessions,
        ctx.redis,
        (RELAY_QUEUE, PERIODIC_QUEUE),
    )
