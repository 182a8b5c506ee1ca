"""The Celery app: its queues, and the worker's Redis transport (a channel of a closed
broker connection fails as a connection error, which Celery's reconnect path handles:
backend/worker/redis_broker.py)."""

from __future__ import annotations

import pytest
from kombu import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.redis_embedded import EmbeddedRedis
from backend.worker import redis_broker


def test_a_detached_channel_raises_a_connection_error_not_attribute_error(
    redis_server: EmbeddedRedis,
) -> None:
    conn = Connection(redis_server.url, transport=redis_broker.Transport)
    try:
        channel = conn.channel()
        assert isinstance(channel, redis_broker.Channel)
        channel._get_pool()  # a live connection builds its pool as kombu does
        # What Connection.collect() leaves behind after a Redis outage.
        conn.transport.client = None
        with pytest.raises(RedisConnectionError) as info:
            channel._get_pool()
        assert isinstance(info.value, redis_broker.DetachedChannelError)
    finally:
        conn.release()


def test_celery_uses_it_for_plain_redis_urls_only() -> None:
    from backend.config import Settings
    from backend.worker.celery_app import create_celery

    plain = create_celery(Settings(redis_url="redis://127.0.0.1:6390/0"))
    assert plain.conf.broker_transport == redis_broker.TRANSPORT
    tls = create_celery(Settings(redis_url="rediss://127.0.0.1:6390/0"))
    assert tls.conf.broker_transport != redis_broker.TRANSPORT


def test_periodic_tasks_have_their_own_queue_and_the_worker_consumes_both() -> None:
    from backend.config import Settings
    from backend.worker import celery_app as c

    app = c.create_celery(Settings(redis_url="redis://127.0.0.1:6390/0"))
    route = app.amqp.router.route
    assert route({}, c.RELAY_TASK)["queue"].name == c.RELAY_QUEUE
    for name in (c.INDEX_TASK, c.SWEEP_TASK, c.SETTLE_TASK, c.SETTLE_EPOCHS_TASK):
        assert route({}, name)["queue"].name == c.PERIODIC_QUEUE, name
    # what a worker started without --queues consumes
    assert set(app.amqp.queues) == {c.RELAY_QUEUE, c.PERIODIC_QUEUE}
    # the beat's entries are those tasks, so they land on the periodic queue
    assert {e["task"] for e in app.conf.beat_schedule.values()} <= set(c.PERIODIC_TASKS)
