"""Actions: create with an idempotency key, read, and drive one to a final status.

``relay_action`` is what the Celery task calls. It is idempotent: a row that
already has a transaction is checked (and that same transaction re-sent if the
node lost it), never sent twice; confirmed and failed rows are left alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import OPEN_STATUSES, Action, ActionKind, ActionStatus, utcnow
from backend.db.session import write_turn
from backend.services.errors import (
    ActionNotFound,
    IdempotencyConflict,
    ServiceError,
    TransactionReverted,
)
from backend.services.relayer import Fees, NonceConsumed, Relayer, RequestBuilder, SignedTx

log = logging.getLogger(__name__)


def create_action(
    session: Session,
    *,
    kind: ActionKind,
    idempotency_key: str,
    params: dict[str, Any],
    enqueued_at: datetime | None = None,
    likely_new: bool = False,
) -> tuple[Action, bool]:
    """Insert and commit; returns (action, created). Same key + same params → the existing row.

    ``enqueued_at``: the caller enqueues the new row right after this commit, so the
    row says so from the start (one commit instead of two); if that enqueue fails,
    ``unmark_enqueued`` clears it.

    The row goes in with one Core INSERT (the ORM's unit of work was half the database
    time of accepting a forward request); the action returned for a new row is
    detached, with the values written. ``likely_new``: skip looking for the key first,
    for callers whose keys are nearly always new (a taken key then costs a failed
    insert and a rollback of the session, which expires what it had loaded)."""
    existing = None if likely_new else find_by_key(session, idempotency_key)
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
            existing = find_by_key(session, idempotency_key)
            if existing is None:
                raise  # not the key: nothing to return instead
    if existing.kind != kind.value or existing.params != params:
        raise IdempotencyConflict(
            f"idempotency key {idempotency_key!r} was used for another request "
            f"({existing.kind} {existing.params})"
        )
    return existing, False


_INSERT_ACTION = insert(Action.__table__)


def find_by_key(session: Session, idempotency_key: str) -> Action | None:
    return session.scalar(select(Action).where(Action.idempotency_key == idempotency_key))


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
# Relaying one action
# ---------------------------------------------------------------------------


def _update(sessions: sessionmaker[Session], action_id: str, **values: Any) -> None:
    with sessions() as session:
        session.execute(update(Action).where(Action.id == action_id).values(**values))
        session.commit()


def _finish(sessions: sessionmaker[Session], action_id: str, **values: Any) -> None:
    """Final states only move forward: a row already final is never overwritten."""
    with sessions() as session:
        session.execute(
            update(Action)
            .where(Action.id == action_id, Action.status.in_(OPEN_STATUSES))
            .values(**values)
        )
        session.commit()


def relay_action(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    builders: Mapping[str, RequestBuilder],
) -> str:
    """Drive one action forward; returns its status. Retryable failures raise ServiceError.
    ``builders``: kind -> its transaction (the worker's table, ``backend.worker.kinds``)."""
    with sessions() as session:
        action = get_action(session, action_id)
        status, tx_hash, raw_tx, nonce = action.status, action.tx_hash, action.raw_tx, action.nonce
        kind, params = action.kind, dict(action.params)
        replaced = list(action.replaced_tx_hashes or [])
    if ActionStatus(status).is_final:
        return status

    try:
        if tx_hash is None:
            tx_hash = _sign_and_send(sessions, relayer, action_id, builders[kind], params)
        else:
            _resend_if_lost(sessions, relayer, action_id, tx_hash, raw_tx, nonce, replaced)
            tx_hash, replaced = _replace_if_stuck(
                sessions, relayer, action_id, builders[kind], params
            )
        if tx_hash is None:  # failed before sending (decoded revert on estimation)
            with sessions() as session:
                return get_action(session, action_id).status
        mined = relayer.wait_mined(tx_hash, also=replaced, nonce=nonce)
    except TransactionReverted as rev:
        _finish(
            sessions,
            action_id,
            status=ActionStatus.FAILED.value,
            error_code=rev.code,
            error=rev.reason,
            block_number=rev.block_number,
            **({"tx_hash": rev.tx_hash} if rev.tx_hash else {}),
        )
        return ActionStatus.FAILED.value
    except ServiceError as exc:
        # Retryable: note why on the row (it stays pending/submitted) and let Celery retry.
        _update(sessions, action_id, error_code=exc.code, error=exc.reason)
        raise
    _finish(
        sessions,
        action_id,
        status=ActionStatus.CONFIRMED.value,
        tx_hash=mined.tx_hash,  # the replacement, or the original if that one was mined
        block_number=mined.block_number,
        error=None,
        error_code=None,
    )
    return ActionStatus.CONFIRMED.value


def _sign_and_send(
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    build: RequestBuilder,
    params: dict[str, Any],
) -> str | None:
    with relayer.nonces.locked():
        with sessions() as session:  # re-read under the lock: another task may have sent it
            action = get_action(session, action_id)
            if action.tx_hash is not None or ActionStatus(action.status).is_final:
                return action.tx_hash
        try:
            request = build(relayer.chain, params)
            signed = relayer.sign(request)
        except TransactionReverted as rev:
            _finish(
                sessions,
                action_id,
                status=ActionStatus.FAILED.value,
                error_code=rev.code,
                error=rev.reason,
                attempts=Action.attempts + 1,
            )
            return None
        _record_submitted(sessions, action_id, signed)  # write-ahead, then send
        relayer.broadcast(signed)
        return signed.tx_hash


def _record_submitted(
    sessions: sessionmaker[Session],
    action_id: str,
    signed: SignedTx,
    *,
    replaced: list[str] | None = None,
) -> None:
    fees = signed.fees
    _update(
        sessions,
        action_id,
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


def _replace_if_stuck(
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    build: RequestBuilder,
    params: dict[str, Any],
) -> tuple[str | None, list[str]]:
    """Re-sign a transaction pending longer than ``relayer.replace_after_seconds``: same
    nonce, fees raised by ``relayer.fee_bump_percent`` (a node only swaps a pending
    transaction for one paying enough more). Returns the hash to wait for and every
    hash the action had before (any of them may be the one mined)."""
    with relayer.nonces.locked():
        with sessions() as session:
            action = get_action(session, action_id)
            tx_hash, nonce = action.tx_hash, action.nonce
            replaced = list(action.replaced_tx_hashes or [])
            submitted_at = action.submitted_at
            old_fees = (
                Fees(action.max_fee_per_gas, action.max_priority_fee_per_gas)
                if action.max_fee_per_gas is not None
                and action.max_priority_fee_per_gas is not None
                else None
            )
        if ActionStatus(action.status).is_final or tx_hash is None or nonce is None:
            return tx_hash, replaced
        age = (utcnow() - submitted_at).total_seconds() if submitted_at else 0.0
        if age < relayer.replace_after_seconds or old_fees is None:
            return tx_hash, replaced
        if any(relayer.is_mined(h) for h in [tx_hash, *replaced]):
            return tx_hash, replaced  # mined meanwhile: nothing to replace
        if relayer.mined_nonce() > nonce:
            return tx_hash, replaced  # the nonce is used; wait_mined/NonceConsumed sort it out
        try:
            request = build(relayer.chain, params)
            signed = relayer.sign(
                request, nonce=nonce, min_fees=old_fees.bumped(relayer.fee_bump_percent)
            )
        except TransactionReverted as rev:
            # It would revert now; the pending one ran its checks earlier and may
            # still succeed. Keep waiting for it rather than replacing it.
            log.info("action %s: not replacing %s (%s)", action_id, tx_hash, rev.code)
            return tx_hash, replaced
        replaced = [*replaced, tx_hash]
        log.warning(
            "action %s: %s pending for %.0fs; replaced by %s (nonce %d, max fee %d -> %d)",
            action_id,
            tx_hash,
            age,
            signed.tx_hash,
            nonce,
            old_fees.max_fee_per_gas,
            signed.fees.max_fee_per_gas if signed.fees else 0,
        )
        _record_submitted(sessions, action_id, signed, replaced=replaced)
        relayer.broadcast(signed)
        return signed.tx_hash, replaced


def _resend_if_lost(
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    tx_hash: str,
    raw_tx: str | None,
    nonce: int | None,
    replaced: list[str] | None = None,
) -> None:
    """A recorded transaction the node does not know (crash before broadcast, node restart)."""
    if relayer.is_known(tx_hash) or raw_tx is None or nonce is None:
        return
    # A transaction this one replaced may be the one mined (then the replacement is
    # gone from the pool): that is the action done, never a reason to re-sign.
    if any(relayer.is_mined(h) for h in replaced or []):
        return
    signed = SignedTx(sender=relayer.sender, nonce=nonce, tx_hash=tx_hash, raw_tx=raw_tx)
    with relayer.nonces.locked():
        try:
            relayer.broadcast(signed)
        except NonceConsumed:
            if relayer.mined_within([tx_hash, *(replaced or [])]):
                return  # it was mined: its receipt lagged the nonce; the wait finds it
            # That transaction can never be mined, so the action has not happened:
            # back to pending, and the retry signs a new one.
            log.warning(
                "action %s: %s never mined and its nonce is used; re-signing", action_id, tx_hash
            )
            _update(
                sessions,
                action_id,
                status=ActionStatus.PENDING.value,
                tx_hash=None,
                raw_tx=None,
                nonce=None,
            )
            raise
