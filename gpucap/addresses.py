"""EIP-55 checksummed addresses, remembered: the same addresses recur (contracts in every
request, senders twice per request, holders in every indexed event), and each
``to_checksum_address`` is a keccak plus eth_utils' argument checks, ~30-50 us."""

from __future__ import annotations

from eth_utils import to_checksum_address

_CHECKSUMS: dict[str, str] = {}
_MAX_REMEMBERED = 100_000


def checksum(address: str) -> str:
    """``to_checksum_address(address)`` for a 0x-prefixed hex address (any case),
    remembered. Raises as ``to_checksum_address`` does for anything else."""
    key = address.lower()
    found = _CHECKSUMS.get(key)
    if found is None:
        if len(_CHECKSUMS) > _MAX_REMEMBERED:
            _CHECKSUMS.clear()
        found = _CHECKSUMS[key] = to_checksum_address(key)
    return found
