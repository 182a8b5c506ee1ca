"""Per-client limits on what costs the relayer: at most so many new actions of one kind
per client (IP address) per window, counted in Redis so every API process shares them.

The faucet's cooldown is per recipient and a relayed permit's only other bound is one
open per owner and token: a client naming fresh addresses met neither. Fixed windows
(one counter per client and window, expiring with it) keep a check at one round trip.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


class ClientLimitUnavailable(Exception):
    """A strict limit cannot count (Redis unreachable): nothing is accepted meanwhile."""


@dataclass(frozen=True)
class ClientLimit:
    """At most ``limit`` new ``scope`` actions per client per ``window_seconds``.

    ``strict``: with Redis down, refuse (ClientLimitUnavailable) rather than let every
    request through; for what the relayer pays real gas for. The faucet's is not strict:
    it is the dev chain's, and a down Redis already delays every drip (logged)."""

    client: redis.Redis
    scope: str
    limit: int
    window_seconds: int
    strict: bool = False

    def take(self, who: str) -> int | None:
        """Count one action for ``who``; None if allowed, else seconds until the next
        window. Raises ClientLimitUnavailable when strict and Redis cannot count."""
        now = int(time.time())
        window = now // self.window_seconds
        key = self._key(who, window)
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, self.window_seconds)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            if self.strict:
                raise ClientLimitUnavailable(
                    f"the {self.scope} client limit cannot count: Redis unreachable ({exc})"
                ) from exc
            log.warning("%s client limit not enforced: redis unreachable (%s)", self.scope, exc)
            return None
        if int(count) <= self.limit:
            return None
        return (window + 1) * self.window_seconds - now

    def give_back(self, who: str) -> None:
        """Undo a ``take`` that created nothing (a double click found its action)."""
        with contextlib.suppress(redis.RedisError):  # then it counts once too many: harmless
            self.client.decr(self._key(who, int(time.time()) // self.window_seconds))

    def _key(self, who: str, window: int) -> str:
        return f"gpucap:{self.scope}:client:{who}:{self.window_seconds}:{window}"
