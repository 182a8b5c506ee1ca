"""Sign-In with Ethereum: nonce → signed EIP-4361 message → bearer session token."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from backend.app.deps import PrincipalDep, SessionDep, SettingsDep, TokenDep
from backend.app.schemas import ErrorPublic
from backend.services import auth
from gpucap.deployment import Deployment

router = APIRouter(prefix="/auth", tags=["auth"])
REJECTED = {401: {"model": ErrorPublic}, 422: {"model": ErrorPublic}}


class NoncePublic(BaseModel):
    """What a wallet needs to build the EIP-4361 message it will sign."""

    nonce: str
    expires_at: datetime
    domain: str = Field(description="the message's domain must be exactly this")
    chain_id: int = Field(description="the message's Chain ID must be this chain's")
    version: str = "1"


class LoginRequest(BaseModel):
    message: str = Field(description="the EIP-4361 message, exactly as signed")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="personal_sign of it")


class PrincipalPublic(BaseModel):
    address: str
    chain_id: int
    roles: list[str]
    expires_at: datetime


class SessionPublic(PrincipalPublic):
    token: str
    token_type: str = "bearer"


@lru_cache(maxsize=4)
def _chain_id(manifest_path: str, _mtime: float) -> int:
    return Deployment.load(manifest_path).chain_id


def deployment_chain_id(settings: SettingsDep) -> int:
    path = settings.manifest_path
    return _chain_id(str(path), path.stat().st_mtime if path.exists() else 0.0)


def _public(principal: auth.Principal) -> PrincipalPublic:
    return PrincipalPublic(
        address=principal.address,
        chain_id=principal.chain_id,
        roles=sorted(principal.roles),
        expires_at=principal.expires_at,
    )


@router.post("/nonce", responses={503: {"model": ErrorPublic}})
def new_nonce(session: SessionDep, settings: SettingsDep) -> NoncePublic:
    """A single-use nonce, valid for a few minutes."""
    chain_id = deployment_chain_id(settings)
    issued = auth.issue_nonce(session, settings.siwe_nonce_ttl_seconds)
    return NoncePublic(
        nonce=issued.nonce,
        expires_at=issued.expires_at,
        domain=settings.effective_siwe_domain,
        chain_id=chain_id,
    )


@router.post("/login", responses=REJECTED)
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> SessionPublic:
    """Sign-In with Ethereum: a signed SIWE message (with a nonce from /nonce) for a
    bearer token; 401 with the reason if the message or signature does not hold."""
    result = auth.login(
        session,
        message=body.message,
        signature=body.signature,
        domain=settings.effective_siwe_domain,
        chain_id=deployment_chain_id(settings),
        session_ttl_seconds=settings.session_ttl_seconds,
        admins=settings.admins,
    )
    return SessionPublic(token=result.token, **_public(result.principal).model_dump())


@router.get("/me", responses={401: {"model": ErrorPublic}})
def me(principal: PrincipalDep) -> PrincipalPublic:
    """Who the bearer token belongs to: address, chain, roles and when the session ends."""
    return _public(principal)


@router.post("/logout", status_code=204, responses={401: {"model": ErrorPublic}})
def logout(principal: PrincipalDep, token: TokenDep, session: SessionDep) -> Response:
    """End the bearer token's session: the token is refused from now on."""
    auth.logout(session, token)
    return Response(status_code=204)
