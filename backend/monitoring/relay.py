"""Relay latency: from an action's acceptance (its row's ``created_at``) to the mined
transaction that finished it, observed where the row is finished (the worker)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import Histogram

from backend.db.models import utcnow

# Registered by the worker's /metrics (monitoring/worker.py); a histogram no registry
# holds still counts (the in-process service tests finish rows too).
RELAY_SECONDS = Histogram(
    "gpucap_relay_seconds",
    "Time from an action's acceptance to the mined transaction that finished it, by kind "
    "and outcome (confirmed, failed)",
    ["kind", "outcome"],
    buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0),
    registry=None,
)


def observe_finished(rows: Iterable[tuple[str, datetime]], outcome: str) -> None:
    """``rows``: (kind, created_at) of the rows just finished with ``outcome``."""
    now = utcnow()
    for kind, created_at in rows:
        RELAY_SECONDS.labels(str(kind), outcome).observe((now - created_at).total_seconds())
