"""Re-enqueue open actions nobody is working on.

The queue is only a wake-up call; the database is the truth. An enqueue lost
to a Redis outage, or a task lost with a crashed worker, leaves an open row
that this finds and enqueues again (the relay task is idempotent, so a
duplicate wake-up is harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from backend.services.relaying.actions import claim_for_enqueue, stale_open_actions

log = logging.getLogger(__name__)


def sweep_stale_actions(
    *, sessions: sessionmaker[Session], enqueue: Callable[[str], None], older_than_seconds: float
) -> list[str]:
    """Enqueue every stale open action; returns the ids enqueued. Enqueue errors propagate
    (a claimed row whose enqueue failed is simply stale again after ``older_than_seconds``)."""
    ids: list[str] = []
    with sessions() as session:
        for action_id in stale_open_actions(session, older_than_seconds=older_than_seconds):
            if claim_for_enqueue(session, action_id, older_than_seconds=older_than_seconds):
                enqueue(action_id)
                ids.append(action_id)
    if ids:
        log.info("sweep re-enqueued %d stale action(s): %s", len(ids), ", ".join(ids))
    return ids
