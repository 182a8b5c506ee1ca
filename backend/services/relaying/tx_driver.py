"""One transaction's life, written once: sign, record, send, re-send it if the node
forgot it, replace it with higher fees if stuck, finish when any of its hashes is mined.

Its unit is a group: the rows one transaction carries, which share its sender and
nonce. A single action is a group of one; a batch of forward requests
(``batching.py``) is a group of many. What differs between them is the ``Group``:
which rows go out together, which transaction they make, and how a mined or
reverted transaction finishes them. The rest is here:

- a row with no transaction: under the sender's nonce lock, the group picks the
  rows (the task's own first) and builds the transaction; it is signed, recorded
  on every row (write-ahead: same hash, nonce and raw transaction), then sent;
- whichever task runs for any row of a group may drive the whole group, one task
  at a time (an expiring Redis claim per sender and nonce): the others return at
  once, so a worker thread is never parked on a transaction someone already waits
  for;
- a recorded transaction the node lost is re-sent as recorded (same hash); if its
  nonce was taken meanwhile it can never be mined, so its rows go back to pending
  and the retry sends them again;
- a transaction pending longer than ``relayer.replace_after_seconds`` is re-signed
  with the same nonce, the same rows and fees raised by ``relayer.fee_bump_percent``;
  every hash stays listed, since any one of them may be the one mined;
- once one is mined the group finishes its rows from the receipt; final rows are
  never rewritten, so a duplicate task or a redelivery after SIGKILL changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ActionStatus, utcnow
from backend.services.claims import claimed
from backend.services.errors import ServiceError, TransactionReverted
from backend.services.relaying import actions
from backend.services.relaying.actions import OpenRow, RowState, SentRow
from backend.services.relaying.relayer import Mined, NonceConsumed, Relayer, SignedTx, TxRequest

log = logging.getLogger(__name__)

# How long a task's claim on waiting for a transaction outlives its receipt timeout.
DRIVER_CLAIM_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class Prepared:
    """The rows a new transaction carries (the task's own first) and its request."""

    ids: list[str]
    request: TxRequest


class Group(Protocol):
    """What one kind of group decides; the driver does the rest."""

    name: str  # for the logs: "action", "forward batch"

    def prepare(
        self, sessions: sessionmaker[Session], relayer: Relayer, own: OpenRow
    ) -> Prepared | None:
        """Called under the sender's nonce lock, ``own`` in no transaction yet: the rows
        of a new transaction and its request, or None if there is nothing to send (the
        rows that cannot go were failed with their reason). May raise
        TransactionReverted: ``own`` then fails with the decoded reason."""

    def members(self, session: Session, sender: str, nonce: int, own_id: str) -> list[OpenRow]:
        """The open rows carried by ``sender``'s transaction ``nonce``, in their order."""

    def request(self, relayer: Relayer, params: list[dict[str, Any]]) -> TxRequest:
        """The transaction of these rows again (to replace a stuck one)."""

    def finish(
        self, sessions: sessionmaker[Session], relayer: Relayer, mined: Mined, rows: list[OpenRow]
    ) -> None:
        """Finish ``rows`` from their mined transaction."""

    def reverted(
        self, sessions: sessionmaker[Session], rev: TransactionReverted, rows: list[OpenRow]
    ) -> None:
        """Their transaction was mined and reverted as a whole. May raise (to retry)."""


def drive(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    group: Group,
    state: RowState | None = None,
    after_send: Callable[[int], None] | None = None,
) -> str:
    """Drive the transaction carrying ``action_id`` (sending one first if it has none)
    until it is mined, and finish every row of it. Returns the row's status; retryable
    failures raise ServiceError. ``state``: the row as the caller just read it.
    ``after_send``: called with how many rows a new transaction carried."""
    if state is None:
        state = actions.row_state(sessions, action_id)
    if state.final:
        return state.status
    nonce = state.nonce
    current: tuple[str, list[str]] | None = None
    try:
        if state.tx_hash is None:
            sent = _send(sessions, relayer, action_id, group)
            if after_send is not None:
                after_send(sent)
            state = actions.row_state(sessions, action_id)
            nonce = state.nonce
        if state.final or state.tx_hash is None or nonce is None:
            return state.status  # failed before sending (would revert, expired, too large)
        with claimed(
            relayer.nonces.client,
            # Named when only batches had a claim; kept, so workers of either version
            # see each other's claims while a deployment rolls over.
            f"gpucap:batch:{relayer.sender.lower()}:{nonce}",
            seconds=relayer.receipt_timeout + DRIVER_CLAIM_MARGIN_SECONDS,
            lease_seconds=relayer.lease_seconds,
        ) as mine:
            if not mine:
                # Another task is waiting for this transaction and finishes every row of
                # it; this one frees its thread. If that task dies, its claim expires
                # a lease later and this row's re-check (worker.tasks) drives the group.
                return state.status
            with sessions() as session:
                row = actions.sent_row(session, action_id)
            if row is None or row.final:
                return row.status if row is not None else state.status  # finished meanwhile
            if row.nonce == nonce:
                _resend_if_lost(sessions, relayer, group, action_id, nonce, row)
            current = _replace_if_stuck(sessions, relayer, group, action_id, row)
            if current is not None:
                tx_hash, replaced = current
                mined = relayer.wait_mined(tx_hash, also=replaced, nonce=nonce)
                group.finish(
                    sessions, relayer, mined, _members(sessions, relayer, group, nonce, action_id)
                )
    except TransactionReverted as rev:
        assert nonce is not None  # only a mined transaction reverts here
        group.reverted(sessions, rev, _members(sessions, relayer, group, nonce, action_id))
        return actions.row_state(sessions, action_id).status
    except ServiceError as exc:
        # Retryable: note why on the row (it stays pending/submitted) and let Celery retry.
        actions.note_error(sessions, action_id, exc.code, exc.reason)
        raise
    if current is None:  # reset meanwhile (never minable): send it again
        return drive(
            sessions=sessions,
            relayer=relayer,
            action_id=action_id,
            group=group,
            after_send=after_send,
        )
    return actions.row_state(sessions, action_id).status


def _members(
    sessions: sessionmaker[Session], relayer: Relayer, group: Group, nonce: int, own_id: str
) -> list[OpenRow]:
    with sessions() as session:
        return group.members(session, relayer.sender, nonce, own_id)


def _send(sessions: sessionmaker[Session], relayer: Relayer, action_id: str, group: Group) -> int:
    """Send a transaction carrying ``action_id`` if it is in none; how many rows it carries."""
    with relayer.nonces.locked():
        with sessions() as session:  # re-read under the lock: another task may have sent it
            own = actions.get_action(session, action_id)
            if own.tx_hash is not None or ActionStatus(own.status).is_final:
                return 0
            member = OpenRow(own.id, dict(own.params), own.attempts)
        try:
            prepared = group.prepare(sessions, relayer, member)
            if prepared is None:
                return 0
            signed = relayer.sign(prepared.request)
        except TransactionReverted as rev:
            actions.fail_unsent(sessions, action_id, rev.code, rev.reason)
            return 0
        actions.record_sent(sessions, prepared.ids, signed)  # write-ahead, then send
        log.info(
            "%s of %d sent as %s (nonce %d, gas %s)",
            group.name,
            len(prepared.ids),
            signed.tx_hash,
            signed.nonce,
            prepared.request.gas if prepared.request.gas is not None else "estimated",
            extra={"action_ids": prepared.ids, "tx_hash": signed.tx_hash, "nonce": signed.nonce},
        )
        relayer.broadcast(signed)
        return len(prepared.ids)


def _resend_if_lost(
    sessions: sessionmaker[Session],
    relayer: Relayer,
    group: Group,
    action_id: str,
    nonce: int,
    row: SentRow,
) -> None:
    """A recorded transaction the node does not know (crash before broadcast, node
    restart). ``row``: an open row of the group (all carry the same transaction)."""
    tx_hash, raw_tx, replaced = row.tx_hash, row.raw_tx, row.replaced
    if tx_hash is None or raw_tx is None or relayer.is_known(tx_hash):
        return
    # A transaction this one replaced may be the one mined (then the replacement is
    # gone from the pool): that is the group done, never a reason to re-sign.
    if any(relayer.is_mined(h) for h in replaced):
        return
    signed = SignedTx(sender=relayer.sender, nonce=nonce, tx_hash=tx_hash, raw_tx=raw_tx)
    with relayer.nonces.locked():
        try:
            relayer.broadcast(signed)
        except NonceConsumed:
            if relayer.mined_within([tx_hash, *replaced]):
                return  # it was mined: its receipt lagged the nonce; the wait finds it
            # Never minable, so none of its rows happened: back to pending, and the
            # retry sends them again.
            log.warning(
                "%s %s never mined and nonce %d is used; sending its rows again",
                group.name,
                tx_hash,
                nonce,
            )
            rows = _members(sessions, relayer, group, nonce, action_id)
            actions.reset(sessions, [r.id for r in rows])
            raise


def _replace_if_stuck(
    sessions: sessionmaker[Session],
    relayer: Relayer,
    group: Group,
    action_id: str,
    row: SentRow,
) -> tuple[str, list[str]] | None:
    """Re-sign a transaction pending longer than ``relayer.replace_after_seconds``: the
    same rows, same nonce, fees raised by ``relayer.fee_bump_percent`` (a node only swaps
    a pending transaction for one paying enough more). Returns the hash to wait for and
    every hash the group had before (any of them may be mined), or None if the row is
    in no transaction any more. ``row``: the row as just read (young transactions, the
    common case, need no lock and no other read)."""
    if row.tx_hash is None:
        return None
    if row.submitted_at is not None and (
        (utcnow() - row.submitted_at).total_seconds() < relayer.replace_after_seconds
    ):
        return row.tx_hash, row.replaced
    with relayer.nonces.locked():
        with sessions() as session:
            now = actions.sent_row(session, action_id)
            if now is None or now.tx_hash is None:
                return None
            tx_hash, nonce, replaced, old_fees = now.tx_hash, now.nonce, now.replaced, now.fees
            rows = [] if nonce is None else group.members(session, relayer.sender, nonce, action_id)
        if now.final or nonce is None or old_fees is None or not rows:
            return tx_hash, replaced
        age = (utcnow() - now.submitted_at).total_seconds() if now.submitted_at else 0.0
        if age < relayer.replace_after_seconds:
            return tx_hash, replaced
        if any(relayer.is_mined(h) for h in [tx_hash, *replaced]):
            return tx_hash, replaced  # mined meanwhile: nothing to replace
        if relayer.mined_nonce() > nonce:
            return tx_hash, replaced  # the nonce is used; wait_mined/NonceConsumed sort it out
        try:
            signed = relayer.sign(
                group.request(relayer, [r.params for r in rows]),
                nonce=nonce,
                min_fees=old_fees.bumped(relayer.fee_bump_percent),
            )
        except TransactionReverted as rev:
            # It would revert now; the pending one ran its checks earlier and may
            # still succeed. Keep waiting for it rather than replacing it.
            log.info("%s %s: not replacing (%s)", group.name, tx_hash, rev.code)
            return tx_hash, replaced
        replaced = [*replaced, tx_hash]
        log.warning(
            "%s %s of %d pending for %.0fs; replaced by %s (nonce %d, max fee %d -> %d)",
            group.name,
            tx_hash,
            len(rows),
            age,
            signed.tx_hash,
            nonce,
            old_fees.max_fee_per_gas,
            signed.fees.max_fee_per_gas if signed.fees else 0,
            extra={"action_ids": [r.id for r in rows], "tx_hash": signed.tx_hash, "nonce": nonce},
        )
        actions.record_sent(sessions, [r.id for r in rows], signed, replaced=replaced)
        relayer.broadcast(signed)
        return signed.tx_hash, replaced
