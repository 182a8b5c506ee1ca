"""EIP-712 requests wallets sign for gpucap: ERC-2771 forward requests, EIP-2612 permits
and market orders.

One definition of each typed-data shape, used by the backend (to verify what a
wallet signed before accepting it), by the CLI and by the tests (to sign as a
wallet would). Signing and recovery are eth-account's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data

FORWARDER_NAME = "GpucapForwarder"  # GpucapForwarder's EIP-712 domain name, version "1"
FORWARD_REQUEST_TYPES = {
    "ForwardRequest": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "gas", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint48"},
        {"name": "data", "type": "bytes"},
    ]
}
PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


# secp256k1's group order: a signature (r, s) and its copy (r, n - s) both verify, so
# OpenZeppelin's ECDSA (and EIP-2) take only s ≤ n/2, and only v ∈ {27, 28}.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def non_canonical_reason(signature: bytes) -> str | None:
    """Why ``signature`` (65 bytes r‖s‖v) is not in the one form the chain accepts, or None.

    eth-account recovers high-s and v ∈ {0, 1} copies of a valid signature to the
    same signer, but the forwarder's ECDSA.recover rejects them: accepting one would
    relay a request that fails on-chain at the relayer's cost."""
    if len(signature) != 65:
        return f"a signature is 65 bytes (r, s, v), not {len(signature)}"
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        return f"v is {v}: only 27 or 28 is accepted (sign with eth_signTypedData_v4/personal_sign)"
    if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return "s is in the upper half of the curve order (a malleable copy); use s = n - s"
    return None


def _domain(
    name: str, verifying_contract: str, chain_id: int, version: str = "1"
) -> dict[str, Any]:
    """An EIP-712 domain (gpucap's contracts are all version "1"): the signature binds
    this chain and this contract."""
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": str(verifying_contract),
    }


def _hex_bytes(data: bytes | str) -> bytes:
    return bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)


