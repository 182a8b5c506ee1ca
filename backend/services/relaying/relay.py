"""What the relay task calls: drive the transaction of one action's row to a final status.

Forward requests go out many per transaction (``batching.ForwardBatch``); every
other kind goes out alone (``OneAction``, a group of one), its transaction built
by the kind's builder from the table the worker assembles. A kind whose intent
others may carry out first (a permit anyone can submit) also has an in-effect check:
asked before sending and after a revert, it finishes the row as confirmed with
nothing (more) sent. Either way the transaction driver (``tx_driver.py``) does the
sending, re-sending, replacing and waiting, and is idempotent: a row that has a
transaction is checked (and that same transaction re-sent if the node lost it), never
sent twice; final rows are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionStatus
from backend.services.errors import TransactionReverted
from backend.services.relaying import actions
from backend.services.relaying.actions import OpenRow
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.batching import FORWARD, Kick, relay_forward
from backend.services.relaying.relayer import (
    InEffectCheck,
    Mined,
    Relayer,
    RequestBuilder,
    TxRequest,
)
from backend.services.relaying.tx_driver import Prepared, drive


def relay_action(
    *,
    sessions: sessionmaker[Session],
    relayer: Relayer,
    action_id: str,
    builders: Mapping[str, RequestBuilder],
    limits: BatchLimits | None = None,
    kick: Kick | None = None,
    in_effect: Mapping[str, InEffectCheck] | None = None,
) -> str:
    """Drive the action forward; returns its status. Retryable failures raise
    ServiceError. ``builders``: kind -> its transaction, for kinds that go out alone
    (``backend.worker.kinds``); ``in_effect``: kind -> its in-effect check, for kinds
    that have one; ``limits`` and ``kick``: for forward batches."""
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
        group=OneAction(builders[state.kind], _bound((in_effect or {}).get(state.kind), relayer)),
        state=state,
    )


def _bound(check: InEffectCheck | None, relayer: Relayer) -> BoundCheck | None:
    if check is None:
        return None
    return lambda params: check(relayer.chain, params)


# An in-effect check with its chain: the row's params -> (code, reason) or None.
BoundCheck = Callable[[dict[str, Any]], tuple[str, str] | None]


class OneAction:
    """The driver's group for an action that is a transaction of its own."""

    name = "action"

    def __init__(self, build: RequestBuilder, in_effect: BoundCheck | None = None) -> None:
        self.build = build
        self.in_effect = in_effect

    def prepare(
        self, sessions: sessionmaker[Session], relayer: Relayer, own: OpenRow
    ) -> Prepared | None:
        if self._done_already(sessions, [own.id], own.params):
            return None
        # A builder may simulate and raise TransactionReverted (decoded): the row fails,
        # unless someone carried it out meanwhile (between the check and the simulation).
        try:
            return Prepared([own.id], self.build(relayer.chain, own.params))
        except TransactionReverted:
            if self._done_already(sessions, [own.id], own.params):
                return None
            raise

    def _done_already(
        self, sessions: sessionmaker[Session], ids: list[str], params: dict[str, Any], **mined: Any
    ) -> bool:
        """Confirm the rows with the check's code and reason if what they ask holds on
        the chain already (someone else's transaction did it)."""
        if self.in_effect is None:
            return False
        done = self.in_effect(params)
        if done is None:
            return False
        code, reason = done
        actions.update_open(
            sessions,
            ids,
            status=ActionStatus.CONFIRMED.value,
            error_code=code,
            error=reason,
            **mined,
        )
        return True

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
        ids = [r.id for r in rows]
        mined: dict[str, Any] = {"block_number": rev.block_number}
        if rev.tx_hash:
            mined["tx_hash"] = rev.tx_hash
        # A permit front-run by another sender reverts ours, and is done all the same.
        if rows and self._done_already(sessions, ids, rows[0].params, **mined):
            return
        actions.update_open(
            sessions,
            ids,
            status=ActionStatus.FAILED.value,
            error_code=rev.code,
            error=rev.reason,
            **mined,
        )
