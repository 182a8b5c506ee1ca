"""Sign ERC-2771 ForwardRequests for GpucapForwarder with eth-account (EIP-712)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

FORWARDER_NAME = "GpucapForwarder"
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


@dataclass(frozen=True)
class SignedRequest:
    """A signed request, ready for `execute(request.as_tuple())`."""

    sender: str
    to: str
    value: int
    gas: int
    nonce: int
    deadline: int
    data: bytes
    signature: bytes

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


def _typed_data(forwarder: str, chain_id: int, message: dict[str, Any]):
    domain = {
        "name": FORWARDER_NAME,
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": forwarder,
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
    """Sign with `signer` (an eth_account LocalAccount) a call of `to` with `data`."""
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
    message = {
        "from": signer.address,
        "to": str(to),
        "value": value,
        "gas": gas,
        "nonce": nonce,
        "deadline": deadline,
        "data": raw,
    }
    signed = Account.sign_message(_typed_data(str(forwarder), chain_id, message), signer.key)
    return SignedRequest(
        signer.address, str(to), value, gas, nonce, deadline, raw, bytes(signed.signature)
    )


def recover_signer(request: SignedRequest, forwarder: str, chain_id: int, nonce: int) -> str:
    """Who the forwarder will think signed `request`, checked against `nonce` on `chain_id`."""
    message = {
        "from": request.sender,
        "to": request.to,
        "value": request.value,
        "gas": request.gas,
        "nonce": nonce,
        "deadline": request.deadline,
        "data": request.data,
    }
    return Account.recover_message(
        _typed_data(str(forwarder), chain_id, message), signature=request.signature
    )
