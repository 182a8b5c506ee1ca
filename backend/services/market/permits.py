"""Gasless approvals of the market: a wallet's EIP-2612 permit, sent by the relayer.

A bid needs the stablecoin's allowance to the Market and a pool-share sell the pool's;
``approve`` is the owner's own call, and the stablecoin does not trust the forwarder
(a real one never will), so a wallet without gas could not give either. Both tokens
have EIP-2612 ``permit``: the owner signs (owner, spender, value, nonce, deadline) in
the token's EIP-712 domain and anyone may submit it. The relayer submits it as itself;
the signature is the whole authorisation, so what the relayer adds is only checking:

- the token is the stablecoin or a listed pool, and the spender the Market: the API
  builds the call with the Market as spender, so a permit signed for anyone else does
  not verify, and a body naming another spender is refused before that (SpenderNotMarket);
- the signature recovers to the owner over the token's own ``DOMAIN_SEPARATOR()`` (read
  from the chain, so a token whose domain differs from what a wallet guessed, e.g.
  version "2", is verified as the chain will verify it) at the owner's current nonce;
- the deadline leaves time to mine it; the call is simulated.

Replay: the token's nonce makes a permit run once, and its domain binds one chain and
one token. A permit is public once posted, so anyone may submit it first (front-running
it changes nothing but who paid the gas): a permit whose nonce is used while the
Market's allowance covers its value is in effect, and the action says so instead of
failing (``permit_in_effect``, checked before sending and after a revert).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from web3.exceptions import Web3RPCError

from backend.db.models import OPEN_STATUSES, Action, ActionKind
from backend.services.chain import Chain, result_of
from backend.services.errors import TransactionReverted
from backend.services.market.book import MarketRejected, market_contract
from backend.services.market.rawcall import (
    ALLOWANCE,
    DOMAIN_SEPARATOR,
    EIP712_DOMAIN,
    IS_POOL_LISTED,
    LATEST_BLOCK,
    NAME,
    NONCES,
    PERMIT,
    eth_call,
)
from backend.services.relaying import forward
from backend.services.relaying.relayer import TxRequest
from backend.services.revert import decode_revert, rpc_revert
from gpucap.signing import non_canonical_reason

# Seconds a permit must stay valid after acceptance: time to be relayed and mined.
MIN_DEADLINE_MARGIN = 30
KEY_PREFIX = "permit:"
PERMIT_TYPEHASH = keccak(
    text="Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
EIP712_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


@dataclass(frozen=True)
class Permit:
    """What the owner signed (EIP-2612 ``Permit``) and its signature (r ‖ s ‖ v)."""

    token: str
    owner: str
    spender: str
    value: int
    nonce: int
    deadline: int
    signature: bytes

    def calldata(self) -> bytes:
        r, s, v = self.signature[:32], self.signature[32:64], self.signature[64]
        return PERMIT.data(self.owner, self.spender, self.value, self.deadline, v, r, s)

    def digest(self, domain_separator: bytes) -> bytes:
        struct = keccak(
            encode(
                ["bytes32", "address", "address", "uint256", "uint256", "uint256"],
                [PERMIT_TYPEHASH, self.owner, self.spender, self.value, self.nonce, self.deadline],
            )
        )
        return keccak(b"\x19\x01" + domain_separator + struct)

    def signer(self, domain_separator: bytes) -> str | None:
        """Who signed it in the token's domain (None: the signature does not recover)."""
        r = int.from_bytes(self.signature[:32], "big")
        s = int.from_bytes(self.signature[32:64], "big")
        try:
            signature = keys.Signature(vrs=(self.signature[64] - 27, r, s))
            key = signature.recover_public_key_from_msg_hash(self.digest(domain_separator))
        except (BadSignature, ValueError):
            return None
        return key.to_checksum_address()

    def as_params(self) -> dict[str, Any]:
        """The action's stored parameters (uint256 as decimal strings: JSON numbers are not)."""
        return {
            **asdict(self),
            "value": str(self.value),
            "nonce": str(self.nonce),
            "deadline": str(self.deadline),
            "signature": "0x" + self.signature.hex(),
            "contract": "ERC20Permit",
            "function": "permit",
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Permit:
        return cls(
            token=params["token"],
            owner=params["owner"],
            spender=params["spender"],
            value=int(params["value"]),
            nonce=int(params["nonce"]),
            deadline=int(params["deadline"]),
            signature=bytes.fromhex(params["signature"][2:]),
        )

    @property
    def idempotency_key(self) -> str:
        # The same signed permit → the same action; owner and token first, so an owner's
        # open permits of one token are a range of the unique key index.
        digest = hashlib.sha256(self.signature).hexdigest()[:32]
        return f"{_key_prefix(self.owner, self.token)}{self.nonce}:{digest}"


def _key_prefix(owner: str, token: str) -> str:
    return f"{KEY_PREFIX}{owner.lower()}:{token.lower()}:"


def _word(response: dict[str, Any], what: str) -> bytes:
    return bytes(HexBytes(result_of(response, what)))


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class PermitState:
    """What the chain says of ``owner``'s permits of ``token`` to the Market, now."""

    token: str
    owner: str
    spender: str  # the Market
    nonce: int
    allowance: int
    domain_separator: bytes
    chain_time: int


def permit_token_kind(chain: Chain, token: str) -> str:
    """ "stablecoin" or "pool" (a listed pool's shares), or MarketRejected: the only tokens
    a bid or a sell of the market draws on."""
    if token.lower() == chain.stablecoin.address.lower():
        return "stablecoin"
    market = market_contract(chain)
    (listed_resp,) = chain.batch(
        "reading pool listing",
        [IS_POOL_LISTED.call(market.address, token)],
    )
    (listed,) = decode(["bool"], _word(listed_resp, "reading pool listing"))
    if not listed:
        raise MarketRejected(
            f"{token} is neither the stablecoin nor a listed pool: the market spends no other "
            "token",
            code="TokenNotAllowed",
        )
    return "pool"


def permit_state(chain: Chain, token: str, owner: str) -> PermitState:
    """The owner's permit nonce, the Market's allowance and the token's domain separator."""
    spender = market_contract(chain).address
    nonce_resp, allowance_resp, domain_resp, block_resp = chain.batch(
        "reading permit state",
        [
            NONCES.call(token, owner),
            ALLOWANCE.call(token, owner, spender),
            DOMAIN_SEPARATOR.call(token),
            LATEST_BLOCK,
        ],
    )
    try:
        (nonce,) = decode(["uint256"], _word(nonce_resp, "reading permit nonce"))
        (allowance,) = decode(["uint256"], _word(allowance_resp, "reading allowance"))
        (separator,) = decode(["bytes32"], _word(domain_resp, "reading DOMAIN_SEPARATOR"))
    except (Web3RPCError, DecodingError) as exc:  # a call reverted or answered nothing
        raise MarketRejected(
            f"{token} does not answer EIP-2612 (nonces, allowance, DOMAIN_SEPARATOR): {exc}",
            code="PermitUnsupported",
        ) from exc
    now = int(result_of(block_resp, "reading latest block")["timestamp"], 16)
    return PermitState(
        token=to_checksum_address(token),
        owner=to_checksum_address(owner),
        spender=spender,
        nonce=nonce,
        allowance=allowance,
        domain_separator=separator,
        chain_time=now,
    )


def permit_domain(chain: Chain, token: str, separator: bytes) -> dict[str, Any]:
    """The token's EIP-712 domain for a wallet to sign in: EIP-5267 ``eip712Domain()``
    where the token has it, else its ``name()`` and version "1" (OpenZeppelin's
    ERC20Permit); refused if what that gives is not the token's own separator."""
    chain_id = chain.deployment.chain_id
    domain_resp, name_resp = chain.batch(
        "reading permit domain", [EIP712_DOMAIN.call(token), NAME.call(token)]
    )
    candidates: list[tuple[str, str]] = []
    if "error" not in domain_resp:
        try:
            _, name, version, *_ = decode(
                ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"],
                _word(domain_resp, "reading eip712Domain"),
            )
            candidates.append((name, version))
        except DecodingError:
            pass  # not EIP-5267's answer: fall back on name()
    if "error" not in name_resp:
        try:
            (name,) = decode(["string"], _word(name_resp, "reading name"))
            candidates.append((name, "1"))
        except DecodingError:
            pass  # no name(): nothing to guess the domain from
    for name, version in candidates:
        built = keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [EIP712_DOMAIN_TYPEHASH, keccak(text=name), keccak(text=version), chain_id, token],
            )
        )
        if built == separator:
            return {
                "name": name,
                "version": version,
                "chainId": chain_id,
                "verifyingContract": to_checksum_address(token),
            }
    raise MarketRejected(
        f"{token}'s EIP-712 domain cannot be told (no eip712Domain(), and name() with "
        "version 1 does not give its DOMAIN_SEPARATOR)",
        code="PermitUnsupported",
    )


