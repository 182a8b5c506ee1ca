"""Leases (backend/services/claims.py) on a real Redis: a living holder keeps its lock
past the lease by renewing it; a holder killed with SIGKILL frees it a lease later; a
hold stops being renewed at its bound. The worker's nonce lock, transaction claims and
periodic runs are all held this way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
import redis

from backend.services.claims import claimed, lease_for
from backend.services.relaying.nonce import NonceManager
from tests.backend.backend_helpers import wait_for

# Short, so each test runs a few leases in a few seconds; long enough that a renewal
# thread starved for a second on a loaded machine (renewing every half second) keeps it.
LEASE = 1.5


@pytest.fixture
def client(redis_server) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def test_a_living_holder_keeps_its_claim_past_the_lease(client, request) -> None:
    name = f"gpucap:test-lease:{request.node.name}"
    start = time.monotonic()
    with claimed(client, name, seconds=60, lease_seconds=LEASE) as mine:
        assert mine
        ttl = client.pttl(name)
        assert 0 < ttl <= LEASE * 1000  # written with the lease, not the hold's bound
        # Three leases long, sampled: never free for another claimant (without renewal
        # it would have expired after one).
        while time.monotonic() - start < 3 * LEASE:
            with claimed(client, name, seconds=60, lease_seconds=LEASE) as theirs:
                assert not theirs
            assert client.pttl(name) > 0, "the lease expired while its holder lived"
            time.sleep(0.05)
    assert client.exists(name) == 0  # released at the end of the block
    with claimed(client, name, seconds=60, lease_seconds=LEASE) as again:
        assert again


def test_a_killed_holder_frees_its_claim_a_lease_later(client, redis_server, request) -> None:
    name = f"gpucap:test-lease:{request.node.name}"
    holder = textwrap.dedent(
        f"""
        import sys, redis
        from backend.services.claims import claimed
        client = redis.Redis.from_url({redis_server.url!r})
        with claimed(client, {name!r}, seconds=600, lease_seconds={LEASE}) as mine:
            print("held" if mine else "refused", flush=True)
            sys.stdin.read()  # until killed
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        # The child renews: its lock outlives a lease while it lives.
        wait_for(lambda: time.monotonic() - held_at > 2 * LEASE, 10, "two leases to pass")
        assert client.pttl(name) > 0
        with claimed(client, name, seconds=60, lease_seconds=LEASE) as mine:
            assert not mine
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Free within a lease of the death (before leases: the hold's whole bound, 600 s).
    wait_for(lambda: client.exists(name) == 0, LEASE + 5, "the dead holder's lease to end")
    with claimed(client, name, seconds=60, lease_seconds=LEASE) as mine:
        assert mine


def test_a_hold_is_renewed_up_to_its_bound_only(client, request) -> None:
    """A holder stuck for good loses the claim once its bound has passed."""
    name = f"gpucap:test-lease:{request.node.name}"
    bound = 1.5 * LEASE
    with claimed(client, name, seconds=bound, lease_seconds=LEASE) as mine:
        assert mine
        wait_for(lambda: client.exists(name) == 0, bound + LEASE + 5, "the bound to end it")
        with claimed(client, name, seconds=60, lease_seconds=LEASE) as theirs:
            assert theirs  # the stuck holder no longer excludes anyone
    # The stuck holder's release found another's claim there and left it alone.


def test_the_nonce_lock_is_a_lease(client, redis_server) -> None:
    """A killed relayer's nonce lock: others wait a lease, not the lock's whole bound."""
    sender = "0x" + "ab" * 20
    manager = NonceManager(client, sender, lock_seconds=600, lease_seconds=LEASE)
    holder = textwrap.dedent(
        f"""
        import sys, redis
        from backend.services.relaying.nonce import NonceManager
        client = redis.Redis.from_url({redis_server.url!r})
        with NonceManager(client, {sender!r}, lock_seconds=600, lease_seconds={LEASE}).locked():
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        assert 0 < client.pttl(manager.lock_name) <= LEASE * 1000  # written with the lease
        # Renewed while its holder lives: still held two leases later.
        wait_for(lambda: time.monotonic() - held_at > 2 * LEASE, 10, "two leases to pass")
        assert client.pttl(manager.lock_name) > 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with manager.locked():  # waits for the dead holder's lease, then takes the lock
        assert client.pttl(manager.lock_name) > 0


def test_a_lease_is_never_longer_than_the_hold() -> None:
    assert lease_for(3.0, 10.0) == 3.0
    assert lease_for(60.0, 10.0) == 10.0
    with pytest.raises(ValueError):
        lease_for(60.0, 0.0)
