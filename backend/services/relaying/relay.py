"""What the relay task calls: drive the transaction of one action's row to a final status.

Forward requests go out many per transaction (``batching.ForwardBatch``); every
other kind goes out alone (``OneAction``, a group of one), its transaction built
by the kind's builder from the table the worker assembles. Either way the
transaction driver (``tx_driver.py``) does the sending, re-sending, replacing and
waiting, and is idempotent: a row that has a transaction is checked (and that same
transaction re-sent if the node lost it), never sent twice; final rows are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionStatus
from backend.services.errors import TransactionReverted
from backend.services.relaying import actions
from backend.services.relaying.actions import OpenRow
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.batching import FORWARD, Kick, relay_forward
from backend.services.relaying.relayer import Mined, Relayer, RequestBuilder, TxRequest
from backend.services.relaying.tx_driver import Prepared, drive


def relay_action(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    builders: Mapping[str, RequestBuilder],
    limits: BatchLimits | None = None,
    kick: Kick | None = None,
) -> str:
    """Drive the action forward; returns its status. Retryable failures raise
    ServiceError. ``builders``: kind -> its transaction, for kinds that go out alone
    (``backend.worker.kinds``); ``limits`` and ``kick``: for forward batches."""
    state = actions.row_state(sessions, action_id)
    if state.kind == FORWARD:
        return relay_forward(
            sessions=sessions,
            relayer=relayer,
            action_id=action_id,
            limits=limits if limits is not None else BatchLimits(),
            state=state,
            kick=kick,
        )
    return drive(
        sessions=sessions,
        relayer=relayer,
        action_id=action_id,
        group=OneAction(builders[state.kind]),
        state=state,
    )


class OneAction:
    """The driver's group for an action that is a transaction of its own."""

    name = "action"

    def __init__(self, build: RequestBuilder) -> None:
        self.build = build

    def prepare(
        self, sessions: sessionmaker[Session], relayer: Relayer, own: OpenRow
    ) -> Prepared | None:
        # A builder may simulate and raise TransactionReverted (decoded): the row fails.
        return Prepared([own.id], self.build(relayer.chain, own.params))

    def members(self, session: Session, sender: str, nonce: int, own_id: str) -> list[OpenRow]:
        return actions.open_rows(
            session, Action.id == own_id, Action.sender == sender, Action.nonce == nonce
        )

    def request(self, relayer: Relayer, params: list[dict[str, Any]]) -> TxRequest:
        (own,) = params
        return self.build(relayer.chain, own)

    def finish(
        self, sessions: sessionmaker[Session], relayer: Relayer, mined: Mined, rows: list[OpenRow]
    ) -> None:
        actions.finish_mined(sessions, mined, confirmed=[r.id for r in rows])

    def reverted(
        self, sessions: sessionmaker[Session], rev: TransactionReverted, rows: list[OpenRow]
    ) -> None:
        actions.update_open(
            sessions,
            [r.id for r in rows],
            status=ActionStatus.FAILED.value,
            error_code=rev.code,
            error=rev.reason,
            block_number=rev.block_number,
            **({"tx_hash": rev.tx_hash} if rev.tx_hash else {}),
        )