# ------------------------------------------------------------------ accepting


_OPEN_PERMIT = (
    select(Action.id, Action.status, Action.params)
    .where(
        Action.idempotency_key >= bindparam("low"),
        Action.idempotency_key < bindparam("high"),
        Action.kind == ActionKind.PERMIT.value,
        Action.status.in_(OPEN_STATUSES),
    )
    .limit(1)
)


def open_permit_of(session: Session, owner: str, token: str) -> forward.OpenRequest | None:
    """The owner's permit of ``token`` still pending or submitted, if any (its keys are a
    range of the unique key index: see forward.open_request_of)."""
    prefix = _key_prefix(owner, token)
    row = session.execute(_OPEN_PERMIT, {"low": prefix, "high": prefix[:-1] + ";"}).first()
    return None if row is None else forward.OpenRequest(row.id, row.status, row.params)


@dataclass(frozen=True)
class Checked:
    """A permit that passed every check: relay it (``in_effect`` None), or nothing to
    relay (``in_effect``: why it holds already)."""

    state: PermitState
    in_effect: str | None


def check_permit(chain: Chain, permit: Permit) -> Checked:
    """Everything short of sending, in the order a wallet wants to hear about it: token,
    spender, signature form, signature, nonce, deadline, the simulated call."""
    kind = permit_token_kind(chain, permit.token)
    market = market_contract(chain).address
    if permit.spender.lower() != market.lower():
        raise MarketRejected(
            f"the relayer submits permits for the Market {market} only, not for {permit.spender}",
            code="SpenderNotMarket",
        )
    if (problem := non_canonical_reason(permit.signature)) is not None:
        raise MarketRejected(problem, code="NonCanonicalSignature")
    state = permit_state(chain, permit.token, permit.owner)
    signer = permit.signer(state.domain_separator)
    if signer is None or signer.lower() != permit.owner.lower():
        raise MarketRejected(
            f"the signature is not {permit.owner}'s permit of {permit.token} ({kind}) for the "
            f"Market {market}, value {permit.value}, nonce {permit.nonce}, deadline "
            f"{permit.deadline} in the token's EIP-712 domain (recovered {signer})",
            code="InvalidSignature",
        )
    if permit.nonce < state.nonce:
        if state.allowance >= permit.value:
            return Checked(state, _in_effect_reason(permit, state))
        raise MarketRejected(
            f"permit nonce {permit.nonce} of {permit.owner} is used (the nonce is now "
            f"{state.nonce}) and the Market's allowance is {state.allowance}, under "
            f"{permit.value}: sign a new permit at nonce {state.nonce}",
            code="PermitNonceUsed",
            status=409,
        )
    if permit.nonce > state.nonce:
        raise MarketRejected(
            f"permit signed for nonce {permit.nonce}; {permit.owner}'s nonce at {permit.token} "
            f"is {state.nonce}",
            code="InvalidNonce",
        )
    if permit.deadline < state.chain_time + MIN_DEADLINE_MARGIN:
        raise MarketRejected(
            f"deadline {permit.deadline} leaves under {MIN_DEADLINE_MARGIN}s at chain time "
            f"{state.chain_time}",
            code="PermitExpired",
        )
    (sim,) = chain.batch("simulating permit", [eth_call(permit.token, permit.calldata())])
    if "error" in sim:
        revert = rpc_revert(sim["error"])
        decoded = decode_revert(
            revert.data if revert is not None else None, forward.error_abis(chain)
        )
        raise TransactionReverted(decoded.reason, code=decoded.code)
    return Checked(state, None)


