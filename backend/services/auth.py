"""Sign-In with Ethereum (EIP-4361) sessions, on the ``siwe`` package.

Flow: ``issue_nonce`` → the wallet signs a SIWE message carrying that nonce, this
API's domain and the deployment's chain id → ``login`` verifies it (siwe checks
the signature, domain, nonce and time bounds; we check the chain id and spend
the nonce exactly once) and returns an opaque session token. Only the token's
SHA-256 is stored. Roles are derived on every request, so they follow the chain:
``operator`` once the address operates an indexed node, ``admin`` if configured.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.db.models import AuthNonce, AuthSession, NodeRow
from backend.services.errors import AuthFailed, MalformedRequest
from gpucap.signing import non_canonical_reason

with warnings.catch_warnings():
    # abnf warns while compiling siwe's grammar (core rules redefined); harmless.
    warnings.simplefilter("ignore")
    import siwe

ROLE_USER, ROLE_OPERATOR, ROLE_ADMIN = "user", "operator", "admin"


@dataclass(frozen=True)
class Principal:
    address: str
    chain_id: int
    roles: frozenset[str]
    expires_at: datetime


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_at: datetime


@dataclass(frozen=True)
class LoginResult:
    token: str
    principal: Principal


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_nonce(session: Session, ttl_seconds: float) -> IssuedNonce:
    nonce = siwe.generate_nonce()
    expires_at = _now() + timedelta(seconds=ttl_seconds)
    session.add(AuthNonce(nonce=nonce, expires_at=expires_at))
    session.commit()
    return IssuedNonce(nonce, expires_at)


_SIWE_CODES: dict[type[Exception], str] = {
    siwe.InvalidSignature: "InvalidSignature",
    siwe.ExpiredMessage: "MessageExpired",
    siwe.NotYetValidMessage: "MessageNotYetValid",
    siwe.DomainMismatch: "DomainMismatch",
    siwe.NonceMismatch: "InvalidNonce",
    siwe.MalformedSession: "MalformedMessage",
}


def login(
    session: Session,
    *,
    message: str,
    signature: str,
    domain: str,
    chain_id: int,
    session_ttl_seconds: float,
    admins: frozenset[str],
) -> LoginResult:
    try:
        parsed = siwe.SiweMessage.from_message(message)
    except Exception as exc:  # siwe raises ValueError or grammar errors: all mean "malformed"
        raise MalformedRequest(f"not an EIP-4361 message: {exc}", code="MalformedMessage") from exc
    if parsed.chain_id != chain_id:
        raise AuthFailed(
            f"message is for chain {parsed.chain_id}; this API serves chain {chain_id}",
            code="ChainMismatch",
        )
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if (problem := non_canonical_reason(raw)) is not None:
        raise AuthFailed(f"sign-in rejected: {problem}", code="NonCanonicalSignature")
    try:
        # siwe checks signature, domain and time bounds; the nonce is checked (and spent)
        # against our table below.
        parsed.verify(signature, domain=domain)
    except siwe.VerificationError as exc:
        code = next((c for t, c in _SIWE_CODES.items() if isinstance(exc, t)), "InvalidSignature")
        raise AuthFailed(f"sign-in rejected: {code}", code=code) from exc

    now = _now()
    # Spend the nonce: one UPDATE that only matches an unused, unexpired nonce, so
    # two concurrent logins with one message cannot both succeed.
    spent = session.execute(
        update(AuthNonce)
        .where(
            AuthNonce.nonce == parsed.nonce,
            AuthNonce.used_at.is_(None),
            AuthNonce.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        session.rollback()
        raise AuthFailed(
            "unknown, expired or already used nonce: ask for a new one", code="InvalidNonce"
        )
    expires_at = now + timedelta(seconds=session_ttl_seconds)
    if parsed.expiration_time is not None:
        expires_at = min(expires_at, datetime.fromisoformat(str(parsed.expiration_time)))
    token = secrets.token_urlsafe(32)
    address = parsed.address
    session.add(
        AuthSession(
            token_sha256=_digest(token), address=address, chain_id=chain_id, expires_at=expires_at
        )
    )
    session.commit()
    return LoginResult(
        token, Principal(address, chain_id, roles_of(session, address, admins), expires_at)
    )


def authenticate(session: Session, token: str, admins: frozenset[str]) -> Principal:
    row = session.get(AuthSession, _digest(token))
    if row is None or row.revoked_at is not None:
        raise AuthFailed("unknown or signed-out session token", code="InvalidSession")
    if row.expires_at <= _now():
        raise AuthFailed("the session has expired: sign in again", code="SessionExpired")
    return Principal(
        row.address, row.chain_id, roles_of(session, row.address, admins), row.expires_at
    )


def logout(session: Session, token: str) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.token_sha256 == _digest(token), AuthSession.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    session.commit()


def roles_of(session: Session, address: str, admins: frozenset[str]) -> frozenset[str]:
    roles = {ROLE_USER}
    if session.scalars(select(NodeRow.node_id).where(NodeRow.operator == address).limit(1)).first():
        roles.add(ROLE_OPERATOR)
    if address.lower() in admins:
        roles.add(ROLE_ADMIN)
    return frozenset(roles)
