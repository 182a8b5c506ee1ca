"""POST /faucet: fund a wallet from the test stablecoin's faucet, relayed (no gas needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from backend.app.deps import ChainDep, EnqueueDep, SessionDep, client_address
from backend.app.errors import ApiError
from backend.app.relayed import follow_url
from backend.app.schemas import ActionAccepted, ErrorPublic, FaucetCooldownPublic, FaucetCreate
from backend.db.models import Action, ActionKind
from backend.services.relaying.actions import create_action, find_by_key, mark_enqueued
from backend.services.relaying.client_limit import ClientLimit
from backend.services.relaying.faucet import default_idempotency_key, faucet_state

router = APIRouter(tags=["faucet"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=120,
        description="Retries with the same key return the same action. Default: one per "
        "address and faucet cooldown window.",
    ),
]


@router.post(
    "/faucet",
    status_code=202,
    responses={
        200: {"model": ActionAccepted, "description": "Same idempotency key: the existing action"},
        404: {
            "model": ErrorPublic,
            "description": "`FaucetUnavailable`: this chain's stablecoin has no faucet (the "
            "test token is deployed on the dev chain only)",
        },
        409: {"model": ErrorPublic, "description": "Idempotency key used for another address"},
        429: {
            "model": FaucetCooldownPublic,
            "description": "Address in the faucet cooldown (FaucetCooldown), or this client "
            "asked for too many drips lately (FaucetClientLimit)",
        },
        503: {"model": ErrorPublic, "description": "Chain unreachable"},
    },
)
def request_drip(
    body: FaucetCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    chain: ChainDep,
    enqueue: EnqueueDep,
    idempotency_key: IdempotencyKey = None,
) -> ActionAccepted:
    """Accept a drip for ``address``; the worker relays ``drip(address)`` from the relayer key."""
    params = {"address": body.address}
    # This chain as it is now: a row made on a chain that was reset is not an answer.
    identity = chain.identity()
    if idempotency_key is not None:
        key = f"faucet:client:{idempotency_key}"
        existing = find_by_key(session, key, identity)
        if existing is not None:  # a replay: same answer, whatever the cooldown says now
            action, _ = create_action(
                session, kind=ActionKind.FAUCET, idempotency_key=key, params=params, chain=identity
            )
            return _accepted(request, response, action, created=False)

    state = faucet_state(chain, body.address)
    if state.in_cooldown:
        raise ApiError(
            429,
            "FaucetCooldown",
            f"{body.address} received a drip recently; next drip at {state.next_drip_at_iso}",
            next_drip_at=state.next_drip_at_iso,
        )
    if idempotency_key is None:
        key = default_idempotency_key(body.address, state)
    limit: ClientLimit = request.app.state.faucet_limit
    who = client_address(request)
    if (retry_after := limit.take(who)) is not None:
        raise ApiError(
            429,
            "FaucetClientLimit",
            f"this client ({who}) asked for {limit.limit} drips within "
            f"{limit.window_seconds}s; try again in {retry_after}s",
            retry_after_seconds=retry_after,
        )
    action, created = create_action(
        session, kind=ActionKind.FAUCET, idempotency_key=key, params=params, chain=identity
    )
    if not created:
        limit.give_back(who)  # a double click: the same drip, not another one
    if created and enqueue(action.id):  # only after the commit in create_action
        mark_enqueued(session, action.id)
    return _accepted(request, response, action, created=created)


def _accepted(
    request: Request, response: Response, action: Action, *, created: bool
) -> ActionAccepted:
    return ActionAccepted(
        action_id=action.id,
        status=action.status,
        status_url=follow_url(request, response, action.id, created=created),
    )
