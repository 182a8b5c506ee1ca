"""kombu's Redis transport with one fix: a closed connection's channel fails as a connection error.

The bug (kombu 5.7.0, the latest release; Redis as broker): when Redis goes away under a
worker that holds unacknowledged ``acks_late`` messages, Celery's consumer calls
``Connection.collect()`` and then ``Connection.close()``
(celery/worker/consumer/consumer.py, ``on_connection_error_after_connected``).

1. ``collect()`` closes the default channel, but ``redis.Channel.close()`` first drains the
   BRPOP still in flight, which raises ``ConnectionError``: the close stops there, before
   the channel is marked closed. The transport's ``close_connection()`` then stops at the
   first channel that raises (the pidbox channel, deleting its fanout binding), so the
   default channel is not closed either. ``collect()`` ends by detaching the transport
   (``transport.client = None``, kombu/connection.py ``_do_close_transport``).
2. ``close()`` closes the default channel again. This time it goes on: it drops its Redis
   pools, then restores the unacked messages, which needs a new pool, built from
   ``self.connection.client``, now None: ``AttributeError: 'NoneType' object has no
   attribute 'hostname'`` (kombu/transport/redis.py ``_connparams``).
3. That is no connection error, so ``ignore_errors`` lets it through and it escapes the
   consumer's reconnect path: the worker logs "Unrecoverable error" and stops consuming.

A channel whose connection is gone cannot talk to Redis, and the right signal for that is a
connection error: every caller (``maybe_close_channel``, ``ignore_errors``, Celery's ack
path, which logs a failed ack) already handles those, and Celery then reconnects. The
unacked messages stay in Redis's unacked set, as they do whenever the restore fails because
Redis is down; the sweep re-enqueues their actions.

Celery uses this transport through ``broker_transport`` (see celery_app.py): a subclass
through kombu's own extension point, not a patch of kombu's classes.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: For ``broker_transport``: kombu resolves "module:Class" names.
TRANSPORT = f"{__name__}:Transport"


class DetachedChannelError(RedisConnectionError):
    """A channel of an already closed broker connection needed a new Redis connection pool."""


class Channel(kombu_redis.Channel):
    def _get_pool(self, asynchronous: bool = False) -> Any:
        # kombu reads host, port, db, password from the transport's client (the
        # kombu Connection); after close/collect the channel has no transport or
        # the transport no client. Say so as a connection error (see module doc).
        transport = self.connection
        if transport is None or transport.client is None:
            raise DetachedChannelError(
                "the broker connection of this Redis channel is closed; "
                "cannot open a new Redis connection pool for it"
            )
        return super()._get_pool(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
