"""Gasless approvals of the market (``/api/v1/market/approvals``, ``/api/v1/market/permits``).

A bid draws on the stablecoin and a pool-share sell on the pool's shares, both through
the Market's ERC-20 allowance; a wallet without gas gives it with an EIP-2612 permit
that the relayer submits (``backend/services/market/permits.py`` says what is checked
and why that is safe). GpuHours need CapacityToken.setApprovalForAll, which is relayable
through POST /api/v1/forward like any forward request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from backend.app.deps import ChainDep, EnqueueDep, SessionDep, client_address
from backend.app.errors import ApiError
from backend.app.params import address_param
from backend.app.relayed import follow_url, in_flight
from backend.app.schemas import ClientLimitPublic, ErrorPublic
from backend.app.schemas_market import (
    MarketApprovalsPublic,
    MarketPermitAccepted,
    MarketPermitCreate,
    PermitTokenPublic,
)
from backend.db.models import ActionKind
from backend.services.market.book import CAPACITY, market_contract
from backend.services.market.permits import (
    Permit,
    check_permit,
    open_permit_of,
    permit_domain,
    permit_state,
    permit_token_kind,
)
from backend.services.relaying.actions import create_action, find_by_key, mark_enqueued
from backend.services.relaying.client_limit import ClientLimit, ClientLimitUnavailable
from gpucap.signing import PERMIT_TYPES

router = APIRouter(prefix="/market", tags=["market"])

UNAVAILABLE = {503: {"model": ErrorPublic, "description": "Chain or database unavailable"}}
# Pools one approvals read may name: each costs a few calls to the node.
MAX_POOLS = 20


@router.get(
    "/approvals/{owner}",
    responses={
        422: {"model": ErrorPublic, "description": "`TokenNotAllowed`: a pool that is not listed"},
        **UNAVAILABLE,
    },
)
def market_approvals(
    owner: str,
    chain: ChainDep,
    pool: Annotated[
        list[str] | None,
        Query(description="listed pools whose shares the owner may sell (repeat for several)"),
    ] = None,
) -> MarketApprovalsPublic:
    """What the market may move for ``owner`` (GPU-hours, the stablecoin, the named pools'
    shares) and what to sign each missing ERC-20 approval with (an EIP-2612 permit, in the
    token's own domain, at the owner's nonce there, with the Market as spender)."""
    holder = address_param(owner, "owner")
    pools = [address_param(p, "pool") for p in pool or []]
    if len(pools) > MAX_POOLS:
        raise ApiError(422, "ValidationFailed", f"pool: at most {MAX_POOLS} pools at once")
    market, capacity = market_contract(chain), chain.contract(CAPACITY)
    tokens: list[PermitTokenPublic] = []
    chain_time = 0
    for token in [chain.stablecoin.address, *dict.fromkeys(pools)]:
        kind = permit_token_kind(chain, token)
        state = permit_state(chain, token, holder)
        chain_time = state.chain_time
        tokens.append(
            PermitTokenPublic(
                token=state.token,
                kind=kind,  # type: ignore[arg-type]
                allowance=str(state.allowance),
                nonce=str(state.nonce),
                domain=permit_domain(chain, token, state.domain_separator),
            )
        )
    approved = chain.call(
        "reading capacity approval",
        lambda: capacity.functions.isApprovedForAll(holder, market.address).call(),
    )
    return MarketApprovalsPublic(
        owner=holder,
        spender=market.address,
        capacity_token=capacity.address,
        capacity_approved=approved,
        tokens=tokens,
        types=PERMIT_TYPES,
        chain_id=chain.deployment.chain_id,
        chain_time=chain_time,
    )


@router.post(
    "/permits",
    status_code=202,
    responses={
        200: {
            "model": MarketPermitAccepted,
            "description": "The same permit again (its action), or `in_effect`: its nonce is "
            "used and the Market's allowance covers it, nothing to relay",
        },
        409: {
            "model": ErrorPublic,
            "description": "`RequestInFlight` (another permit of this token is being relayed) "
            "or `PermitNonceUsed` (used, and the allowance does not cover it)",
        },
        422: {
            "model": ErrorPublic,
            "description": "Refused: `TokenNotAllowed`, `SpenderNotMarket`, "
            "`NonCanonicalSignature`, `InvalidSignature`, `InvalidNonce`, `PermitExpired`, "
            "`PermitUnsupported`, or the token's own error the call would revert with",
        },
        429: {
            "model": ClientLimitPublic,
            "description": "`PermitClientLimit`: this client had too many permits relayed "
            "lately (each costs the relayer gas)",
        },
        503: {
            "model": ErrorPublic,
            "description": "Chain or database unavailable, or `ClientLimitUnavailable` (the "
            "per-client count cannot be kept: nothing is relayed meanwhile)",
        },
    },
)
def submit_permit(
    body: MarketPermitCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    chain: ChainDep,
    enqueue: EnqueueDep,
) -> MarketPermitAccepted:
    """Relay an owner's EIP-2612 permit of the stablecoin or a listed pool's shares to the
    Market: the relayer sends ``permit(...)`` as itself and pays the gas. The action
    confirms when the allowance is set, by this transaction or by anyone's (a permit is
    public: whoever submits it first, it is done once). Each client (IP address) has at
    most GPUCAP_PERMIT_CLIENT_LIMIT new permits relayed per window; what is refused, in
    effect already or the same permit again does not count."""
    permit = Permit(
        token=body.token,
        owner=body.owner,
        spender=body.spender,
        value=int(body.value),
        nonce=int(body.nonce),
        deadline=body.deadline,
        signature=bytes.fromhex(body.signature[2:]),
    )
    identity = chain.identity()
    existing = find_by_key(session, permit.idempotency_key, identity)
    if existing is None:
        open_action = open_permit_of(session, permit.owner, permit.token)
        if open_action is not None:
            raise in_flight(
                f"{permit.owner} has a permit of {permit.token}",
                open_action.id,
                "post the next one after it completes",
            )
    if existing is None:
        checked = check_permit(chain, permit)
        allowance = checked.state.allowance
        if checked.in_effect is not None:
            response.status_code = 200
            return MarketPermitAccepted(
                action_id=None,
                status="in_effect",
                status_url=None,
                token=permit.token,
                owner=permit.owner,
                allowance=str(allowance),
            )
        who = _take_from_client_limit(request)
    else:  # the same permit again: its action, and the allowance as it is now
        allowance = permit_state(chain, permit.token, permit.owner).allowance
    action, created = create_action(
        session,
        kind=ActionKind.PERMIT,
        idempotency_key=permit.idempotency_key,
        params=permit.as_params(),
        chain=identity,
    )
    if existing is None and not created:
        request.app.state.permit_limit.give_back(who)  # a racing double post: one permit
    if created and enqueue(action.id):  # only after the commit in create_action
        mark_enqueued(session, action.id)
    return MarketPermitAccepted(
        action_id=action.id,
        status=action.status,  # type: ignore[arg-type]
        status_url=follow_url(request, response, action.id, created=created),
        token=permit.token,
        owner=permit.owner,
        allowance=str(allowance),
    )


def _take_from_client_limit(request: Request) -> str:
    """Count a permit about to be relayed against its client's limit; the client."""
    limit: ClientLimit = request.app.state.permit_limit
    who = client_address(request)
    try:
        retry_after = limit.take(who)
    except ClientLimitUnavailable as exc:
        raise ApiError(503, "ClientLimitUnavailable", str(exc)) from exc
    if retry_after is not None:
        raise ApiError(
            429,
            "PermitClientLimit",
            f"this client ({who}) had {limit.limit} permits relayed within "
            f"{limit.window_seconds}s; try again in {retry_after}s",
            retry_after_seconds=retry_after,
        )
    return who
