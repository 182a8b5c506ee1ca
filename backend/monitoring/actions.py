"""Gauges read from the database at scrape time: what an operator alerts on whichever
process relays (actions by kind and status, the oldest open action's age)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import OPEN_STATUSES, Action

log = logging.getLogger(__name__)


class ActionsCollector(Collector):
    """``gpucap_actions{kind,status}`` and ``gpucap_oldest_open_action_age_seconds``.
    A database that does not answer gives no samples (unknown), never zeros."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._sessions() as session:
                counts = session.execute(
                    select(Action.kind, Action.status, func.count()).group_by(
                        Action.kind, Action.status
                    )
                ).all()
                oldest = session.execute(
                    select(func.min(Action.created_at)).where(Action.status.in_(OPEN_STATUSES))
                ).scalar_one()
        except SQLAlchemyError as exc:
            log.warning("metrics: actions not read (%s)", exc)
            return
        by_status = GaugeMetricFamily(
            "gpucap_actions", "Relayed actions by kind and status", labels=["kind", "status"]
        )
        for kind, status, n in counts:
            by_status.add_metric([str(kind), str(status)], n)
        yield by_status
        age = GaugeMetricFamily(
            "gpucap_oldest_open_action_age_seconds",
            "Age of the oldest pending or submitted action (0: none open)",
        )
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age.add_metric([], (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)
        yield age
