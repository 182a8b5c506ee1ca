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
from gpucap.revert import error_selector

__all__ = ["DecodedRevert", "decode_revert", "error_selector"]


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
