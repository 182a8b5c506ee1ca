"""The relay kick (backend/services/relaying/relay_kick.py): one relay task per burst of forward
requests. The flag on a real Redis; the API's enqueue and the batching service's use
of it on a real anvil; the burst through the real API and worker is in
test_e2e_forward.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.app.deps import CeleryEnqueuer
from backend.db.models import Action
from backend.redis_embedded import EmbeddedRedis
from backend.services.relaying import batching
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.relay_kick import KICK_KEY, ForwardKick
from backend.worker.celery_app import RELAY_TASK
from gpucap import devchain
from tests.backend.backend_helpers import new_forward_action, service_relayer


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis_lib.Redis]:
    c = redis_lib.Redis.from_url(redis_server.url)
    c.delete(KICK_KEY)
    yield c
    c.delete(KICK_KEY)
    c.close()


def test_one_claim_until_a_task_clears_it_or_it_expires(client: redis_lib.Redis) -> None:
    kick = ForwardKick(client, window_seconds=0.05, ttl_seconds=0.5)
    assert kick.claim() is True  # first request of a burst: send a task
    assert [kick.claim() for _ in range(5)] == [False] * 5  # the queued task covers them
    kick.clear()  # the task starts reading the pending rows
    assert kick.claim() is True
    assert kick.claim() is False
    kick.clear()

    def broker_down() -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        kick.send_once(broker_down)  # its task could not be sent ...
    assert kick.claim() is True  # ... so the next request tries again
    assert kick.send_once(lambda: None) is False  # and meanwhile none is sent twice
    time.sleep(0.6)  # a lost task: the flag expires by itself
    assert kick.claim() is True
    sent: list[int] = []
    assert kick.send_once(lambda: sent.append(1), even_if_queued=True) is True  # a backlog
    assert sent == [1] and kick.claim() is False  # the flag stays: next rows ride on it


def test_redis_down_sends_a_task_rather_than_leave_a_row_waiting() -> None:
    down = redis_lib.Redis(port=devchain.free_port(), socket_connect_timeout=0.2)
    kick = ForwardKick(down, window_seconds=0.2)
    assert kick.claim() is True
    kick.clear()  # logged, no exception: the flag expires by itself


def test_window_must_be_shorter_than_the_flags_life(client: redis_lib.Redis) -> None:
    with pytest.raises(ValueError, match="window"):
        ForwardKick(client, window_seconds=30, ttl_seconds=30)
    with pytest.raises(ValueError, match="window"):
        ForwardKick(client, window_seconds=-1)


class RecordingCelery:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, list[str], float | None]] = []
        self.fail = fail

    def send_task(self, name: str, *, args: list[str], countdown: float | None, **_: Any) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((name, args, countdown))


def test_api_sends_one_delayed_task_per_burst_and_one_per_other_action(
    client: redis_lib.Redis,
) -> None:
    celery = RecordingCelery()
    enqueue = CeleryEnqueuer(celery, ForwardKick(client, window_seconds=0.2))  # type: ignore[arg-type]
    assert all(enqueue(f"fwd-{i}", batched=True) for i in range(10))
    assert celery.sent == [(RELAY_TASK, ["fwd-0"], 0.2)]  # the first waits for the rest
    assert enqueue("drip-1") and enqueue("drip-2")  # not batched: a task each, at once
    assert celery.sent[1:] == [(RELAY_TASK, ["drip-1"], None), (RELAY_TASK, ["drip-2"], None)]
    client.delete(KICK_KEY)  # the worker took the burst
    assert enqueue("fwd-10", batched=True)
    assert celery.sent[-1] == (RELAY_TASK, ["fwd-10"], 0.2)

    down = CeleryEnqueuer(RecordingCelery(fail=True), ForwardKick(client, window_seconds=0.2))  # type: ignore[arg-type]
    client.delete(KICK_KEY)
    assert down("fwd-11", batched=True) is False  # the row is left to the sweep ...
    assert client.get(KICK_KEY) is None  # ... and the next request sends a task again


class RecordingKick:
    def __init__(self) -> None:
        self.events: list[str | tuple[str, bool]] = []

    def clear(self) -> None:
        self.events.append("clear")

    def __call__(self, action_id: str, *, backlog: bool = False) -> None:
        self.events.append((action_id, backlog))


def _tx_of(sessions: sessionmaker[Session], ids: list[str]) -> list[str | None]:
    with sessions() as session:
        rows = {
            r.id: r.tx_hash
            for r in session.execute(select(Action.id, Action.tx_hash).where(Action.id.in_(ids)))
        }
    return [rows[i] for i in ids]


def test_a_task_clears_first_and_kicks_for_rows_its_batch_left(
    sessions: sessionmaker[Session], live_deployment: Any, redis_server: EmbeddedRedis
) -> None:
    """A batch full at max_requests kicks for the oldest row it left, as a backlog when
    a full batch more is waiting; a task whose row another task batched kicks for the
    rows waiting (they relied on its claim); with nothing waiting, no kick."""
    s = live_deployment.system
    with service_relayer(live_deployment, redis_server.url) as relayer:
        ids = [new_forward_action(relayer, sessions, s) for _ in range(5)]
        kick = RecordingKick()
        limits = BatchLimits(max_requests=2)
        status = batching.relay_forward(
            sessions=sessions, relayer=relayer, action_id=ids[0], limits=limits, kick=kick
        )
        assert status == "confirmed"
        sent = _tx_of(sessions, ids)
        assert sent[0] is not None and sent[0] == sent[1] and sent[2:] == [None] * 3
        # Cleared before reading; the oldest row left, and 3 >= a batch of 2 wait.
        assert kick.events == ["clear", (ids[2], True)]

        kick = RecordingKick()  # ids[1] was batched by the task of ids[0]
        assert (
            batching.relay_forward(
                sessions=sessions, relayer=relayer, action_id=ids[1], limits=limits, kick=kick
            )
            == "confirmed"
        )
        assert kick.events == ["clear", (ids[2], False)]

        kick = RecordingKick()
        batching.relay_forward(
            sessions=sessions,
            relayer=relayer,
            action_id=ids[2],
            limits=BatchLimits(max_requests=10),
            kick=kick,
        )
        assert len(set(_tx_of(sessions, ids[2:]))) == 1  # the rest, one batch
        assert kick.events == ["clear"]  # nothing left waiting

        more = [new_forward_action(relayer, sessions, s) for _ in range(3)]
        kick = RecordingKick()
        batching.relay_forward(
            sessions=sessions, relayer=relayer, action_id=more[0], limits=limits, kick=kick
        )
        assert kick.events == ["clear", (more[2], False)]  # 1 waiting: less than a batch
