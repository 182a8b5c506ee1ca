"""Revert data → machine code + human reason, for action rows and API errors.

Decoding itself is gpucap.revert's (the one decoder shared with the oracle);
this module only adds what a person reading an action needs: checksummed
addresses, hex bytes, and plain-language reasons for errors users hit often.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_utils import is_address, to_checksum_address

from gpucap.revert import decode_revert as decode_error
from gpucap.revert import error_selector, revert_data

__all__ = [
    "DecodedRevert",
    "RpcRevert",
    "decode_revert",
    "error_selector",
    "revert_data",
    "rpc_revert",
]


@dataclass(frozen=True)
class DecodedRevert:
    code: str  # the custom error's name, e.g. "FaucetCooldown"
    reason: str  # for a person
    args: dict[str, Any] = field(default_factory=dict)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# Errors whose generic rendering would not tell a person what to do.
HUMANIZERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "FaucetCooldown": lambda a: (
        f"faucet cooldown: {a['recipient']} already received a drip; "
        f"next drip at {_iso(int(a['nextDripAt']))}"
    ),
    "FaucetInvalidRecipient": lambda a: "the faucet cannot drip to the zero address",
    "Error": lambda a: f"reverted: {a['message']}",
    "Panic": lambda a: f"panic 0x{a['code']:02x} (assert/overflow/division)",
}


def _readable(value: Any) -> Any:
    if isinstance(value, str) and is_address(value):
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _raw(data: str | bytes | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    try:
        return bytes.fromhex(data.removeprefix("0x"))
    except ValueError:
        return b""


def decode_revert(
    data: str | bytes | None, error_abis: Sequence[Mapping[str, Any]]
) -> DecodedRevert:
    """Best effort, never raises: unknown data decodes to code ``UnknownRevert``."""
    raw = _raw(data)
    if len(raw) < 4:
        return DecodedRevert("Reverted", "the transaction reverted without a reason")
    decoded = decode_error(error_abis, raw)
    if decoded is None:
        return DecodedRevert(
            "UnknownRevert", f"reverted with unknown or undecodable error data 0x{raw.hex()}"
        )
    args = {k: _readable(v) for k, v in decoded.args.items()}
    human = HUMANIZERS.get(decoded.name)
    reason = (
        human(args)
        if human
        else (f"{decoded.name}(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")")
    )
    return DecodedRevert(decoded.name, reason, args)


# Error(string)'s selector: its data alone does not say "revert" (web3 looks at the
# message for it, as below).
_ERROR_STRING_SELECTOR = "0x08c379a0"
_MISSING = object()


@dataclass(frozen=True)
class RpcRevert:
    """A JSON-RPC error that is a revert, with its revert data (None if it had none)."""

    data: str | None


def rpc_revert(error: Any) -> RpcRevert | None:
    """Whether the ``error`` object of a raw JSON-RPC answer (eth_call, eth_estimateGas)
    is a revert, and its revert data; None for any other error (funds, fees, a node
    fault). The test web3.py applies to the calls it makes itself (web3 7's
    ``raise_contract_logic_error_on_revert``), here so that raw calls need not import
    web3's private modules: a revert is an error with ``data`` present but null, a
    "Reverted ..." string or a 4-byte-selector string other than Error(string)'s; or,
    whatever its data, code 3 or an "execution reverted" message. Unlike web3, a dict
    ``data`` (Hardhat's) is a revert only with revert data inside or a message that
    says so: Hardhat wraps its own refusals the same way."""
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    has_message = message is not None and message != ""
    data = error.get("data", _MISSING)
    if data is None:
        return RpcRevert(None)
    if isinstance(data, dict):
        # Hardhat (EDR) nests every error's data, {"message": ..., "data": ...}: revert
        # data there (a selector at least) is a revert's; otherwise the message says
        # whether it is one ("reverted without a reason string") or the node's own
        # refusal ("requires at least 21380 gas", "ran out of gas").
        nested = revert_data(data)
        if nested is not None and len(nested) >= 10:
            return RpcRevert(nested)
        if has_message and "revert" in str(message).lower():
            return RpcRevert(None)
        return None
    if isinstance(data, str) and (
        data.startswith("Reverted ") or (len(data) >= 10 and data[:10] != _ERROR_STRING_SELECTOR)
    ):
        return RpcRevert(data)
    if has_message and (error.get("code") == 3 or "execution reverted" in str(message)):
        return RpcRevert(data if isinstance(data, str) else None)
    return None
