"""The Market tests' world (traders holding GPU-hours, pool shares and stablecoin, every
approval given), order signing, and the shadow arithmetic of a fill (IMarket's rules)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from brownie import chain, web3
from brownie.network.account import LocalAccount

from gpucap.signing import MarketOrder, sign_order
from tests.contracts.capacity_helpers import DAY, NODE_BOND, PRICE, token_id
from tests.contracts.node_helpers import USD
from tests.contracts.pool_helpers import deploy_pool

BPS = 10_000
WAD = 10**18
CHAIN_ID = 31337
HOURS_EACH = 50  # GPU-hours each trader bought on the primary market
CASH_EACH = 100_000 * USD
POOL_DEPOSIT_EACH = 1_000 * USD
# Deterministic trader keys (signing needs the key; brownie's unlocked accounts have none here).
TRADER_KEYS = [f"0x{0xA11CE000 + i:064x}" for i in range(3)]


@dataclass
class World:
    market: Any
    capacity: Any
    stablecoin: Any
    pool: Any
    tid: int
    window: int
    traders: list[Any]  # brownie LocalAccounts: alice, bob, carol
    fee_recipient: Any

    def key_of(self, trader: Any) -> str:
        return trader.private_key


def build_world(system, registry, register_node, operator, admin, fund, h100, pool_gate) -> World:
    """Three traders, each with HOURS_EACH GPU-hours of one id (a daily window days ahead),
    pool shares of one real RevenuePool (listed), CASH_EACH stablecoin, and the market
    approved for all three tokens."""
    market, capacity, stablecoin = system.market, system.capacity, system.stablecoin
    window = (chain.time() // DAY + 3) * DAY
    tid = token_id(h100, window)
    node = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node, NODE_BOND, {"from": operator})
    offer = capacity.publishOffer(node, tid, 3 * HOURS_EACH, PRICE, {"from": operator})
    pool = deploy_pool(stablecoin, operator, admin, gate=pool_gate)
    market.setPoolListed(pool, True, {"from": admin})
    traders = []
    for key in TRADER_KEYS:
        # A LocalAccount of its own, not accounts.add(key): that returns whatever the
        # container holds for the address, a key-less Account if the node lists it.
        signer = web3.eth.account.from_key(key)
        trader = LocalAccount(signer.address, signer, signer.key)
        admin.transfer(trader, "10 ether")
        fund(trader, CASH_EACH + HOURS_EACH * PRICE + POOL_DEPOSIT_EACH, capacity)
        capacity.buy(offer.return_value, HOURS_EACH, {"from": trader})
        stablecoin.approve(pool, POOL_DEPOSIT_EACH, {"from": trader})
        pool.deposit(POOL_DEPOSIT_EACH, trader, {"from": trader})
        stablecoin.approve(market, 2**256 - 1, {"from": trader})
        pool.approve(market, 2**256 - 1, {"from": trader})
        capacity.setApprovalForAll(market, True, {"from": trader})
        traders.append(trader)
    return World(market, capacity, stablecoin, pool, tid, window, traders, admin)


def order_for(
    world: World,
    maker: Any,
    *,
    sell: bool = True,
    amount: int = 10,
    quote: int = 10 * PRICE,
    nonce: int = 0,
    expiry: int | None = None,
    asset: Any = None,
    token_id_: int | None = None,
) -> MarketOrder:
    """An order of ``maker`` on the world's capacity id (or ``asset``), expiring in a day."""
    asset = asset if asset is not None else world.capacity
    tid = token_id_ if token_id_ is not None else (world.tid if asset == world.capacity else 0)
    return MarketOrder(
        maker=maker.address,
        asset=str(asset.address if hasattr(asset, "address") else asset),
        token_id=tid,
        sell=sell,
        amount=amount,
        quote_amount=quote,
        nonce=nonce,
        expiry=expiry if expiry is not None else chain.time() + DAY,
    )


def signed(order: MarketOrder, key: str, market: Any, chain_id: int = CHAIN_ID) -> bytes:
    return sign_order(order, key, market=str(market.address), chain_id=chain_id)


def with_fields(order: MarketOrder, **changes: Any) -> MarketOrder:
    return replace(order, **changes)


# ---------------------------------------------------------------------------
# Shadow arithmetic (IMarket): the maker's rounding, fees rounded down
# ---------------------------------------------------------------------------


def quote_of(order: MarketOrder, fill: int) -> int:
    """fill × quoteAmount / amount, up when the maker sells, down when it buys."""
    numerator = fill * order.quote_amount
    return -(-numerator // order.amount) if order.sell else numerator // order.amount


@dataclass(frozen=True)
class Legs:
    quote: int
    maker_fee: int
    taker_fee: int
    buyer_pays: int
    seller_receives: int


def legs_of(order: MarketOrder, fill: int, maker_fee_bps: int, taker_fee_bps: int) -> Legs:
    quote = quote_of(order, fill)
    maker_fee, taker_fee = quote * maker_fee_bps // BPS, quote * taker_fee_bps // BPS
    buyer_fee, seller_fee = (taker_fee, maker_fee) if order.sell else (maker_fee, taker_fee)
    return Legs(quote, maker_fee, taker_fee, quote + buyer_fee, quote - seller_fee)
