"""Mined is not final: re-open the actions whose transaction left the chain, and mark
final those buried under enough blocks.

A mined row (confirmed, or failed by its transaction's outcome) holds the block its
transaction was mined in. Until ``confirmations`` blocks are mined on top of it
(``Action.final``), each review asks the node for its transaction's receipt:

- no receipt: a reorg took the transaction away. The row is re-opened as it was when
  it was sent (status ``submitted``, same transaction): the transaction driver re-sends
  the recorded transaction if its nonce is still free, or, if another transaction took
  the nonce, puts the row back to pending and sends the same intent with a fresh nonce
  (``tx_driver``). So every accepted action runs exactly once on the surviving chain.
- a receipt in another block: the transaction was mined again; the row follows it.
- buried deep enough: ``final``. A reorg deeper than that (the indexer reports its
  common ancestor) re-opens final rows above it too: the chain is the truth.

Open rows of another chain (a reset node, another deployment) fail with
``ChainChanged``: their transaction was meant for a chain that is gone, and sending it
to this one would act on a request nobody made here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import OPEN_STATUSES, Action, ActionKind, ActionStatus, utcnow
from backend.services.chain import Chain, ChainIdentity, result_of
from backend.services.relaying.actions import create_action, on_chain

log = logging.getLogger(__name__)

MINED_STATUSES = (ActionStatus.CONFIRMED.value, ActionStatus.FAILED.value)
# Receipts per JSON-RPC batch.
RECEIPT_BATCH = 100


@dataclass
class FinalityReport:
    reopened: list[str] = field(default_factory=list)  # back to submitted: enqueue them
    finalized: int = 0
    moved: int = 0  # mined again in another block
    abandoned: list[str] = field(default_factory=list)  # open rows of another chain


@dataclass(frozen=True)
class _Mined:
    id: str
    tx_hash: str
    block_number: int
    final: bool


def review_mined(
    sessions: sessionmaker[Session],
    chain: Chain,
    identity: ChainIdentity,
    *,
    confirmations: int,
    reorged_to: int | None = None,
    ids: list[str] | None = None,
) -> FinalityReport:
    """Review this chain's mined, not yet final rows (and the final ones above
    ``reorged_to``, a reorg's common ancestor); ``ids``: only these rows."""
    report = FinalityReport()
    with sessions() as session:
        report.abandoned = _abandon_other_chains(session, identity)
        recheck = Action.final == false()
        if reorged_to is not None:
            recheck = or_(recheck, Action.block_number > reorged_to)
        where: list[Any] = [
            *on_chain(identity),
            Action.status.in_(MINED_STATUSES),
            Action.block_number.is_not(None),
            Action.tx_hash.is_not(None),
            recheck,
        ]
        if ids is not None:
            where.append(Action.id.in_(ids))
        rows = [
            _Mined(r.id, r.tx_hash, r.block_number, r.final)
            for r in session.execute(
                select(Action.id, Action.tx_hash, Action.block_number, Action.final).where(*where)
            )
        ]
    if not rows:
        return report
    head = int(chain.raw("eth_blockNumber", "eth_blockNumber", []), 16)
    mined_at = _receipt_blocks(chain, sorted({r.tx_hash for r in rows}))
    gone: list[str] = []
    buried: list[str] = []
    moved: dict[str, int] = {}
    for row in rows:
        block = mined_at.get(row.tx_hash)
        if block is None:
            gone.append(row.id)
            continue
        if block != row.block_number:
            moved[row.id] = block
        if not row.final and block <= head - confirmations:
            buried.append(row.id)
    with sessions() as session:
        if gone:
            log.warning(
                "%d action(s) lost their transaction to a reorg; re-opened: %s",
                len(gone),
                ", ".join(gone),
            )
            _reopen(session, gone)
        for row_id, block in moved.items():
            session.execute(update(Action).where(Action.id == row_id).values(block_number=block))
        if buried:
            session.execute(
                update(Action)
                .where(Action.id.in_(buried), Action.status.in_(MINED_STATUSES))
                .values(final=True)
            )
        session.commit()
    report.reopened = gone
    report.finalized = len(buried)
    report.moved = len(moved)
    return report


