"""Forward requests relayed many at once: one ``executeBatch`` transaction per batch.

A relay task for a pending forward action takes the relayer's nonce lock and
claims every forward action still pending without a transaction (its own
first, oldest next, up to ``BatchLimits.max_requests``, its gas cap, and the
size of which ``BatchLimits.per_block`` batches fill a block), signs ONE
``GpucapForwarder.executeBatch``, records it on every row of the batch
(write-ahead: same tx hash, nonce and raw transaction), then sends.

A batch is identified by the relayer's (sender, nonce): all its rows carry
them, and whichever task runs for any of its rows may drive the whole batch,
as ``actions.relay_action`` drives a single transaction. One task at a time
does (an expiring Redis claim per batch): the others return at once, so a
worker thread is never parked on a batch someone already waits for and the
next batch can go out while this one is mined. Driving a batch means:

- a recorded batch the node lost is re-sent as recorded (same hash); if its
  nonce was taken meanwhile it can never be mined, so its rows go back to
  pending and the retry batches them again;
- a batch pending longer than ``replace_after_seconds`` is re-signed with the
  same nonce, the same requests and higher fees; every hash stays listed;
- once a transaction of the batch is mined, each row is finished from the
  receipt's ``ExecutedForwardRequest`` events (forward.batch_outcomes):
  confirmed, or failed with the decoded reason. Final rows are never
  rewritten, so a duplicate task, a redelivery after SIGKILL, or two tasks
  finishing the same batch at once change nothing;
- a batch that reverted as a whole (which a non-atomic batch only does when
  its gas was too low for what the chain did meanwhile) consumed no request
  nonce: its rows go back to pending and are batched again, up to
  ``MAX_BATCH_ATTEMPTS`` submissions, then fail with the decoded reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from redis.exceptions import LockNotOwnedError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import OPEN_STATUSES, Action, ActionKind, ActionStatus, utcnow
from backend.services import actions
from backend.services.actions import _finish, _update, get_action
from backend.services.errors import ActionNotFound, ServiceError, TransactionReverted
from backend.services.forward import batch_outcomes, batch_tx
from backend.services.relayer import (
    Fees,
    GasNeed,
    Mined,
    NonceConsumed,
    Relayer,
    RequestBuilder,
    SignedTx,
    TxRequest,
)

log = logging.getLogger(__name__)

FORWARD = ActionKind.FORWARD.value
# Submissions of one row (first send, replacements, re-batching after a whole-batch
# revert) before it fails instead of being batched again.
MAX_BATCH_ATTEMPTS = 5
# A request this close to its deadline is failed instead of sent: it would most
# likely be skipped as expired by the time the batch is mined.
EXPIRY_MARGIN_SECONDS = 2
# How long a task's claim on waiting for a batch outlives its receipt timeout.
DRIVER_CLAIM_MARGIN_SECONDS = 10
# What the last batch each relayer simulated needed (_GasSeen), by relayer address.
_gas_seen: dict[str, _GasSeen] = {}
# A batch is first sized this much under what the last one's gas per request allows.
SIZE_SLACK = 0.03


class BatchReverted(ServiceError):
    """The whole batch reverted; its rows are pending again. Retry (re-batches them)."""

    code = "BatchReverted"


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int = 100
    # Gas limit a batch may have; never more than the latest block's gas limit.
    max_gas: int = 15_000_000
    # Batches are sized so that this many fill a block (a block's last transaction
    # counts its gas limit, the others their gas used: smaller batches leave less
    # of the block empty, more of them cost more relay work per request).
    per_block: int = 4


@dataclass(frozen=True)
class _Row:
    id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class _State:
    """What a relay task needs of its own row to decide what to do (one light read)."""

    kind: str
    status: str
    tx_hash: str | None
    nonce: int | None

    @property
    def final(self) -> bool:
        return ActionStatus(self.status).is_final


def _state(sessions: sessionmaker[Session], action_id: str) -> _State:
    """The row's kind, status, transaction and nonce: columns only, no ORM object (most
    relay tasks find their row already in a batch another task drives, and stop here)."""
    with sessions() as session:
        row = session.execute(
            select(Action.kind, Action.status, Action.tx_hash, Action.nonce).where(
                Action.id == action_id
            )
        ).one_or_none()
    if row is None:
        raise ActionNotFound(f"no action with id {action_id}")
    return _State(kind=row.kind, status=row.status, tx_hash=row.tx_hash, nonce=row.nonce)


class Kick(Protocol):
    """The worker's side of ``services/relay_kick.py``: one relay task at a time is
    queued to claim the forward rows waiting for a batch."""

    def clear(self) -> None:
        """This task is about to read the waiting rows: later rows must kick again."""

    def __call__(self, action_id: str, *, backlog: bool = False) -> None:
        """Have a relay task for ``action_id`` claim the waiting rows now, unless one
        is queued already. ``backlog``: a full batch is waiting, so send one at once
        even then (a queued one may be the API's, held for the batching window)."""


def relay(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    limits: BatchLimits,
    builders: Mapping[str, RequestBuilder],
    kick: Kick | None = None,
) -> str:
    """What the relay task calls: forward actions are batched, others go out singly
    (``builders``: kind -> its transaction)."""
    state = _state(sessions, action_id)
    if state.kind != FORWARD:
        return actions.relay_action(
            sessions=sessions, relayer=relayer, action_id=action_id, builders=builders
        )
    if kick is not None:
        kick.clear()
        if state.tx_hash is not None or state.final:
            # Another task batched this row; the rows that relied on this task's
            # claim (accepted while it was queued) go out with a task of their own.
            _kick_waiting(sessions, kick)
    return relay_forward(
        sessions=sessions,
        relayer=relayer,
        action_id=action_id,
        limits=limits,
        state=state,
        kick=kick,
    )


def _kick_waiting(sessions: sessionmaker[Session], kick: Kick, *, full: int = 0) -> None:
    """Kick for the oldest forward row not in any batch, if there is one; as a
    backlog if at least ``full`` rows (a full batch, ``full`` > 0) are waiting."""
    with sessions() as session:
        waiting = session.scalars(
            select(Action.id)
            .where(
                Action.kind == FORWARD,
                Action.status == ActionStatus.PENDING.value,
                Action.tx_hash.is_(None),
            )
            .order_by(Action.created_at, Action.id)
            .limit(max(full, 1))
        ).all()
    if waiting:
        kick(waiting[0], backlog=0 < full <= len(waiting))


def relay_forward(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    limits: BatchLimits,
    state: _State | None = None,
    kick: Kick | None = None,
) -> str:
    """Drive the batch holding ``action_id`` (sending one first if it has none) until it is
    mined, and finish every row of it. Returns the row's status; retryable failures raise.
    ``state``: the row as the caller just read it (saves reading it again). ``kick``: after
    sending, rows the batch had no room for get a relay task of their own."""
    if state is None:
        state = _state(sessions, action_id)
    if state.final:
        return state.status
    nonce = state.nonce
    try:
        if state.tx_hash is None:
            sent = _send_batch(sessions, relayer, action_id, limits)
            if kick is not None:
                _kick_waiting(sessions, kick, full=sent)
            state = _state(sessions, action_id)
            nonce = state.nonce
        if state.final or state.tx_hash is None or nonce is None:
            return state.status  # failed before sending (expired, too large)
        with _driving(relayer, nonce) as mine:
            if not mine:
                # Another task is waiting for this batch and finishes every row of it;
                # this one frees its thread for the next batch. If that task dies, its
                # claim expires and the sweep's next wake-up drives the batch.
                return state.status
            row = _own_row(sessions, action_id)
            if row is None or ActionStatus(row.status).is_final:
                # Finished meanwhile (finish_batch finishes a batch's rows at once).
                return row.status if row is not None else state.status
            if row.nonce == nonce:
                _resend_if_lost(sessions, relayer, nonce, row)
            current = _replace_if_stuck(sessions, relayer, action_id, row)
            if current is not None:
                tx_hash, replaced = current
                mined = relayer.wait_mined(tx_hash, also=replaced, nonce=nonce)
                finish_batch(sessions, relayer, nonce, mined)
    except TransactionReverted as rev:
        _batch_reverted(sessions, relayer, nonce, rev)
        raise BatchReverted(f"batch {rev.tx_hash} reverted ({rev.code}); re-batching") from rev
    except ServiceError as exc:
        _update(sessions, action_id, error_code=exc.code, error=exc.reason)
        raise
    if current is None:  # the batch was reset meanwhile (never minable): batch it again
        return relay_forward(
            sessions=sessions, relayer=relayer, action_id=action_id, limits=limits, kick=kick
        )
    return _state(sessions, action_id).status


@dataclass(frozen=True)
class _OwnRow:
    """The task's row as the batch's driver reads it once: every row of a batch carries
    the batch's transaction (hash, raw, replaced hashes, fees, submission time)."""

    status: str
    tx_hash: str | None
    nonce: int | None
    raw_tx: str | None
    replaced: list[str]
    submitted_at: datetime | None


def _own_row(sessions: sessionmaker[Session], action_id: str) -> _OwnRow | None:
    with sessions() as session:
        row = session.execute(
            select(
                Action.status,
                Action.tx_hash,
                Action.nonce,
                Action.raw_tx,
                Action.replaced_tx_hashes,
                Action.submitted_at,
            ).where(Action.id == action_id)
        ).one_or_none()
    if row is None:
        return None
    return _OwnRow(
        status=row.status,
        tx_hash=row.tx_hash,
        nonce=row.nonce,
        raw_tx=row.raw_tx,
        replaced=list(row.replaced_tx_hashes or []),
        submitted_at=row.submitted_at,
    )


@contextmanager
def _driving(relayer: Relayer, nonce: int) -> Iterator[bool]:
    """Claim the waiting for batch ``nonce`` (one task at a time); yields False if another
    task holds the claim. The claim expires by itself if its holder dies."""
    lock = relayer.nonces.client.lock(
        f"gpucap:batch:{relayer.sender.lower()}:{nonce}",
        timeout=relayer.receipt_timeout + DRIVER_CLAIM_MARGIN_SECONDS,
        blocking=False,
    )
    if not lock.acquire():
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(LockNotOwnedError):
            lock.release()


# -- sending ------------------------------------------------------------------


def _claimable(session: Session, action_id: str, limit: int) -> list[_Row]:
    """``action_id`` first, then the oldest other forward rows not yet in any batch."""
    rows = session.execute(
        select(Action.id, Action.params)
        .where(
            Action.kind == FORWARD,
            Action.status == ActionStatus.PENDING.value,
            Action.tx_hash.is_(None),
            Action.id != action_id,
        )
        .order_by(Action.created_at, Action.id)
        .limit(max(limit - 1, 0))
    ).all()
    own = get_action(session, action_id)
    return [_Row(own.id, dict(own.params)), *(_Row(r.id, dict(r.params)) for r in rows)]


def _send_batch(
    sessions: sessionmaker[Session], relayer: Relayer, action_id: str, limits: BatchLimits
) -> int:
    """Send a batch holding ``action_id`` if it is in none; how many requests it sent."""
    with relayer.nonces.locked():
        with sessions() as session:  # re-read under the lock: another task may have batched it
            action = get_action(session, action_id)
            if action.tx_hash is not None or ActionStatus(action.status).is_final:
                return 0
            rows = _claimable(session, action_id, limits.max_requests)
        now = int(relayer.chain.latest_block()["timestamp"])
        live = []
        for row in rows:
            if row.params["deadline"] < now + EXPIRY_MARGIN_SECONDS:
                _finish(
                    sessions,
                    row.id,
                    status=ActionStatus.FAILED.value,
                    error_code="RequestExpired",
                    error=f"deadline {row.params['deadline']} passed (chain time {now}) "
                    "before the request could be relayed; sign a new request",
                )
            else:
                live.append(row)
        if not live:
            return 0
        fitted = _fit(sessions, relayer, live, limits)
        if fitted is None:
            return 0
        live, request = fitted
        signed = relayer.sign(request)
        _record(sessions, [r.id for r in live], signed)  # write-ahead, then send
        log.info(
            "forward batch of %d sent as %s (nonce %d, gas %d)",
            len(live),
            signed.tx_hash,
            signed.nonce,
            request.gas,
        )
        relayer.broadcast(signed)
        return len(live)


def _fit(
    sessions: sessionmaker[Session], relayer: Relayer, rows: list[_Row], limits: BatchLimits
) -> tuple[list[_Row], TxRequest] | None:
    """The longest prefix of ``rows`` whose batch fits: its gas limit within the cap,
    and ``limits.per_block`` batches like it within one block (_block_share), as a
    transaction with its gas limit set. The first row (the task's own) is always in
    it; if it cannot go even alone, it is failed with the reason and None returned."""
    block_gas = relayer.block_gas_limit()
    cap = min(limits.max_gas, block_gas)
    seen = _gas_seen.get(relayer.sender)
    if seen is not None:
        rows = rows[: max(1, seen.batch_size(cap, block_gas, limits.per_block))]
    while True:
        request = batch_tx(relayer.chain, [r.params for r in rows], relayer.sender)
        try:
            need = relayer.gas_need(
                request,
                forwarded_gas=max(int(r.params["gas"]) for r in rows),
                simulate_gas=block_gas,
                hint=seen.ratio if seen is not None else None,
            )
        except TransactionReverted as rev:
            # A non-atomic batch reverts only on a forwarder-level error; find the
            # request that causes it by sending the task's own alone.
            if len(rows) > 1:
                rows = rows[:1]
                continue
            _fail(sessions, rows[0].id, rev.code, rev.reason)
            return None
        if need.lowest_limit <= block_gas:  # not an out-of-gas cue: a real measurement
            seen = _GasSeen.of(need, len(rows))
            _gas_seen[relayer.sender] = seen
        limit = need.limit
        share = _block_share(need.used, limit, limits.per_block)
        if limit <= cap and (len(rows) == 1 or share <= block_gas):
            return rows, replace(request, gas=limit)
        if len(rows) == 1:
            _fail(
                sessions,
                rows[0].id,
                "RequestTooLarge",
                f"the request needs {limit} gas; a relayed batch may use at most {cap}",
            )
            return None
        room = min(cap / limit, block_gas / share)
        rows = rows[: max(1, min(len(rows) - 1, int(len(rows) * room)))]


def _block_share(used: float, limit: float, per_block: int) -> float:
    """The block gas ``per_block`` transactions like this one (``used``, ``limit``)
    take: a node fills a block with transactions while the gas they used plus the
    next one's gas LIMIT fits, so the last counts its limit, the others their use."""
    return (per_block - 1) * used + limit


@dataclass(frozen=True)
class _GasSeen:
    """Gas per request of the last batch a relayer simulated, and its lowest limit /
    gas used: the first guess at the next batch's size (each simulation of an
    over-full batch costs full runs) and its gas search hint."""

    used: float
    limit: float
    ratio: float

    @classmethod
    def of(cls, need: GasNeed, requests: int) -> _GasSeen:
        return cls(used=need.used / requests, limit=need.limit / requests, ratio=need.ratio)

    def batch_size(self, cap: int, block_gas: int, per_block: int) -> int:
        """Requests like these that fit the cap and ``per_block`` to a block, less
        SIZE_SLACK for requests a little heavier than these."""
        by_cap = cap / self.limit
        by_block = block_gas / _block_share(self.used, self.limit, per_block)
        return int(min(by_cap, by_block) * (1 - SIZE_SLACK))


def _fail(sessions: sessionmaker[Session], action_id: str, code: str, reason: str) -> None:
    _finish(
        sessions,
        action_id,
        status=ActionStatus.FAILED.value,
        error_code=code,
        error=reason,
        attempts=Action.attempts + 1,
    )


def _record(
    sessions: sessionmaker[Session],
    ids: Sequence[str],
    signed: SignedTx,
    *,
    replaced: list[str] | None = None,
) -> None:
    """Write the batch's transaction on all its rows at once (one database transaction)."""
    fees = signed.fees
    with sessions() as session:
        session.execute(
            update(Action)
            .where(Action.id.in_(ids), Action.status.in_(OPEN_STATUSES))
            .values(
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
        )
        session.commit()


# -- after sending ---------------------------------------------------------------


def _in_batch(sender: str, nonce: int) -> tuple[Any, ...]:
    """Where-clauses: the open rows of the batch sent as ``sender``'s transaction ``nonce``."""
    return (
        Action.kind == FORWARD,
        Action.sender == sender,
        Action.nonce == nonce,
        Action.status.in_(OPEN_STATUSES),
    )


def _batch_rows(session: Session, sender: str, nonce: int) -> list[Action]:
    """The open rows of the batch sent as ``sender``'s transaction ``nonce``, in batch order."""
    return list(
        session.scalars(
            select(Action).where(*_in_batch(sender, nonce)).order_by(Action.created_at, Action.id)
        )
    )


def _resend_if_lost(
    sessions: sessionmaker[Session], relayer: Relayer, nonce: int, row: _OwnRow
) -> None:
    """A recorded batch the node does not know (crash before broadcast, node restart).
    ``row``: an open row of the batch (all its rows carry the same transaction)."""
    tx_hash, raw_tx, replaced = row.tx_hash, row.raw_tx, row.replaced
    if tx_hash is None or raw_tx is None or relayer.is_known(tx_hash):
        return
    if any(relayer.is_mined(h) for h in replaced):
        return  # a transaction it replaced was mined: that is the batch done
    signed = SignedTx(sender=relayer.sender, nonce=nonce, tx_hash=tx_hash, raw_tx=raw_tx)
    with relayer.nonces.locked():
        try:
            relayer.broadcast(signed)
        except NonceConsumed:
            if relayer.mined_within([tx_hash, *replaced]):
                return  # it was mined: its receipt lagged the nonce; the wait finds it
            # Never minable, so none of its requests ran: back to pending, and the
            # retry batches them again.
            log.warning("batch %s never mined and nonce %d is used; re-batching", tx_hash, nonce)
            with sessions() as session:
                ids = [r.id for r in _batch_rows(session, relayer.sender, nonce)]
            _reset(sessions, ids)
            raise


def _reset(sessions: sessionmaker[Session], ids: Sequence[str], **values: Any) -> None:
    with sessions() as session:
        session.execute(
            update(Action)
            .where(Action.id.in_(ids), Action.status.in_(OPEN_STATUSES))
            .values(
                status=ActionStatus.PENDING.value,
                tx_hash=None,
                raw_tx=None,
                nonce=None,
                replaced_tx_hashes=None,
                submitted_at=None,
                **values,
            )
        )
        session.commit()


def _replace_if_stuck(
    sessions: sessionmaker[Session], relayer: Relayer, action_id: str, row: _OwnRow
) -> tuple[str, list[str]] | None:
    """Re-sign a batch pending longer than ``relayer.replace_after_seconds``: the same
    requests, same nonce, fees raised by ``relayer.fee_bump_percent``. Returns the hash
    to wait for and every hash the batch had before (any of them may be mined), or None
    if the row is in no batch any more. ``row``: the row as just read (young batches, the
    common case, need no lock and no other read)."""
    if row.tx_hash is None:
        return None
    if row.submitted_at is not None and (
        (utcnow() - row.submitted_at).total_seconds() < relayer.replace_after_seconds
    ):
        return row.tx_hash, row.replaced
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
            final = ActionStatus(action.status).is_final
            rows = [] if nonce is None else _batch_rows(session, relayer.sender, nonce)
            ids = [r.id for r in rows]
            params = [dict(r.params) for r in rows]
        if tx_hash is None:
            return None
        if final or nonce is None or old_fees is None or not rows:
            return tx_hash, replaced
        age = (utcnow() - submitted_at).total_seconds() if submitted_at else 0.0
        if age < relayer.replace_after_seconds:
            return tx_hash, replaced
        if any(relayer.is_mined(h) for h in [tx_hash, *replaced]):
            return tx_hash, replaced  # mined meanwhile: nothing to replace
        if relayer.mined_nonce() > nonce:
            return tx_hash, replaced  # the nonce is used; wait_mined/NonceConsumed sort it out
        try:
            signed = relayer.sign(
                batch_tx(relayer.chain, params, relayer.sender),
                nonce=nonce,
                min_fees=old_fees.bumped(relayer.fee_bump_percent),
            )
        except TransactionReverted as rev:
            log.info("batch %s: not replacing (%s)", tx_hash, rev.code)
            return tx_hash, replaced
        replaced = [*replaced, tx_hash]
        log.warning(
            "batch %s of %d pending for %.0fs; replaced by %s (nonce %d, max fee %d -> %d)",
            tx_hash,
            len(ids),
            age,
            signed.tx_hash,
            nonce,
            old_fees.max_fee_per_gas,
            signed.fees.max_fee_per_gas if signed.fees else 0,
        )
        _record(sessions, ids, signed, replaced=replaced)
        relayer.broadcast(signed)
        return signed.tx_hash, replaced


def finish_batch(
    sessions: sessionmaker[Session], relayer: Relayer, nonce: int, mined: Mined
) -> None:
    """Finish every open row of the mined batch from its receipt's events."""
    with sessions() as session:  # columns only: a batch has up to max_requests rows
        rows = [
            (r.id, dict(r.params))
            for r in session.execute(
                select(Action.id, Action.params)
                .where(*_in_batch(relayer.sender, nonce))
                .order_by(Action.created_at, Action.id)
            )
        ]
    if not rows:
        return
    receipt = mined.receipt if mined.receipt is not None else relayer.raw_receipt(mined.tx_hash)
    assert receipt is not None  # wait_mined just saw it
    outcomes = batch_outcomes(relayer.chain, receipt, [p for _, p in rows])
    confirmed = [row_id for (row_id, _), o in zip(rows, outcomes, strict=True) if o.success]
    with sessions() as session:
        if confirmed:
            session.execute(
                update(Action)
                .where(Action.id.in_(confirmed), Action.status.in_(OPEN_STATUSES))
                .values(
                    status=ActionStatus.CONFIRMED.value,
                    tx_hash=mined.tx_hash,  # the replacement, or the original if that one was mined
                    block_number=mined.block_number,
                    error=None,
                    error_code=None,
                )
            )
        for (row_id, _), outcome in zip(rows, outcomes, strict=True):
            if not outcome.success:
                session.execute(
                    update(Action)
                    .where(Action.id == row_id, Action.status.in_(OPEN_STATUSES))
                    .values(
                        status=ActionStatus.FAILED.value,
                        tx_hash=mined.tx_hash,
                        block_number=mined.block_number,
                        error=outcome.reason,
                        error_code=outcome.code,
                    )
                )
        session.commit()
    failed = len(rows) - len(confirmed)
    log.info(
        "forward batch %s mined in block %d: %d confirmed, %d failed",
        mined.tx_hash,
        mined.block_number,
        len(confirmed),
        failed,
    )


def _batch_reverted(
    sessions: sessionmaker[Session], relayer: Relayer, nonce: int, rev: TransactionReverted
) -> None:
    """The batch reverted as a whole: no request ran. Rows with submissions left go back
    to pending (re-batched by the retry); the others fail with the decoded reason."""
    with sessions() as session:
        rows = _batch_rows(session, relayer.sender, nonce)  # whichever of its txs reverted
        exhausted = [r.id for r in rows if r.attempts >= MAX_BATCH_ATTEMPTS]
        again = [r.id for r in rows if r.attempts < MAX_BATCH_ATTEMPTS]
    log.warning(
        "batch %s reverted (%s: %s): %d re-batched, %d failed",
        rev.tx_hash,
        rev.code,
        rev.reason,
        len(again),
        len(exhausted),
    )
    _reset(sessions, again, error_code=rev.code, error=rev.reason)
    for row_id in exhausted:
        _finish(
            sessions,
            row_id,
            status=ActionStatus.FAILED.value,
            error_code=rev.code,
            error=rev.reason,
            tx_hash=rev.tx_hash,
            block_number=rev.block_number,
        )
