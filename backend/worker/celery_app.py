"""The Celery app factory, from Settings. The API uses it to enqueue (by task name,
so it never imports the tasks); ``backend.worker.main`` builds the worker's app.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from backend.config import Settings
from backend.worker import redis_broker

RELAY_TASK = "gpucap.relay_action"
SWEEP_TASK = "gpucap.sweep_stale_actions"
INDEX_TASK = "gpucap.index_chain"
SETTLE_TASK = "gpucap.settle_due"
SETTLE_EPOCHS_TASK = "gpucap.settle_epochs"

# Relay tasks (one per user action) stay on Celery's default queue; the beat's periodic
# tasks have their own. A worker consuming both takes from them in turn (kombu's Redis
# transport cycles its queues), so an index run waits for a free thread, not behind a
# backlog of a thousand relay tasks: on one queue it waited out its expiry and was
# dropped, and the index fell tens of seconds behind the chain during a burst. A
# deployment may also run a worker per queue (``python -m backend worker --queues``).
RELAY_QUEUE = "celery"
PERIODIC_QUEUE = "gpucap.periodic"
PERIODIC_TASKS = (SWEEP_TASK, INDEX_TASK, SETTLE_TASK, SETTLE_EPOCHS_TASK)


def create_celery(settings: Settings) -> Celery:
    url = settings.effective_redis_url
    app = Celery("gpucap", broker=url, backend=url)
    # Fail fast when Redis is down: the caller (API request, sweep) handles it.
    timeouts = {"socket_connect_timeout": 1.0, "socket_timeout": 3.0}
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=3600,
        timezone="UTC",
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # On broker loss, cancel running acks_late tasks so they are redelivered
        # (Celery 6's default); relay_action is idempotent, so that is safe.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=1.0,
        broker_transport_options={**timeouts, "visibility_timeout": 3600},
        result_backend_transport_options=timeouts,
        redis_socket_connect_timeout=1.0,
        redis_socket_timeout=3.0,
        beat_schedule_filename=str(settings.run_dir / "celerybeat-schedule"),
        beat_schedule={
            "sweep-stale-actions": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
            },
            "index-chain": {
                "task": INDEX_TASK,
                "schedule": settings.index_interval_seconds,
                # A busy worker must not build a backlog of index runs: each run
                # catches up on everything, so a late one is worthless.
                "options": {"expires": max(1.0, settings.index_interval_seconds * 3)},
            },
            "settle-due": {
                "task": SETTLE_TASK,
                "schedule": settings.settle_interval_seconds,
                "options": {"expires": max(1.0, settings.settle_interval_seconds * 3)},
            },
            "settle-epochs": {
                "task": SETTLE_EPOCHS_TASK,
                "schedule": settings.epoch_settle_interval_seconds,
                "options": {"expires": max(1.0, settings.epoch_settle_interval_seconds * 3)},
            },
        },
        worker_hijack_root_logger=False,
        task_queues=(Queue(RELAY_QUEUE), Queue(PERIODIC_QUEUE)),
        task_default_queue=RELAY_QUEUE,
        task_routes={name: {"queue": PERIODIC_QUEUE} for name in PERIODIC_TASKS},
    )
    if url.startswith("redis://"):
        # kombu's Redis transport, except that a channel of a closed connection
        # fails as a connection error, not an AttributeError that stops the
        # worker's reconnect after a Redis outage (see redis_broker.py). Plain
        # redis:// only: rediss:// and sentinel:// keep kombu's own transport
        # (kombu picks TLS defaults by the scheme name).
        app.conf.broker_transport = redis_broker.TRANSPORT
    app.conf["gpucap_settings"] = settings
    return app
