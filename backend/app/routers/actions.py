"""Status of a user action: pending → submitted → confirmed | failed (code + reason)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app.deps import SessionDep
from backend.app.schemas import ActionPublic, ErrorPublic
from backend.services.relaying.actions import get_action

router = APIRouter(prefix="/actions", tags=["actions"])


@router.get("/{action_id}", name="read_action", responses={404: {"model": ErrorPublic}})
def read_action(action_id: str, session: SessionDep) -> ActionPublic:
    """The action's current state; poll it after a 202."""
    return ActionPublic.model_validate(get_action(session, action_id))
