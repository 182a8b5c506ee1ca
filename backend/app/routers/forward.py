"""Gasless user actions: wallets sign ERC-2771 forward requests, the relayer pays the gas."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from backend.app.deps import ChainDep, EnqueueDep, Enqueuer
from backend.app.errors import ApiError
from backend.app.relayed import forward_accepted, in_flight
from backend.app.schemas import (
    ErrorPublic,
    ForwardAccepted,
    ForwardCreate,
    ForwarderInfoPublic,
    SigningNoncesPublic,
    checksum_address,
)
from backend.db.models import Action, ActionKind, utcnow
from backend.services.chain import Chain
from backend.services.relaying import forward
from backend.services.relaying.actions import create_action, unmark_enqueued
from backend.services.relaying.forward import OpenRequest
from gpucap.signing import FORWARD_REQUEST_TYPES, FORWARDER_NAME, SignedRequest

router = APIRouter(tags=["forward"])


@router.get("/forwarder", responses={503: {"model": ErrorPublic}})
def forwarder_info(chain: ChainDep) -> ForwarderInfoPublic:
    """What to sign: the forwarder's EIP-712 domain, the request type, the callable functions.
    The nonce to sign is ``GpucapForwarder.nonces(from)``."""
    return ForwarderInfoPublic(
        domain={
            "name": FORWARDER_NAME,
            "version": "1",
            "chainId": chain.deployment.chain_id,
            "verifyingContract": chain.contract(forward.FORWARDER).address,
        },
        types=FORWARD_REQUEST_TYPES,
        allowed_calls={
            name: sorted(forward.ALLOWED_CALLS[name]) for name in forward.allowed_contracts(chain)
        },
    )


@router.get(
    "/accounts/{address}/nonces",
    responses={422: {"model": ErrorPublic}, 503: {"model": ErrorPublic}},
)
def signing_nonces(address: str, chain: ChainDep) -> SigningNoncesPublic:
    """The nonces ``address`` must sign its next forward request and permit with, and the
    chain's time to count their deadlines from."""
    try:
        holder = checksum_address(address)
    except ValueError as exc:
        raise ApiError(422, "ValidationFailed", f"address: {exc}") from exc
    fwd, coin = chain.contract(forward.FORWARDER), chain.stablecoin
    nonce, permit_nonce, name, now = chain.call(
        "reading nonces",
        lambda: (
            fwd.functions.nonces(holder).call(),
            coin.functions.nonces(holder).call(),
            coin.functions.name().call(),
            int(chain.w3.eth.get_block("latest")["timestamp"]),
        ),
    )
    return SigningNoncesPublic(
        address=holder,
        forwarder=nonce,
        stablecoin_permit=permit_nonce,
        stablecoin_name=name,
        stablecoin=coin.address,
        chain_id=chain.deployment.chain_id,
        chain_time=now,
    )


@router.post(
    "/forward",
    status_code=202,
    responses={
        200: {"model": ForwardAccepted, "description": "The same signed request: its action"},
        409: {"model": ErrorPublic, "description": "The sender has a request in flight"},
        422: {
            "model": ErrorPublic,
            "description": "Rejected: code says why (signature, "
            "nonce, deadline, target, or the contract error the call would revert with)",
        },
        503: {"model": ErrorPublic, "description": "Chain unreachable"},
    },
)
async def submit_forward(
    body: ForwardCreate,
    request: Request,
    response: Response,
    chain: ChainDep,
    enqueue: EnqueueDep,
) -> ForwardAccepted:
    """Validate a signed request fully, then relay it: the response is an action id."""
    # The blocking work (database, node) in ONE worker-thread call: as a sync route with
    # a session dependency it was three hops (session in, route, session out), a
    # tenth of the API's CPU per request at the relayed benchmark's rate.
    action, created = await run_in_threadpool(
        _accept, request.app.state.sessions, body, chain, enqueue
    )
    return forward_accepted(request, response, action, created=created)


def _accept(
    sessions: sessionmaker[Session], body: ForwardCreate, chain: Chain, enqueue: Enqueuer
) -> tuple[Action | OpenRequest, bool]:
    """The sender's open request (a replay of it: that row), else a new row, enqueued."""
    signed = SignedRequest(
        sender=body.sender,
        to=body.to,
        value=body.value,
        gas=body.gas,
        nonce=body.nonce or 0,
        deadline=body.deadline,
        data=bytes.fromhex(body.data[2:]),
        signature=bytes.fromhex(body.signature[2:]),
    )
    with sessions() as session:
        open_action = forward.open_request_of(session, body.sender)
        if open_action is not None:
            replay = open_action.params.get("signature") == body.signature
            if not replay:
                raise in_flight(
                    f"{body.sender} has a request",
                    open_action.id,
                    "sign the next one after it completes",
                )
            return open_action, False
        params, identity = forward.validate_with_identity(chain, signed, nonce_hint=body.nonce)
        # One commit: the row is written as enqueued, then enqueued (a worker must not
        # look for it before it exists); a failed enqueue clears the mark and leaves the
        # row to the sweep. The same signed request again finds its row.
        action, created = create_action(
            session,
            kind=ActionKind.FORWARD,
            idempotency_key=params.idempotency_key,
            params=params.as_params(),
            chain=identity,
            enqueued_at=utcnow(),
            likely_new=True,  # a replay of a request still open was answered above
        )
        if created and not enqueue(action.id, batched=True):
            unmark_enqueued(session, action.id)
        return action, created
