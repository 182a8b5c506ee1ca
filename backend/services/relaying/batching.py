"""Forward requests relayed many at once: one ``executeBatch`` transaction per batch.

A batch is a group of the transaction driver (``tx_driver.py``): the forward rows
one relayer transaction carries, identified by its (sender, nonce). This module
says what is particular to it; sending, re-sending, replacing and waiting are the
driver's, as for a single action.

- Picking the rows: the relay task's own first, then the oldest forward rows still
  pending without a transaction, up to ``BatchLimits.max_requests`` and what
  ``batch_sizing.fit`` lets through (its gas cap, and ``per_block`` batches to a
  block). A request this close to its deadline is failed instead of sent.
- Finishing: once a transaction of the batch is mined, each row is finished from
  the receipt's ``ExecutedForwardRequest`` events (forward.batch_outcomes):
  confirmed, or failed with the decoded reason.
- A batch that reverted as a whole (which a non-atomic batch only does when its
  gas was too low for what the chain did meanwhile) consumed no request nonce: its
  rows go back to pending and are batched again, up to ``MAX_BATCH_ATTEMPTS``
  submissions, then fail with the decoded reason.
- Kicks (``relay_kick.py``): rows a batch had no room for get a relay task of
  their own.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionKind, ActionStatus
from backend.services.errors import ServiceError, TransactionReverted
from backend.services.relaying import actions
from backend.services.relaying.actions import OpenRow, RowState
from backend.services.relaying.batch_sizing import BatchLimits, RequestTooLarge, fit
from backend.services.relaying.forward import batch_outcomes, batch_tx
from backend.services.relaying.relayer import Mined, Relayer, TxRequest
from backend.services.relaying.tx_driver import Prepared, drive

log = logging.getLogger(__name__)

FORWARD = ActionKind.FORWARD.value
# Submissions of one row (first send, replacements, re-batching after a whole-batch
# revert) before it fails instead of being batched again.
MAX_BATCH_ATTEMPTS = 5
# A request this close to its deadline is failed instead of sent: it would most
# likely be skipped as expired by the time the batch is mined.
EXPIRY_MARGIN_SECONDS = 2


class BatchReverted(ServiceError):
    """The whole batch reverted; its rows are pending again. Retry (re-batches them)."""

    code = "BatchReverted"


class Kick(Protocol):
    """The worker's side of ``services/relaying/relay_kick.py``: one relay task at a time is
    queued to claim the forward rows waiting for a batch."""

    def clear(self) -> None:
        """This task is about to read the waiting rows: later rows must kick again."""

    def __call__(self, action_id: str, *, backlog: bool = False) -> None:
        """Have a relay task for ``action_id`` claim the waiting rows now, unless one
        is queued already. ``backlog``: a full batch is waiting, so send one at once
        even then (a queued one may be the API's, held for the batching window)."""


def relay_forward(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    limits: BatchLimits,
    state: RowState | None = None,
    kick: Kick | None = None,
) -> str:
    """Drive the batch holding ``action_id`` (sending one first if it has none) until it is
    mined, and finish every row of it. Returns the row's status; retryable failures raise.
    ``state``: the row as the caller just read it (saves reading it again). ``kick``: the
    rows this task's batch leaves waiting get a relay task of their own."""
    if state is None:
        state = actions.row_state(sessions, action_id)
    after_send = None
    if kick is not None:
        kick.clear()
        if state.tx_hash is not None or state.final:
            # Another task batched this row; the rows that relied on this task's
            # claim (accepted while it was queued) go out with a task of their own.
            _kick_waiting(sessions, kick)

        def after_send(sent: int) -> None:
            _kick_waiting(sessions, kick, full=sent)

    return drive(
        sessions=sessions,
        relayer=relayer,
        action_id=action_id,
        group=ForwardBatch(limits),
        state=state,
        after_send=after_send,
    )


def _waiting(*, exclude: str | None = None) -> tuple[Any, ...]:
    """Where-clauses: forward rows pending without a transaction (in no batch)."""
    clauses = (
        Action.kind == FORWARD,
        Action.status == ActionStatus.PENDING.value,
        Action.tx_hash.is_(None),
    )
    return clauses if exclude is None else (*clauses, Action.id != exclude)


def _kick_waiting(sessions: sessionmaker[Session], kick: Kick, *, full: int = 0) -> None:
    """Kick for the oldest forward row not in any batch, if there is one; as a
    backlog if at least ``full`` rows (a full batch, ``full`` > 0) are waiting."""
    with sessions() as session:
        waiting = actions.open_rows(session, *_waiting(), limit=max(full, 1))
    if waiting:
        kick(waiting[0].id, backlog=0 < full <= len(waiting))


class ForwardBatch:
    """The driver's group for forward requests: many rows, one ``executeBatch``."""

    name = "forward batch"

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits

    def prepare(
        self, sessions: sessionmaker[Session], relayer: Relayer, own: OpenRow
    ) -> Prepared | None:
        with sessions() as session:
            others = actions.open_rows(
                session, *_waiting(exclude=own.id), limit=max(self.limits.max_requests - 1, 0)
            )
        now = int(relayer.chain.latest_block()["timestamp"])
        live = []
        for row in [own, *others]:
            if row.params["deadline"] < now + EXPIRY_MARGIN_SECONDS:
                actions.update_open(
                    sessions,
                    [row.id],
                    status=ActionStatus.FAILED.value,
                    error_code="RequestExpired",
                    error=f"deadline {row.params['deadline']} passed (chain time {now}) "
                    "before the request could be relayed; sign a new request",
                )
            else:
                live.append(row)
        if not live:
            return None
        try:
            rows, request = fit(relayer, live, self.limits)
        except (TransactionReverted, RequestTooLarge) as exc:
            actions.fail_unsent(sessions, live[0].id, exc.code, exc.reason)
            return None
        return Prepared([r.id for r in rows], request)

    def members(self, session: Session, sender: str, nonce: int, own_id: str) -> list[OpenRow]:
        return actions.open_rows(
            session, Action.kind == FORWARD, Action.sender == sender, Action.nonce == nonce
        )

    def request(self, relayer: Relayer, params: list[dict[str, Any]]) -> TxRequest:
        return batch_tx(relayer.chain, params, relayer.sender)

    def finish(
        self, sessions: sessionmaker[Session], relayer: Relayer, mined: Mined, rows: list[OpenRow]
    ) -> None:
        """Finish every open row of the mined batch from its receipt's events."""
        if not rows:
            return
        receipt = mined.receipt if mined.receipt is not None else relayer.raw_receipt(mined.tx_hash)
        assert receipt is not None  # wait_mined just saw it
        outcomes = batch_outcomes(relayer.chain, receipt, [r.params for r in rows])
        pairs = list(zip(rows, outcomes, strict=True))
        confirmed = [r.id for r, o in pairs if o.success]
        failed = [(r.id, o.code, o.reason) for r, o in pairs if not o.success]
        actions.finish_mined(sessions, mined, confirmed=confirmed, failed=failed)
        log.info(
            "forward batch %s mined in block %d: %d confirmed, %d failed",
            mined.tx_hash,
            mined.block_number,
            len(confirmed),
            len(failed),
            extra={
                "action_ids": [r.id for r in rows],
                "tx_hash": mined.tx_hash,
                "block_number": mined.block_number,
            },
        )

    def reverted(
        self, sessions: sessionmaker[Session], rev: TransactionReverted, rows: list[OpenRow]
    ) -> None:
        """No request ran. Rows with submissions left go back to pending (re-batched by
        the retry, which BatchReverted asks for); the others fail with the reason."""
        exhausted = [r.id for r in rows if r.attempts >= MAX_BATCH_ATTEMPTS]
        again = [r.id for r in rows if r.attempts < MAX_BATCH_ATTEMPTS]
        log.warning(
            "batch %s reverted (%s: %s): %d re-batched, %d failed",
            rev.tx_hash,
            rev.code,
            rev.reason,
            len(again),
            len(exhausted),
            extra={"action_ids": [r.id for r in rows], "tx_hash": rev.tx_hash},
        )
        actions.reset(sessions, again, error_code=rev.code, error=rev.reason)
        actions.update_open(
            sessions,
            exhausted,
            status=ActionStatus.FAILED.value,
            error_code=rev.code,
            error=rev.reason,
            tx_hash=rev.tx_hash,
            block_number=rev.block_number,
        )
        raise BatchReverted(f"batch {rev.tx_hash} reverted ({rev.code}); re-batching") from rev