def plan_action(
    session: Session,
    chain: Chain,
    identity: ChainIdentity,
    *,
    kind: ActionKind,
    idempotency_key: str,
    params: dict[str, Any],
    on_reopen: Callable[[str], Any] | None = None,
) -> str | None:
    """A keeper's row for work the chain says is due now: its id when it is to be sent
    (new, or re-opened because its transaction left the chain: then ``on_reopen`` hears
    of it too), else None (in flight or done). Keepers plan from the chain, so the row's
    own status is not the last word."""
    action, created = create_action(
        session, kind=kind, idempotency_key=idempotency_key, params=params, chain=identity
    )
    if created:
        return action.id
    if not reopen_if_gone(session, chain, action):
        return None
    if on_reopen is not None:
        on_reopen(action.id)
    return action.id


def reopen_if_gone(session: Session, chain: Chain, action: Action) -> bool:
    """For a keeper that finds its row mined while the chain says the work is still due:
    if the row's transaction is gone (a reorg the review has not seen yet), re-open the
    row now and return True (the caller enqueues it)."""
    if action.status not in MINED_STATUSES or action.tx_hash is None:
        return False
    if action.block_number is None or _receipt_blocks(chain, [action.tx_hash]):
        return False
    log.warning(
        "action %s: its transaction %s left the chain; re-opened", action.id, action.tx_hash
    )
    _reopen(session, [action.id])
    session.commit()
    return True


def _reopen(session: Session, ids: list[str]) -> None:
    """Back to ``submitted`` with the transaction they had: the driver re-sends it, or
    the same intent with a fresh nonce if the old one is taken."""
    session.execute(
        update(Action)
        .where(Action.id.in_(ids), Action.status.in_(MINED_STATUSES))
        .values(
            status=ActionStatus.SUBMITTED.value,
            final=False,
            block_number=None,
            error=None,
            error_code=None,
            # A fresh send time: the driver re-sends the recorded transaction instead
            # of taking it for a stuck one to replace at once.
            submitted_at=utcnow(),
            last_enqueued_at=None,
        )
    )


def _abandon_other_chains(session: Session, identity: ChainIdentity) -> list[str]:
    """Fail the open rows made on another chain (rows older than the chain columns,
    NULL there, are left to the relayer as before)."""
    other = or_(
        Action.chain_id != identity.chain_id,
        Action.genesis_hash != identity.genesis_hash,
        Action.deployment != identity.deployment,
    )
    where = and_(Action.status.in_(OPEN_STATUSES), Action.genesis_hash.is_not(None), other)
    ids = list(session.scalars(select(Action.id).where(where)))
    if ids:
        log.warning("%d open action(s) of another chain failed: %s", len(ids), ", ".join(ids))
        session.execute(
            update(Action)
            .where(Action.id.in_(ids), Action.status.in_(OPEN_STATUSES))
            .values(
                status=ActionStatus.FAILED.value,
                error_code="ChainChanged",
                error="made on a chain that is gone (the node was reset or redeployed); "
                "send the request again",
            )
        )
        session.commit()
    return ids


def _receipt_blocks(chain: Chain, tx_hashes: list[str]) -> dict[str, int]:
    """Block number of each transaction the node has a receipt for."""
    found: dict[str, int] = {}
    for start in range(0, len(tx_hashes), RECEIPT_BATCH):
        chunk = tx_hashes[start : start + RECEIPT_BATCH]
        answers = chain.batch(
            "reading receipts", [("eth_getTransactionReceipt", [h]) for h in chunk]
        )
        for tx_hash, answer in zip(chunk, answers, strict=True):
            receipt = result_of(answer, "eth_getTransactionReceipt")
            if receipt is not None:
                found[tx_hash] = int(receipt["blockNumber"], 16)
    return found