@dataclass(frozen=True)
class SignedRequest:
    """A signed forward request, ready for ``execute(request.as_tuple())``."""

    sender: str
    to: str
    value: int
    gas: int
    nonce: int
    deadline: int
    data: bytes
    signature: bytes

    def api_body(self, *, sender: str | None = None) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/forward`` carrying this request. ``sender``:
        claim another ``from`` than the signer (to see the API refuse it)."""
        return {
            "from": sender if sender is not None else self.sender,
            "to": self.to,
            "value": self.value,
            "gas": self.gas,
            "deadline": self.deadline,
            "data": "0x" + self.data.hex(),
            "signature": "0x" + self.signature.hex(),
            "nonce": self.nonce,
        }

    def as_tuple(self) -> tuple[Any, ...]:
        """ForwardRequestData: (from, to, value, gas, deadline, data, signature) — no nonce."""
        return (
            self.sender,
            self.to,
            self.value,
            self.gas,
            self.deadline,
            self.data,
            self.signature,
        )


def forward_typed_data(
    forwarder: str,
    chain_id: int,
    *,
    sender: str,
    to: str,
    value: int,
    gas: int,
    nonce: int,
    deadline: int,
    data: bytes | str,
) -> SignableMessage:
    domain = _domain(FORWARDER_NAME, forwarder, chain_id)
    message = {
        "from": sender,
        "to": str(to),
        "value": value,
        "gas": gas,
        "nonce": nonce,
        "deadline": deadline,
        "data": _hex_bytes(data),
    }
    return encode_typed_data(
        domain_data=domain, message_types=FORWARD_REQUEST_TYPES, message_data=message
    )


def sign_request(
    signer: Any,
    forwarder: str,
    chain_id: int,
    to: str,
    data: bytes | str,
    nonce: int,
    deadline: int,
    gas: int = 500_000,
    value: int = 0,
) -> SignedRequest:
    """Sign with ``signer`` (an eth-account LocalAccount) a call of ``to`` with ``data``."""
    raw = _hex_bytes(data)
    typed = forward_typed_data(
        forwarder,
        chain_id,
        sender=signer.address,
        to=str(to),
        value=value,
        gas=gas,
        nonce=nonce,
        deadline=deadline,
        data=raw,
    )
    signed = Account.sign_message(typed, signer.key)
    return SignedRequest(
        signer.address, str(to), value, gas, nonce, deadline, raw, bytes(signed.signature)
    )


def recover_request_signer(
    request: SignedRequest, forwarder: str, chain_id: int, nonce: int
) -> str:
    """Who the forwarder will take to have signed ``request`` at ``nonce`` on ``chain_id``."""
    typed = forward_typed_data(
        forwarder,
        chain_id,
        sender=request.sender,
        to=request.to,
        value=request.value,
        gas=request.gas,
        nonce=nonce,
        deadline=request.deadline,
        data=request.data,
    )
    return Account.recover_message(typed, signature=request.signature)


def sign_permit(
    owner: Any,
    *,
    token_name: str,
    token: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
    chain_id: int,
    token_version: str = "1",
) -> tuple[int, bytes, bytes]:
    """EIP-2612 permit of ``owner`` (a LocalAccount): (v, r, s) for ``permit(...)`` calls.
    ``token_version``: the token's EIP-712 version (OpenZeppelin's ERC20Permit: "1")."""
    domain = _domain(token_name, token, chain_id, token_version)
    message = {
        "owner": owner.address,
        "spender": str(spender),
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    signed = Account.sign_message(
        encode_typed_data(domain_data=domain, message_types=PERMIT_TYPES, message_data=message),
        owner.key,
    )
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


# ---------------------------------------------------------------------------
# Market orders (contracts/Market.sol, IMarket.Order)
# ---------------------------------------------------------------------------

MARKET_NAME = "GpucapMarket"  # Market's EIP-712 domain name, version "1"
ORDER_TYPES = {
    "Order": [
        {"name": "maker", "type": "address"},
        {"name": "asset", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "sell", "type": "bool"},
        {"name": "amount", "type": "uint256"},
        {"name": "quoteAmount", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint64"},
    ]
}


@dataclass(frozen=True)
class MarketOrder:
    """A limit order: ``amount`` units of (``asset``, ``token_id``) for ``quote_amount``
    stablecoin units in all, sold (``sell``) or bought by ``maker``."""

    maker: str
    asset: str
    token_id: int
    sell: bool
    amount: int
    quote_amount: int
    nonce: int
    expiry: int

    def as_tuple(self) -> tuple[Any, ...]:
        """IMarket.Order, in field order, for contract calls."""
        return (
            self.maker,
            self.asset,
            self.token_id,
            self.sell,
            self.amount,
            self.quote_amount,
            self.nonce,
            self.expiry,
        )

    def typed_data(self, market: str, chain_id: int) -> SignableMessage:
        domain = _domain(MARKET_NAME, market, chain_id)
        message = {
            "maker": str(self.maker),
            "asset": str(self.asset),
            "tokenId": self.token_id,
            "sell": self.sell,
            "amount": self.amount,
            "quoteAmount": self.quote_amount,
            "nonce": self.nonce,
            "expiry": self.expiry,
        }
        return encode_typed_data(
            domain_data=domain, message_types=ORDER_TYPES, message_data=message
        )


def sign_order(order: MarketOrder, private_key: Any, *, market: str, chain_id: int) -> bytes:
    """The maker's 65-byte signature (r, s, v) of ``order`` for ``market`` on ``chain_id``."""
    signed = Account.sign_message(order.typed_data(market, chain_id), private_key)
    return bytes(signed.signature)


def recover_order_signer(
    order: MarketOrder, signature: bytes, *, market: str, chain_id: int
) -> str:
    """Who ``market`` will take to have signed ``order`` (the backend checks before accepting)."""
    return Account.recover_message(order.typed_data(market, chain_id), signature=signature)
