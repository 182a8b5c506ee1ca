"""Request/response models of the secondary market (``/api/v1/market``).

Every uint256 (amounts, quotes, token ids, nonces) travels as a decimal string: a
pool share has 18 decimals and a capacity token id is a 128-bit number, both beyond
what JSON numbers carry exactly in a browser. Prices are decimal strings too, in
stablecoin base units per asset base unit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from backend.app.schemas import checksum_address

UINT256_MAX = 2**256 - 1
DECIMAL_UINT = r"^[0-9]{1,78}$"
# Expiry is a uint64 on-chain; the database keeps it in a signed 64-bit column.
EXPIRY_MAX = 2**63 - 1


def _uint_text(value: Any) -> Any:
    """Accept a JSON integer too (the CLI's and tests' convenience); bound to uint256."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.isdigit() and int(value) > UINT256_MAX:
        raise ValueError("above the uint256 maximum")
    return value


Uint = Annotated[
    str,
    BeforeValidator(_uint_text),
    Field(pattern=DECIMAL_UINT, description="uint256 as a decimal string"),
]
PositiveUint = Annotated[
    str,
    BeforeValidator(_uint_text),
    Field(pattern=r"^0*[1-9][0-9]{0,77}$", description="uint256 above zero, decimal string"),
]
Price = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,60}(\.[0-9]{1,36})?$",
        description="stablecoin base units per asset base unit, decimal",
        examples=["2000000"],
    ),
]


class _Addresses(BaseModel):
    @field_validator("maker", "asset", "taker", mode="before", check_fields=False)
    @classmethod
    def _address(cls, value: Any) -> str:
        return checksum_address(value)


class MarketOrderCreate(_Addresses):
    """IMarket.Order and its maker's EIP-712 signature (GpucapMarket domain, version 1)."""

    maker: str
    asset: str = Field(description="the CapacityToken, or a listed pool's shares")
    token_id: Uint = Field(description="capacity token id (class x window); 0 for pool shares")
    sell: bool = Field(description="true: the maker sells the asset for stablecoin")
    amount: PositiveUint = Field(description="asset base units")
    quote_amount: PositiveUint = Field(description="stablecoin base units for the whole amount")
    nonce: Uint
    expiry: int = Field(ge=0, le=EXPIRY_MAX, description="unix seconds; fills need it ahead")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class MarketOrderPublic(BaseModel):
    """A book order and what the chain (through the index) did with it."""

    order_hash: str
    maker: str
    asset: str
    token_id: str
    sell: bool
    amount: str
    quote_amount: str
    price: str
    nonce: str
    expiry: int
    signature: str
    status: Literal["open", "partially_filled", "filled", "cancelled", "expired"]
    filled: str = Field(description="units filled on-chain, as indexed")
    in_flight: str = Field(description="units relayed fills not yet indexed will take")
    remaining: str = Field(description="units a taker can still take through the book")
    in_book: bool
    dropped: str | None = Field(
        description="why the book stopped offering it (MakerBalanceTooLow, MakerNotApproved)"
    )


class LevelPublic(BaseModel):
    price: str
    amount: str
    orders: int


class OrderBookPublic(BaseModel):
    """Depth by price level, best first; asks are sell orders, bids buy orders."""

    asset: str
    token_id: str
    asks: list[LevelPublic]
    bids: list[LevelPublic]
    as_of: int = Field(description="chain time the order states are taken at (unix seconds)")


class MarketTradePublic(BaseModel):
    block_number: int
    log_index: int
    tx_hash: str
    order_hash: str
    maker: str
    taker: str
    maker_sells: bool
    amount: str
    quote: str
    maker_fee: str
    taker_fee: str
    price: str
    block_timestamp: int
    wash_flag: Literal["self_trade", "wash_trade"] | None = Field(
        description="self_trade: maker and taker are one address; wash_trade: the same two "
        "addresses traded this instrument the other way within an hour (both legs are "
        "flagged). A flagged trade moved nothing between independent owners: do not take "
        "its price or volume for a market's"
    )


class MatchCreate(_Addresses):
    """A taker's request: take up to ``amount`` units at ``limit_price`` or better."""

    taker: str = Field(description="who will sign the fill (its own orders are skipped)")
    asset: str
    token_id: Uint
    side: Literal["buy", "sell"] = Field(description="the taker's side")
    amount: PositiveUint
    limit_price: Price


class MatchedFillPublic(BaseModel):
    order_hash: str
    maker: str
    amount: str
    quote: str
    price: str


class MatchPublic(BaseModel):
    """The Market call that takes the matched orders: sign it as a forward request (from
    the taker, to ``to``, with ``data`` and at least ``gas``) and POST it to
    /api/v1/market/fills."""

    fills: list[MatchedFillPublic]
    amount: str
    quote: str = Field(description="stablecoin the fills move before fees")
    to: str
    function: Literal["fill", "fillBatch"]
    data: str
    gas: int


class MarketInfoPublic(BaseModel):
    """What to sign an order with, and the market's terms."""

    domain: dict[str, Any]
    types: dict[str, Any]
    primary_type: str = "Order"
    capacity_token: str
    stablecoin: str
    maker_fee_bps: int
    taker_fee_bps: int


# -- gasless approvals (EIP-2612 permits for the Market) ---------------------------


class PermitTokenPublic(BaseModel):
    """One ERC-20 the market spends for ``owner``, and what a permit of it is signed with."""

    token: str
    kind: Literal["stablecoin", "pool"] = Field(
        description="stablecoin: what a bid (or a buying taker) pays; pool: shares a sell moves"
    )
    allowance: str = Field(description="the Market's allowance from the owner now (uint256)")
    nonce: str = Field(description="the owner's next permit nonce at this token")
    domain: dict[str, Any] = Field(description="the token's EIP-712 domain (sign the permit in it)")


class MarketApprovalsPublic(BaseModel):
    """What the market may move for ``owner`` now, and how to sign the missing approvals:
    CapacityToken.setApprovalForAll (a forward request) and an EIP-2612 permit per ERC-20,
    posted to POST /api/v1/market/permits."""

    owner: str
    spender: str = Field(description="the Market: the only spender the relayer permits")
    capacity_token: str
    capacity_approved: bool = Field(description="CapacityToken.isApprovedForAll(owner, Market)")
    tokens: list[PermitTokenPublic]
    types: dict[str, Any]
    primary_type: str = "Permit"
    chain_id: int
    chain_time: int = Field(description="latest block's time: count a permit's deadline from it")


class MarketPermitCreate(BaseModel):
    """An EIP-2612 permit the owner signed for the Market, for the relayer to submit."""

    token: str = Field(description="the stablecoin or a listed pool")
    owner: str
    spender: str = Field(description="must be the Market")
    value: Uint
    nonce: Uint = Field(description="the owner's permit nonce at the token, as signed")
    deadline: int = Field(ge=0, le=EXPIRY_MAX, description="unix seconds, as signed")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="r ‖ s ‖ v, 65 bytes")

    @field_validator("token", "owner", "spender", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        return checksum_address(value)


class MarketPermitAccepted(BaseModel):
    """The relayed permit's action, or (``in_effect``) nothing to relay: its nonce is used
    already and the Market's allowance covers its value."""

    action_id: str | None
    status: Literal["pending", "submitted", "confirmed", "failed", "in_effect"]
    status_url: str | None
    token: str
    owner: str
    allowance: str = Field(description="the Market's allowance when the permit was checked")
