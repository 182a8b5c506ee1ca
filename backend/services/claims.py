"""A claim: a non-blocking Redis lock that says "someone is on it", written once.

Two things in the worker must run one at a time across threads and processes but
never make a second runner wait: a periodic task (index, settle) and waiting for one
transaction to be mined. The second runner is told at once that it lost, and goes
on with other work; if the holder dies, the claim expires by itself. (The sender's
nonce lock, which callers do wait for, is ``nonce.NonceManager``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.exceptions import LockNotOwnedError


@contextlib.contextmanager
def claimed(client: redis.Redis, name: str, *, seconds: float) -> Iterator[bool]:
    """Hold ``name`` for at most ``seconds``; yields False at once if another holds it."""
    lock = client.lock(name, timeout=seconds, blocking=False)
    if not lock.acquire():
        yield False
        return
    try:
        yield True
    finally:
        # A run longer than the claim lost it already: nothing to release.
        with contextlib.suppress(LockNotOwnedError):
            lock.release()
