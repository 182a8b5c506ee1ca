"""The worker's ``GET /metrics`` (prometheus-client's HTTP server on
GPUCAP_WORKER_METRICS_PORT; off when unset): its tasks by name and outcome and their
duration, the relay latency of the actions it finished (monitoring/relay.py), the index
lag it last saw, the broker's queue depth, and the actions gauges (monitoring/actions.py).

One worker process, one registry: the threads pool runs every task in this process.
Several worker processes on one host each get their own port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.actions import ActionsCollector
from backend.monitoring.relay import RELAY_SECONDS

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(RELAY_SECONDS)
TASKS = Counter(
    "gpucap_worker_tasks",
    "Tasks run, by name and outcome (success, failure, retry; or what a periodic task "
    "said: busy, unavailable)",
    ["task", "outcome"],
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "gpucap_worker_task_duration_seconds",
    "Time a task ran, by name",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
INDEX_LAG = Gauge(
    "gpucap_index_lag_blocks",
    "Blocks between the node's head and the last block indexed (at the last index run)",
    registry=REGISTRY,
)
INDEXED_BLOCK = Gauge(
    "gpucap_indexed_block", "Last block indexed (at the last index run)", registry=REGISTRY
)
# What a periodic task returns when it did not do its work: an outcome of its own.
_SAID = frozenset({"busy", "unavailable", "retry"})
# kombu's Redis transport keeps a queue as one list per priority step.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

_started: dict[str, float] = {}
_lock = threading.Lock()


@task_prerun.connect
def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        with _lock:
            _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_ended(
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    name = getattr(task, "name", "unknown")
    if state == "SUCCESS":
        outcome = retval if isinstance(retval, str) and retval in _SAID else "success"
    else:
        outcome = (state or "unknown").lower()
    TASKS.labels(name, outcome).inc()
    with _lock:
        start = _started.pop(task_id, None) if task_id is not None else None
    if start is not None:
        TASK_SECONDS.labels(name).observe(time.perf_counter() - start)


def observe_index(head_block: int, to_block: int) -> None:
    """After an index run: how far behind the head it is."""
    INDEX_LAG.set(max(0, head_block - to_block))
    INDEXED_BLOCK.set(to_block)


class QueueCollector(Collector):
    """``gpucap_queue_depth{queue}`` (messages waiting) and ``gpucap_queue_unacked``
    (taken by a worker, not yet acknowledged), read from the broker at scrape time.
    A broker that does not answer gives no samples."""

    def __init__(self, client: redis.Redis, queues: tuple[str, ...]) -> None:
        self._client = client
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for queue in self._queues:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            pipe.hlen("unacked")
            answers = pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("metrics: queue depth not read (%s)", exc)
            return
        depth = GaugeMetricFamily(
            "gpucap_queue_depth", "Task messages waiting in the broker", labels=["queue"]
        )
        n = len(_PRIORITY_SUFFIXES)
        for i, queue in enumerate(self._queues):
            depth.add_metric([queue], sum(answers[i * n : (i + 1) * n]))
        yield depth
        unacked = GaugeMetricFamily(
            "gpucap_queue_unacked", "Task messages a worker holds, not yet acknowledged"
        )
        unacked.add_metric([], answers[-1])
        yield unacked


def serve(
    port: int,
    host: str,
    sessions: sessionmaker[Session],
    broker: redis.Redis,
    queues: tuple[str, ...],
) -> None:
    """Start the /metrics HTTP server (a daemon thread) for this worker process."""
    REGISTRY.register(ActionsCollector(sessions))
    REGISTRY.register(QueueCollector(broker, queues))
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
