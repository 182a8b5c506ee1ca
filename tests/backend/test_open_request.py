"""One open forward request per sender (POST /api/v1/forward answers 409 otherwise):
``forward.open_request_of`` finds exactly the sender's pending or submitted request."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Action, ActionKind, ActionStatus
from backend.services.chain import ChainIdentity
from backend.services.relaying.actions import create_action
from backend.services.relaying.forward import KEY_PREFIX, open_request_of

CHAIN = ChainIdentity(31337, "0x" + "11" * 32, "1:abc")
ALICE = "0xAbCdEf0000000000000000000000000000000001"
# Alice's address with one more digit changed: a neighbour in the key order.
ALICE_NEIGHBOUR = "0xAbCdEf0000000000000000000000000000000002"


def _forward(session: Session, sender: str, nonce: int, status: ActionStatus) -> Action:
    action, _ = create_action(
        session,
        kind=ActionKind.FORWARD,
        idempotency_key=f"{KEY_PREFIX}{sender.lower()}:{nonce}:{'ab' * 16}",
        params={"sender": sender, "nonce": nonce},
        chain=CHAIN,
    )
    session.execute(update(Action).where(Action.id == action.id).values(status=status.value))
    session.commit()
    return action


def test_only_the_senders_open_request_is_found(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _forward(session, ALICE, 0, ActionStatus.CONFIRMED)
        _forward(session, ALICE, 1, ActionStatus.FAILED)
        _forward(session, ALICE_NEIGHBOUR, 0, ActionStatus.PENDING)
        assert open_request_of(session, ALICE) is None  # final rows are not open

        submitted = _forward(session, ALICE, 2, ActionStatus.SUBMITTED)
        found = open_request_of(session, ALICE)
        assert found is not None and found.id == submitted.id
        # The address's case does not matter (keys hold it lower-cased).
        assert open_request_of(session, ALICE.lower()).id == submitted.id  # type: ignore[union-attr]
        assert open_request_of(session, ALICE.upper().replace("0X", "0x")) is not None

        neighbour = open_request_of(session, ALICE_NEIGHBOUR)
        assert neighbour is not None and neighbour.params["sender"] == ALICE_NEIGHBOUR
        assert open_request_of(session, "0x" + "00" * 20) is None


def test_other_kinds_with_a_like_key_are_not_forward_requests(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        create_action(
            session,
            kind=ActionKind.FAUCET,
            idempotency_key=f"{KEY_PREFIX}{ALICE.lower()}:9:x",
            params={},
            chain=CHAIN,
        )
        assert open_request_of(session, ALICE) is None
