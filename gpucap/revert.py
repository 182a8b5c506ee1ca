"""Turn revert data into the custom error it encodes, by a contract's ABI.

Why: web3.py reports a custom-error revert as opaque hex (``ContractCustomError``
with ``.data``). Operators need ``OracleEpochAlreadyAttested(epoch=7, attestedAt=1700000000)``
in the log, not ``0x4f1c…``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

# Solidity's built-in revert payloads.
_BUILTIN_ERRORS: tuple[dict[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
)


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.args.items())
        return f"{self.name}({shown})"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _canonical_type(param: Mapping[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def error_selector(entry: Mapping[str, Any]) -> bytes:
    """The 4-byte selector of one ABI error entry."""
    signature = f"{entry['name']}({','.join(_canonical_type(p) for p in entry['inputs'])})"
    return keccak(text=signature)[:4]


def error_selectors(abi: Sequence[Mapping[str, Any]]) -> dict[bytes, Mapping[str, Any]]:
    """4-byte selector → ABI entry for every error in ``abi`` plus Error/Panic."""
    return {
        error_selector(entry): entry
        for entry in (*abi, *_BUILTIN_ERRORS)
        if entry.get("type") == "error"
    }


def revert_data(data: Any) -> str | None:
    """The revert data (0x hex) in a JSON-RPC error's ``data``, or in web3's
    ``ContractLogicError.data``, which is that field: the hex string itself (anvil,
    geth), or nested as ``{"message": ..., "data": "0x..."}`` (Hardhat's EDR, which
    wraps every error's data so). None where it carries none."""
    if isinstance(data, Mapping):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return data
    return None


def decode_revert(
    abi: Sequence[Mapping[str, Any]], data: str | bytes | None
) -> DecodedError | None:
    """The error ``data`` encodes, or None if it is empty or matches no known error."""
    if data is None:
        return None
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return None
    entry = error_selectors(abi).get(raw[:4])
    if entry is None:
        return None
    types = [_canonical_type(p) for p in entry["inputs"]]
    try:
        values = decode(types, raw[4:])
    except DecodingError:
        return None
    names = [p.get("name") or f"arg{i}" for i, p in enumerate(entry["inputs"])]
    return DecodedError(name=entry["name"], args=dict(zip(names, values, strict=True)))
