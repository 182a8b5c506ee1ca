"""The actions' rows: create one with an idempotency key, read it, and the writes
the transaction driver makes as a row's transaction is sent, replaced and mined.

Every user action is a row before it is a transaction, so a retry never acts
twice. This module is only the store: which transaction a row becomes, and when,
is the driver's business (``tx_driver.py``), and it knows no kind of action.
Writes that finish a row only touch open rows: a finished row is never rewritten by
the relayer. Only the chain can undo one: a reorg that takes its transaction away
re-opens it (``finality.py``).

Keys are unique per chain (``ChainIdentity``): a row made on another chain (a reset
node, another deployment) is never found for a request on this one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import OPEN_STATUSES, Action, ActionKind, ActionStatus, utcnow
from backend.db.session import write_turn
from backend.monitoring.relay import observe_finished
from backend.services.chain import ChainIdentity
from backend.services.errors import ActionNotFound, IdempotencyConflict
from backend.services.relaying.relayer import Fees, Mined, SignedTx


def create_action(
    session: Session,
    *,
    kind: ActionKind,
    idempotency_key: str,
    params: dict[str, Any],
    chain: ChainIdentity,
    enqueued_at: datetime | None = None,
    likely_new: bool = False,
) -> tuple[Action, bool]:
    """Insert and commit; returns (action, created). Same key + same params on the same
    chain → the existing row.

    ``enqueued_at``: the caller enqueues the new row right after this commit, so the
    row says so from the start (one commit instead of two); if that enqueue fails,
    ``unmark_enqueued`` clears it.

    The row goes in with one Core INSERT (the ORM's unit of work was half the database
    time of accepting a forward request); the action returned for a new row is
    detached, with the values written. ``likely_new``: skip looking for the key first,
    for callers whose keys are nearly always new (a taken key then costs a failed
    insert and a rollback of the session, which expires what it had loaded)."""
    existing = None if likely_new else find_by_key(session, idempotency_key, chain)
    if existing is None:
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()),
            "kind": kind.value,
            "idempotency_key": idempotency_key,
            "params": params,
            "status": ActionStatus.PENDING.value,
            "attempts": 0,
            "last_enqueued_at": enqueued_at,
            "final": False,
            **chain.columns(),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with write_turn(session.get_bind()):
                session.execute(_INSERT_ACTION, values)
                session.commit()
            return Action(**values), True
        except IntegrityError:  # the key is taken (a retry, or a concurrent request won)
            session.rollback()
            existing = find_by_key(session, idempotency_key, chain)
            if existing is None:
                raise  # not the key: nothing to return instead
    if existing.kind != kind.value or existing.params != params:
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was used for another request "
            f"({existing.kind} {existing.params})"
        )
    return existing, False


_INSERT_ACTION = insert(Action.__table__)


def find_by_key(session: Session, idempotency_key: str, chain: ChainIdentity) -> Action | None:
    """The row of this key made on ``chain`` (never one of another chain)."""
    return session.scalar(
        select(Action).where(Action.idempotency_key == idempotency_key, *on_chain(chain))
    )


def on_chain(chain: ChainIdentity) -> tuple[Any, ...]:
    """WHERE clauses: rows made on ``chain``."""
    return (
        Action.chain_id == chain.chain_id,
        Action.genesis_hash == chain.genesis_hash,
        Action.deployment == chain.deployment,
    )


def get_action(session: Session, action_id: str) -> Action:
    action = session.get(Action, action_id)
    if action is None:
        raise ActionNotFound(f"no action with id {action_id}")
    return action


def mark_enqueued(session: Session, action_id: str) -> None:
    session.execute(update(Action).where(Action.id == action_id).values(last_enqueued_at=utcnow()))
    session.commit()


def unmark_enqueued(session: Session, action_id: str) -> None:
    """The enqueue ``create_action(enqueued_at=...)`` announced did not happen."""
    session.execute(update(Action).where(Action.id == action_id).values(last_enqueued_at=None))
    session.commit()


def claim_for_enqueue(session: Session, action_id: str, *, older_than_seconds: float) -> bool:
    """Mark the row enqueued unless someone else just did; True if this caller won it.

    Two sweeps running at once (beat tick + start-up sweep, or two workers)
    would otherwise both enqueue the same row.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    result = session.execute(
        update(Action)
        .where(Action.id == action_id, Action.status.in_(OPEN_STATUSES))
        .where((Action.last_enqueued_at.is_(None)) | (Action.last_enqueued_at < cutoff))
        .values(last_enqueued_at=utcnow())
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_open_actions(
    session: Session, *, older_than_seconds: float, limit: int = 500
) -> list[str]:
    """Open rows nobody touched or enqueued for a while: lost enqueue, crashed worker."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    rows = session.scalars(
        select(Action.id)
        .where(Action.status.in_(OPEN_STATUSES), Action.updated_at < cutoff)
        .where((Action.last_enqueued_at.is_(None)) | (Action.last_enqueued_at < cutoff))
        .order_by(Action.created_at)
        .limit(limit)
    )
    return list(rows)


# ---------------------------------------------------------------------------
# A row's transaction, as the driver reads and writes it
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RowState:
    """What a relay task needs of its own row to decide what to do (one light read)."""

    kind: str
    status: str
    tx_hash: str | None
    nonce: int | None

    @property
    def final(self) -> bool:
        return ActionStatus(self.status).is_final


def row_state(sessions: sessionmaker[Session], action_id: str) -> RowState:
    """The row's kind, status, transaction and nonce: columns only, no ORM object (most
    relay tasks find their row already in a transaction another task drives, and stop
    here)."""
    with sessions() as session:
        row = session.execute(
            select(Action.kind, Action.status, Action.tx_hash, Action.nonce).where(
                Action.id == action_id
            )
        ).one_or_none()
    if row is None:
        raise ActionNotFound(f"no action with id {action_id}")
    return RowState(kind=row.kind, status=row.status, tx_hash=row.tx_hash, nonce=row.nonce)


@dataclass(frozen=True)
class SentRow:
    """A row's transaction as recorded: every row of a group carries the group's
    (hash, raw transaction, nonce, hashes it replaced, fees, submission time)."""

    status: str
    tx_hash: str | None
    nonce: int | None
    raw_tx: str | None
    replaced: list[str]
    submitted_at: datetime | None
    fees: Fees | None

    @property
    def final(self) -> bool:
        return ActionStatus(self.status).is_final


def sent_row(session: Session, action_id: str) -> SentRow | None:
    row = session.execute(
        select(
            Action.status,
            Action.tx_hash,
            Action.nonce,
            Action.raw_tx,
            Action.replaced_tx_hashes,
            Action.submitted_at,
            Action.max_fee_per_gas,
            Action.max_priority_fee_per_gas,
        ).where(Action.id == action_id)
    ).one_or_none()
    if row is None:
        return None
    fees = (
        Fees(row.max_fee_per_gas, row.max_priority_fee_per_gas)
        if row.max_fee_per_gas is not None and row.max_priority_fee_per_gas is not None
        else None
    )
    return SentRow(
        status=row.status,
        tx_hash=row.tx_hash,
        nonce=row.nonce,
        raw_tx=row.raw_tx,
        replaced=list(row.replaced_tx_hashes or []),
        submitted_at=row.submitted_at,
        fees=fees,
    )


@dataclass(frozen=True)
class OpenRow:
    """An open row as the group of rows its transaction carries sees it: id, params,
    and how many transactions have carried it so far."""

    id: str
    params: dict[str, Any]
    attempts: int = 0


def open_rows(session: Session, *where: Any, limit: int | None = None) -> list[OpenRow]:
    """The open rows matching ``where``, oldest first (columns only: a batch carries up
    to a hundred)."""
    return [
        OpenRow(r.id, dict(r.params), r.attempts)
        for r in session.execute(
            select(Action.id, Action.params, Action.attempts)
            .where(Action.status.in_(OPEN_STATUSES), *where)
            .order_by(Action.created_at, Action.id)
            .limit(limit)
        )
    ]


def note_error(sessions: sessionmaker[Session], action_id: str, code: str, reason: str) -> None:
    """Why an open row waits (it stays pending or submitted; a retry follows)."""
    with sessions() as session:
        session.execute(
            update(Action).where(Action.id == action_id).values(error_code=code, error=reason)
        )
        session.commit()


def update_open(sessions: sessionmaker[Session], ids: Sequence[str], **values: Any) -> None:
    """Write ``values`` on the rows of ``ids`` still open, in one database transaction:
    final states only move forward, a row already final is never overwritten."""
    with sessions() as session:
        session.execute(
            update(Action)
            .where(Action.id.in_(ids), Action.status.in_(OPEN_STATUSES))
            .values(**values)
        )
        session.commit()


def finish_mined(
    sessions: sessionmaker[Session],
    mined: Mined,
    *,
    confirmed: Sequence[str],
    failed: Sequence[tuple[str, str, str]] = (),
) -> None:
    """Finish the rows a mined transaction carried, at once: ``confirmed`` ids, and
    ``failed`` (id, error code, reason) for the requests of a batch that did not run."""
    done = {
        "tx_hash": mined.tx_hash,  # the replacement, or the original if that one was mined
        "block_number": mined.block_number,
    }
    finished: dict[str, list[Any]] = {"confirmed": [], "failed": []}
    with sessions() as session:
        if confirmed:
            finished["confirmed"] = session.execute(
                update(Action)
                .where(Action.id.in_(confirmed), Action.status.in_(OPEN_STATUSES))
                .values(status=ActionStatus.CONFIRMED.value, error=None, error_code=None, **done)
                .returning(Action.kind, Action.created_at)
            ).all()
        for row_id, code, reason in failed:
            finished["failed"] += session.execute(
                update(Action)
                .where(Action.id == row_id, Action.status.in_(OPEN_STATUSES))
                .values(status=ActionStatus.FAILED.value, error=reason, error_code=code, **done)
                .returning(Action.kind, Action.created_at)
            ).all()
        session.commit()
    # Only rows this call finished (a row finished already is not returned): once each.
    for outcome, rows in finished.items():
        observe_finished(rows, outcome)


def fail_unsent(sessions: sessionmaker[Session], action_id: str, code: str, reason: str) -> None:
    """The row failed before any transaction carried it (it would revert, expired, too
    large): that attempt counts."""
    update_open(
        sessions,
        [action_id],
        status=ActionStatus.FAILED.value,
        error_code=code,
        error=reason,
        attempts=Action.attempts + 1,
    )


def record_sent(
    sessions: sessionmaker[Session],
    ids: Sequence[str],
    signed: SignedTx,
    *,
    replaced: list[str] | None = None,
) -> None:
    """Write the transaction on every row it carries at once (one database transaction),
    before it is broadcast: after a crash the same transaction is re-sent."""
    fees = signed.fees
    update_open(
        sessions,
        ids,
        status=ActionStatus.SUBMITTED.value,
        tx_hash=signed.tx_hash,
        nonce=signed.nonce,
        raw_tx=signed.raw_tx,
        sender=signed.sender,
        max_fee_per_gas=fees.max_fee_per_gas if fees else None,
        max_priority_fee_per_gas=fees.max_priority_fee_per_gas if fees else None,
        submitted_at=utcnow(),
        replaced_tx_hashes=replaced,
        attempts=Action.attempts + 1,
        error=None,
        error_code=None,
    )


def reset(sessions: sessionmaker[Session], ids: Sequence[str], **values: Any) -> None:
    """Back to pending with no transaction: the one they had can never be mined, so
    none of them happened, and the retry sends them anew."""
    update_open(
        sessions,
        ids,
        status=ActionStatus.PENDING.value,
        tx_hash=None,
        raw_tx=None,
        nonce=None,
        replaced_tx_hashes=None,
        submitted_at=None,
        **values,
    )
