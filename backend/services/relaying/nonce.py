"""One nonce manager per sender key: a Redis lock around "read nonce, sign, record, send".

The nonce comes from the node (``pending`` count) every time, under the lock,
so several worker threads or processes sharing one relayer key never pick the
same nonce, and a restarted worker never trusts a stale local counter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from backend.services.claims import LEASE_SECONDS, lease_for, renewed
from backend.services.errors import NonceLockTimeout

log = logging.getLogger(__name__)
# How often a task waiting for the lock tries again. redis-py's default, 0.1 s, is
# most of the time a batch holds it (claim, simulate, sign, record, send: ~50-150
# ms): a burst's relay tasks queued on it and batches went out 0.2-0.45 s apart,
# too slow to fill the blocks. One try costs a Redis round trip (~0.1 ms).
LOCK_POLL_SECONDS = 0.01


class NonceManager:
    def __init__(
        self,
        client: redis.Redis,
        sender: str,
        *,
        lock_seconds: float,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._client = client
        self.sender = sender
        self._lock_seconds = lock_seconds
        self._lease_seconds = lease_for(lock_seconds, lease_seconds)

    @property
    def client(self) -> redis.Redis:
        return self._client

    @property
    def lock_name(self) -> str:
        return f"gpucap:nonce-lock:{self.sender.lower()}"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sender's lock (waiting up to ``lock_seconds`` for it) for at most
        ``lock_seconds``; a lease (``claims.renewed``): if its holder dies, it is free
        ``lease_seconds`` later."""
        lock = self._client.lock(
            self.lock_name,
            timeout=self._lease_seconds,
            blocking_timeout=self._lock_seconds,
            sleep=LOCK_POLL_SECONDS,
            thread_local=False,
        )
        if not lock.acquire():
            raise NonceLockTimeout(
                f"nonce lock for {self.sender} not acquired within {self._lock_seconds}s"
            )
        try:
            with renewed(lock, lease_seconds=self._lease_seconds, hold_seconds=self._lock_seconds):
                yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockNotOwnedError:
                # It expired while held: the next holder re-reads the nonce
                # from the node, so nothing is corrupted, but the lock is too short.
                log.warning(
                    "nonce lock %s expired while held; raise nonce_lock_seconds", self.lock_name
                )
