"""One worker wake-up per burst of forward requests, instead of one Celery message each.

Forward actions go out many per ``executeBatch`` (``batching.py``): whichever relay
task runs first claims every pending row. A message per accepted request therefore
mostly woke a worker thread to find its row already batched, and cost the API a
publish and the worker a delivery, a read and an ack per request; during a burst
that was a third of the relaying's CPU.

The kick is a Redis flag (``SET NX`` with an expiry) that stands for "a relay task
is queued that will claim the pending forward rows":

- the API, after committing an accepted row, sets the flag; only if it was not set
  does it send a relay task for that row, delayed by ``window_seconds`` so the
  requests arriving meanwhile share its batch. A row accepted while the flag is set
  needs no message: it was committed before the queued task's claim can run;
- every forward relay task clears the flag *before* it reads the pending rows, so a
  row committed after the clear sends a task of its own, and one committed before
  it is seen by the claim;
- a task that finds pending rows it did not batch (more than a batch holds, or its
  own row was batched by another task) kicks again, without delay; if a full batch
  more is waiting it sends a task even while the flag is set (the queued one may be
  the API's, held for the window), so a backlog goes out batch after batch.

If a message is lost anyway (a broker restart between the flag and the publish, a
worker killed between the clear and the claim), the flag expires after
``ttl_seconds`` and the sweep re-enqueues the rows it left, as for any lost message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KICK_KEY = "gpucap:relay:forward-kick"


class ForwardKick:
    def __init__(
        self, client: redis.Redis, *, window_seconds: float, ttl_seconds: float = 30.0
    ) -> None:
        if window_seconds < 0 or ttl_seconds <= window_seconds:
            raise ValueError(f"need 0 <= window ({window_seconds}) < ttl ({ttl_seconds}) seconds")
        self.client = client
        self.window_seconds = window_seconds
        self._ttl_ms = int(ttl_seconds * 1000)

    def claim(self) -> bool:
        """True: no relay task was queued for the pending forward rows, and the caller
        must now send one. False: one is queued already. Redis unreachable counts as
        True: a message too many beats a row left waiting."""
        try:
            return bool(self.client.set(KICK_KEY, b"1", nx=True, px=self._ttl_ms))
        except RedisError as exc:
            log.warning("forward kick flag unavailable (%s); sending a relay task", exc)
            return True

    def send_once(self, send: Callable[[], object], *, even_if_queued: bool = False) -> bool:
        """Call ``send`` (which queues a relay task) unless one is queued already; True
        if this call sent it. If ``send`` raises, the flag is cleared so that the next
        row tries again, and the error goes to the caller. ``even_if_queued``: send
        anyway (the flag is still set, so that rows committed next ride on this task)."""
        if not self.claim() and not even_if_queued:
            return False
        try:
            send()
        except BaseException:
            self.clear()
            raise
        return True

    def clear(self) -> None:
        """A relay task is about to read the pending rows: rows committed from now on
        must send a task of their own."""
        try:
            self.client.delete(KICK_KEY)
        except RedisError as exc:
            # The flag expires by itself; until then new rows rely on this task's
            # claim, which runs after their commit or not at all (then: the sweep).
            log.warning("forward kick flag not cleared (%s); it expires by itself", exc)
