"""Constants and small helpers shared by the NodeRegistry/CapacityToken tests."""

from __future__ import annotations

USD = 10**6  # stablecoin units
ACQUISITION_COST = 250_000 * USD  # 8 x H100 at ~31k USD each
ACQUIRED_AT = 1_700_000_000  # 2023-11-14, before any test chain's clock


def b32(text: str) -> bytes:
    """A short ASCII string as a right-padded bytes32 (regions, reasons, evidence)."""
    return text.encode().ljust(32, b"\0")


def b32hex(text: str) -> str:
    """The same bytes32 as brownie returns it from an event or a view."""
    return "0x" + b32(text).hex()
