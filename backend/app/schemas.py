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


# ---------------------------------------------------------------------------
# Reads (from the chain index). Amounts are stablecoin base units (6 decimals);
# token ids are decimal strings (uint256 does not fit a JSON number everywhere).
# ---------------------------------------------------------------------------


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class GpuClassPublic(_Row):
    class_id: int
    name: str
    reference_power_w: int
    reference_throughput: int
    economic_life_months: int
    residual_value_bps: int


class NodePublic(_Row):
    node_id: int
    operator: str
    class_id: int
    gpu_count: int
    region: str
    node_key: str
    acquisition_cost: int
    acquired_at: int
    status: Literal["active", "jailed", "exiting", "exited"]
    bonded: int
    locked: int
    slashed: int
    registered_block: int


class EpochPublic(_Row):
    epoch: int
    root: str
    node_count: int
    total_energy_wh: int
    total_milli_gpu_hours: int
    config_version: int
    transmitter: str
    block_number: int
    attested_at: int
    tx_hash: str


class OfferPublic(_Row):
    offer_id: int
    node_id: int
    token_id: str
    class_id: int
    window_start: int
    amount: int
    sold: int
    price_per_gpu_hour: int
    bond_locked: int
    status: Literal["open", "cancelled"]
    published_block: int


class ReservationPublic(_Row):
    reservation_id: int
    holder: str
    node_id: int
    token_id: str
    class_id: int
    window_start: int
    amount: int
    price_per_gpu_hour: int
    status: Literal["reserved", "settled"]
    refund: int | None
    slashed: int | None
    uncovered: int


class PricePointPublic(BaseModel):
    """Volume-weighted price of one GPU class's capacity for one delivery window."""

    class_id: int
    window_start: int
    gpu_hours: int
    volume: int  # stablecoin base units paid
    vwap_per_gpu_hour: float  # volume / gpu_hours, base units
    sales: int


class IndexerStatusPublic(BaseModel):
    chain_id: int
    deployment_block: int
    next_block: int
    head_block: int
    lag_blocks: int
    reorgs: int
    resets: int
    updated_at: datetime
    events: dict[str, int]


_HEX = r"^0x([0-9a-fA-F]{2})*$"


class ForwardCreate(BaseModel):
    """An ERC-2771 ForwardRequest signed by the wallet (EIP-712, GpucapForwarder domain)."""

    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from", description="the wallet that signed")
    to: str
    value: int = Field(0, ge=0, lt=2**256)
    gas: int = Field(ge=21_000, le=10_000_000, description="gas for the inner call")
    deadline: int = Field(ge=0, lt=2**48, description="unix seconds (uint48)")
    data: str = Field(pattern=_HEX, max_length=2 + 2 * 32_768)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")
    nonce: int | None = Field(
        None, ge=0, description="the forwarder nonce signed for (optional; checked if given)"
    )

    @field_validator("sender", "to", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        return checksum_address(value)


class ForwardAccepted(ActionAccepted):
    contract: str
    function: str
    nonce: int


class ForwarderInfoPublic(BaseModel):
    """The EIP-712 domain and types a wallet signs forward requests with."""

    domain: dict[str, Any]
    types: dict[str, Any]
    primary_type: str = "ForwardRequest"
    allowed_calls: dict[str, list[str]]


class HoldingPublic(_Row):
    token_id: str
    class_id: int | None
    window_start: int | None
    amount: int


class PortfolioPublic(BaseModel):
    """What an address holds and owes, from the index."""

    address: str
    stablecoin: int
    capacity: list[HoldingPublic]
    reservations: list[ReservationPublic]
    nodes: list[NodePublic]
    as_of_block: int


class SigningNoncesPublic(BaseModel):
    """Nonces a wallet signs with: the forwarder's (ForwardRequest) and the stablecoin's
    (EIP-2612 permit). Read from the chain: they must be current, not indexed."""

    address: str
    forwarder: int
    stablecoin_permit: int
    stablecoin_name: str
    stablecoin: str
    chain_id: int