def _in_effect_reason(permit: Permit, state: PermitState) -> str:
    return (
        f"permit nonce {permit.nonce} of {permit.owner} at {permit.token} is used (by this "
        f"permit or another) and the Market's allowance {state.allowance} covers "
        f"{permit.value}: nothing to send"
    )


# ------------------------------------------------------------------ relaying


def permit_in_effect(chain: Chain, params: dict[str, Any]) -> tuple[str, str] | None:
    """(code, reason) if the action's permit holds already (its nonce used, anyone's
    transaction, and the allowance covers it), else None. The worker asks before it sends
    and after a revert: a front-run permit is done, not failed."""
    permit = Permit.from_params(params)
    state = permit_state(chain, permit.token, permit.owner)
    if state.nonce > permit.nonce and state.allowance >= permit.value:
        return "PermitInEffect", _in_effect_reason(permit, state)
    return None


def permit_tx(chain: Chain, params: dict[str, Any]) -> TxRequest:
    """The relayer's transaction: ``token.permit(owner, Market, value, deadline, v, r, s)``.
    Gas is estimated (a revert is caught before paying for it)."""
    permit = Permit.from_params(params)
    state = permit_state(chain, permit.token, permit.owner)
    if state.nonce > permit.nonce:
        raise TransactionReverted(
            f"permit nonce {permit.nonce} of {permit.owner} at {permit.token} was used by "
            f"another permit (nonce now {state.nonce}) and the Market's allowance is "
            f"{state.allowance}, under {permit.value}: sign a new permit",
            code="PermitNonceUsed",
        )
    return TxRequest(to=permit.token, data="0x" + permit.calldata().hex())
