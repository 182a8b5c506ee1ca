"""``actions.create_action``: one row per idempotency key, whichever way it looks first."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionKind, ActionStatus
from backend.services.chain import ChainIdentity
from backend.services.errors import IdempotencyConflict
from backend.services.relaying.actions import create_action, find_by_key

CHAIN = ChainIdentity(31337, "0x" + "11" * 32, "1:abc")
# The same node after anvil_reset and the same deployment again: a new genesis block.
RESET_CHAIN = ChainIdentity(31337, "0x" + "22" * 32, "1:abc")


@pytest.mark.parametrize("likely_new", [False, True])
def test_one_row_per_key_same_params_find_it_other_params_conflict(
    sessions: sessionmaker[Session], likely_new: bool
) -> None:
    kw = {"kind": ActionKind.FAUCET, "idempotency_key": "faucet:0xabc:1", "chain": CHAIN}
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


@pytest.mark.parametrize("other", [RESET_CHAIN, ChainIdentity(31337, CHAIN.genesis_hash, "9:def")])
def test_a_key_of_another_chain_is_a_new_action(
    sessions: sessionmaker[Session], other: ChainIdentity
) -> None:
    """After a reset (new genesis) or a redeploy, the same request is answered afresh:
    the old chain's row is never found for it, and stays as it was."""
    kw = {"kind": ActionKind.FAUCET, "idempotency_key": "faucet:0xabc:1", "params": {"a": 1}}
    with sessions() as session:
        old, created = create_action(session, chain=CHAIN, **kw)
        assert created
        session.execute(
            update(Action).where(Action.id == old.id).values(status=ActionStatus.CONFIRMED.value)
        )
        session.commit()
        assert find_by_key(session, "faucet:0xabc:1", other) is None
        new, created = create_action(session, chain=other, **kw)
        assert created and new.id != old.id and new.status == "pending"
        assert (new.chain_id, new.genesis_hash, new.deployment) == (
            other.chain_id,
            other.genesis_hash,
            other.deployment,
        )
        again, created = create_action(session, chain=other, **kw)
        assert not created and again.id == new.id
        assert find_by_key(session, "faucet:0xabc:1", CHAIN).status == "confirmed"  # type: ignore[union-attr]
