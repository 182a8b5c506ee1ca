"""Expected custom-error strings, in the form brownie decodes reverts to."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if hasattr(value, "address"):
        value = value.address
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    if isinstance(value, bytes):
        return repr(value)  # brownie renders bytesN arguments as Python's bytes repr
    if isinstance(value, bool):
        return str(value)
    return str(value)


def bytes_arg(value: bytes | str) -> bytes:
    """A bytesN error argument given as bytes or 0x-hex (e.g. a role id), as bytes for ``err``."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def err(name: str, *args: Any) -> str:
    """``err("FaucetCooldown", who, 123)`` → ``"FaucetCooldown: 0xabc…, 123"``;
    brownie renders an argument-less error as ``"Name: "``."""
    return f"{name}: " + ", ".join(_fmt(a) for a in args)
