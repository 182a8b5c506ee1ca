"""Claims and leases: Redis locks whose holder's death frees them within seconds.

Two things in the worker must run one at a time across threads and processes but
never make a second runner wait: a periodic task (index, settle) and waiting for one
transaction to be mined. The second runner is told at once that it lost, and goes
on with other work (``claimed``). The sender's nonce lock, which callers do wait for,
is ``nonce.NonceManager``; it holds its lock the same way.

Every such lock is a *lease*: it is written with a short time to live
(``lease_seconds``, 10 s by default) and renewed by this process every third of
that while its holder is inside the ``with`` block. A holder that dies (SIGKILL,
a lost machine) stops renewing, and the lock is free ``lease_seconds`` later; one
that lives is never overtaken however long its work takes, up to the hold's own
bound (``seconds``), past which renewal stops, so a holder stuck for good cannot
keep the lock for ever either. Before leases, a killed worker's locks outlived it
by their whole bound: 120 s without indexing or settling, 40 s before its
transactions were waited for again, 30 s before any relaying.

A lease can still be lost while its holder lives: a process frozen (or its Redis
unreachable) for longer than ``lease_seconds``. That is logged. What the locks guard
is safe to run twice by design (the nonce is re-read from the node under the lock,
a transaction's rows are finished idempotently, index runs are transactional), so a
lost lease costs a retry, never a double effect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

log = logging.getLogger(__name__)

# How long a dead holder's lock outlives it (Settings.lease_seconds in the worker).
LEASE_SECONDS = 10.0
# Renewals per lease period: a renewal can be late by up to two thirds of the lease
# (a slow Redis round trip, a busy process) before the lock is lost.
RENEWALS_PER_LEASE = 3


class _Held:
    """One held lease: its lock, when to renew it next, when to stop renewing."""

    __slots__ = ("lock", "every", "next_renewal", "until", "released")

    def __init__(self, lock: Lock, lease_seconds: float, hold_seconds: float) -> None:
        now = time.monotonic()
        self.lock = lock
        self.every = lease_seconds / RENEWALS_PER_LEASE
        self.next_renewal = now + self.every
        self.until = now + hold_seconds
        self.released = False

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours to renew."""
        now = time.monotonic()
        if self.released or now >= self.until:
            return False  # released, or held as long as its bound allows: let it expire
        try:
            self.lock.reacquire()
        except LockNotOwnedError:
            if not self.released:
                log.warning(
                    "lease %s lost while held (the process stalled, or Redis did, for "
                    "longer than the lease); the next holder runs what it guards again",
                    _name(self.lock),
                )
            return False
        except (RedisError, OSError) as exc:
            log.info("lease %s not renewed (%s); trying again", _name(self.lock), exc)
            self.next_renewal = now + min(1.0, self.every)
            return True
        self.next_renewal = now + self.every
        return True


def _name(lock: Lock) -> str:
    name = lock.name
    return name.decode() if isinstance(name, bytes) else str(name)


class _Renewer:
    """One daemon thread per process renewing every lease held in it."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._held: set[_Held] = set()
        self._pid: int | None = None

    def add(self, held: _Held) -> None:
        with self._cv:
            if self._pid != os.getpid():  # first use, or a forked child: its own thread
                self._held = set()
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="lease-renewer", daemon=True).start()
            self._held.add(held)
            self._cv.notify()

    def discard(self, held: _Held) -> None:
        held.released = True
        with self._cv:
            self._held.discard(held)

    def _run(self) -> None:
        while True:
            with self._cv:
                now = time.monotonic()
                due = [h for h in self._held if h.next_renewal <= now]
                if not due:
                    nearest = min((h.next_renewal for h in self._held), default=now + 60.0)
                    self._cv.wait(timeout=nearest - now)
                    continue
            for held in due:  # outside the condition: a renewal is a Redis round trip
                if not held.renew():
                    with self._cv:
                        self._held.discard(held)


_RENEWER = _Renewer()


@contextlib.contextmanager
def renewed(lock: Lock, *, lease_seconds: float, hold_seconds: float) -> Iterator[None]:
    """Keep the acquired ``lock`` (created with ``timeout=lease_seconds`` and
    ``thread_local=False``) alive while the block runs, for at most ``hold_seconds``."""
    held = _Held(lock, lease_seconds, hold_seconds)
    _RENEWER.add(held)
    try:
        yield
    finally:
        _RENEWER.discard(held)


def lease_for(hold_seconds: float, lease_seconds: float) -> float:
    """The time to live a lock is written with: the lease, never more than the hold."""
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    return min(hold_seconds, lease_seconds)


@contextlib.contextmanager
def claimed(
    client: redis.Redis, name: str, *, seconds: float, lease_seconds: float = LEASE_SECONDS
) -> Iterator[bool]:
    """Hold ``name`` for at most ``seconds``; yields False at once if another holds it.
    A holder that dies frees it within ``lease_seconds``."""
    lease = lease_for(seconds, lease_seconds)
    # thread_local=False: the renewer thread renews with the holder's token.
    lock = client.lock(name, timeout=lease, blocking=False, thread_local=False)
    if not lock.acquire():
        yield False
        return
    try:
        with renewed(lock, lease_seconds=lease, hold_seconds=seconds):
            yield True
    finally:
        # A run longer than its bound lost the claim already: nothing to release.
        with contextlib.suppress(LockNotOwnedError):
            lock.release()
