"""How a route answers about an action it relays: accepted (202 for a new action, 200
for the same one asked again, with the URL to follow it at), or refused because the
signer has another one in flight (409 ``RequestInFlight``, naming it). The faucet,
forward requests, market fills and permits answer alike."""

from __future__ import annotations

from fastapi import Request, Response

from backend.app.errors import ApiError
from backend.app.schemas import ForwardAccepted
from backend.db.models import Action
from backend.services.relaying.forward import OpenRequest


def follow_url(request: Request, response: Response, action_id: str, *, created: bool) -> str:
    """Sets 202 (a new action) or 200 (an existing one: a retry); where to follow it."""
    response.status_code = 202 if created else 200
    return str(request.url_for("read_action", action_id=action_id))


def in_flight(what: str, action_id: str, then: str) -> ApiError:
    """409 RequestInFlight: ``what`` is in flight as ``action_id``; ``then`` says what to do."""
    return ApiError(
        409,
        "RequestInFlight",
        f"{what} in flight (action {action_id}); {then}",
        action_id=action_id,
    )


def forward_accepted(
    request: Request, response: Response, action: Action | OpenRequest, *, created: bool
) -> ForwardAccepted:
    """A relayed forward request's answer (POST /api/v1/forward, /api/v1/market/fills)."""
    return ForwardAccepted(
        action_id=action.id,
        status=action.status,
        status_url=follow_url(request, response, action.id, created=created),
        contract=action.params["contract"],
        function=action.params["function"],
        nonce=action.params["nonce"],
    )
