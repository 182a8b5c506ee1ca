"""``actions.create_action``: one row per idempotency key, whichever way it looks first."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionKind, ActionStatus
from backend.services.errors import IdempotencyConflict
from backend.services.relaying.actions import create_action


@pytest.mark.parametrize("likely_new", [False, True])
def test_one_row_per_key_same_params_find_it_other_params_conflict(
    sessions: sessionmaker[Session], likely_new: bool
) -> None:
    kw = {"kind": ActionKind.FAUCET, "idempotency_key": "faucet:0xabc:1"}
    with sessions() as session:
        first, created = create_action(session, params={"a": 1}, likely_new=likely_new, **kw)
        assert created and first.status == ActionStatus.PENDING.value and first.attempts == 0
        again, created = create_action(session, params={"a": 1}, likely_new=likely_new, **kw)
        assert not created and again.id == first.id
        with pytest.raises(IdempotencyConflict, match="used for another request"):
            create_action(session, params={"a": 2}, likely_new=likely_new, **kw)
    with sessions() as session:  # what was written is what create_action returned
        (row,) = session.scalars(select(Action)).all()
        assert (row.id, row.params, row.status) == (first.id, {"a": 1}, "pending")
        assert row.created_at == first.created_at and row.updated_at == first.updated_at
        assert session.scalar(select(func.count()).select_from(Action)) == 1
