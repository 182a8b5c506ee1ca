"""Request/response models: Base (shared fields) → Create (input) → Public (output)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
ZERO_ADDRESS = "0x" + "0" * 40


def checksum_address(value: Any) -> str:
    """Accept all-lowercase/all-uppercase hex or a valid EIP-55 checksum; return the checksum."""
    if not isinstance(value, str) or not _HEX_ADDRESS.match(value):
        raise PydanticCustomError("address_format", "must be 0x followed by 40 hex digits")
    digits = value[2:]
    mixed = digits != digits.lower() and digits != digits.upper()
    if mixed and not is_checksum_address(value):
        raise PydanticCustomError(
            "address_checksum", "mixed-case address with an invalid EIP-55 checksum (mistyped?)"
        )
    if value.lower() == ZERO_ADDRESS:
        raise PydanticCustomError("address_zero", "the zero address cannot receive funds")
    return to_checksum_address(value)


class ErrorPublic(BaseModel):
    code: str = Field(examples=["FaucetCooldown"])
    reason: str


class FaucetCooldownPublic(ErrorPublic):
    next_drip_at: datetime


# -- actions ------------------------------------------------------------------


class ActionBase(BaseModel):
    kind: str
    params: dict[str, Any]


class ActionPublic(ActionBase):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: Literal["pending", "submitted", "confirmed", "failed"]
    tx_hash: str | None
    nonce: int | None
    block_number: int | None
    error_code: str | None = Field(description="machine code, e.g. the custom error's name")
    error: str | None = Field(description="human reason")
    attempts: int
    created_at: datetime
    updated_at: datetime


class ActionAccepted(BaseModel):
    action_id: str
    status: str
    status_url: str


# -- faucet ---------------------------------------------------------------------


class FaucetBase(BaseModel):
    address: str = Field(examples=["0x000000000000000000000000000000000000dEaD"])


class FaucetCreate(FaucetBase):
    @field_validator("address", mode="before")
    @classmethod
    def _checksummed(cls, value: Any) -> str:
        return checksum_address(value)


# -- health ---------------------------------------------------------------------


class HealthCheck(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    detail: str


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]
