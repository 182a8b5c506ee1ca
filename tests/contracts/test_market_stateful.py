"""Stateful property: the market moves every token and stablecoin unit exactly as its rules
say, never fills an order beyond its amount, and never fills a cancelled or expired order.

World (built once, snapshotted; every example starts from it): the deployed Market with a
maker fee of 20 bps and a taker fee of 30 bps, three traders each holding 50 GPU-hours of one
capacity id (a window days ahead), pool shares of one listed RevenuePool and 100,000 USD,
every approval given.

Rules: a trader signs an order off-chain (capacity or pool share, sell or buy, dust or
dollar prices, nonce 0-3, live or already expired); a taker fills one order (sometimes
more than is left, sometimes its own order) or a batch of up to three; a maker (or
someone else) cancels an order; a trader cancels every nonce below 1-4; time jumps three
hours (live orders expire). Revert expectations are exact custom errors (eth_call); a
batch with one bad item must change nothing.

Shadow beside the chain: each order's filled amount and cancellation, each trader's
minimum nonce, stablecoin, GPU-hours and pool shares, the fee recipient's stablecoin, the
last trade price of both instruments. Invariants after every step (one JSON-RPC batch):
every balance and order state matches the shadow; filled <= amount; the market holds
nothing; stablecoin, GPU-hours and pool shares are conserved to the unit across the
traders and the fee recipient (buyer pays == seller receives + fees on every fill).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import pytest
from eth_account.messages import _hash_eip191_message
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.contracts.market_helpers import (
    CHAIN_ID,
    TRADER_KEYS,
    WAD,
    build_world,
    legs_of,
    quote_of,
)
from tests.contracts.node_helpers import USD
from tests.support.errors import err
from tests.support.profiles import STATEFUL_EXAMPLES_ENV, active_profile
from tests.support.stateful import (
    SnapshotMachine,
    _rpc,
    batch_views,
    mine_at_least,
    revert_of,
    run_machine,
    stateful_timeout,
    transact,
)

pytestmark = stateful_timeout

MAKER_BPS, TAKER_BPS = 20, 30
STEPS = 10
LIVE_SECONDS = 2 * 3600  # a live order's lifetime; a time jump (3 h) expires it
JUMP_SECONDS = 3 * 3600
SHARE_LOT = 10**17  # pool-share orders trade in tenths of a share

# What the examples reached (printed by the test; asserted only at CI scale).
REACHED: Counter[str] = Counter()

pick = st.integers(0, 2**16)
trader_ix = st.integers(0, 2)


@dataclass
class Placed:
    order: object  # MarketOrder
    signature: bytes
    order_hash: bytes
    filled: int = 0
    cancelled: bool = False


@pytest.fixture(scope="module")
def world(system, registry, register_node, operator, admin, fund, h100, pool_gate):
    w = build_world(system, registry, register_node, operator, admin, fund, h100, pool_gate)
    w.market.setFees(MAKER_BPS, TAKER_BPS, {"from": admin})
    # The traders sign orders with their keys; the node sends their transactions for them
    # (``transact`` sends unsigned ones, as from the node's own accounts).
    for trader in w.traders:
        _rpc("anvil_impersonateAccount", trader.address)
    yield {"w": w}
    # Impersonated addresses join the node's eth_accounts, which brownie reloads as
    # key-less accounts on its next reset: a later module's accounts.add(key) would get one.
    for trader in w.traders:
        _rpc("anvil_stopImpersonatingAccount", trader.address)


class MarketMachine(SnapshotMachine):
    def __init__(self) -> None:
        super().__init__()
        w = self.w
        self.market, self.capacity, self.pool, self.cash = (
            w.market,
            w.capacity,
            w.pool,
            w.stablecoin,
        )
        self.traders = [t.address for t in w.traders]
        self.fee_to = w.fee_recipient.address
        self.who = [*self.traders, self.fee_to]
        self.assets = [(self.capacity.address, w.tid), (self.pool.address, 0)]
        views = [(self.cash, "balanceOf", (a,)) for a in self.who]
        views += [(self.capacity, "balanceOf", (a, w.tid)) for a in self.who]
        views += [(self.pool, "balanceOf", (a,)) for a in self.who]
        start = batch_views(*views, (self.market, "minValidNonce", (self.traders[0],)))
        n = len(self.who)
        self.bal = {
            "cash": dict(zip(self.who, start[:n], strict=True)),
            "hours": dict(zip(self.who, start[n : 2 * n], strict=True)),
            "shares": dict(zip(self.who, start[2 * n : 3 * n], strict=True)),
        }
        self.totals = {k: sum(v.values()) for k, v in self.bal.items()}
        self.min_nonce = dict.fromkeys(self.traders, 0)
        self.orders: list[Placed] = []
        self.last_price = dict.fromkeys(self.assets, 0)
        self.clock = _latest_timestamp()

    # ------------------------------------------------------------------ rules

    @rule(
        maker=trader_ix,
        on_pool=st.booleans(),
        sell=st.booleans(),
        lots=st.integers(1, 12),
        quote=st.one_of(st.integers(1, 50), st.integers(USD, 40 * USD)),
        nonce=st.integers(0, 3),
        live=st.sampled_from([True, True, True, False]),
    )
    def place(self, maker, on_pool, sell, lots, quote, nonce, live):
        from gpucap.signing import MarketOrder, sign_order

        asset, tid = self.assets[1 if on_pool else 0]
        order = MarketOrder(
            maker=self.traders[maker],
            asset=asset,
            token_id=tid,
            sell=sell,
            amount=lots * (SHARE_LOT if on_pool else 1),
            quote_amount=quote,
            nonce=nonce,
            # Not live: expires at the latest block's time, so every fill (a call at the latest
            # block, or a transaction in a later one) finds it expired.
            expiry=self.clock + (LIVE_SECONDS if live else 0),
        )
        market = str(self.market.address)
        signature = sign_order(order, TRADER_KEYS[maker], market=market, chain_id=CHAIN_ID)
        digest = _hash_eip191_message(order.typed_data(market, CHAIN_ID))
        placed = Placed(order, signature, bytes(digest))
        for earlier in self.orders:  # the same order signed again is the same order
            if earlier.order_hash == placed.order_hash:
                placed.filled, placed.cancelled = earlier.filled, earlier.cancelled
        self.orders.append(placed)

    @precondition(lambda self: self.orders)
    @rule(which=pick, taker=trader_ix, extra=st.integers(-3, 2), whole=st.booleans())
    def fill(self, which, taker, extra, whole):
        placed = self.orders[which % len(self.orders)]
        left = placed.order.amount - placed.filled
        unit = SHARE_LOT if placed.order.asset == self.pool.address else 1
        amount = left if whole else max(1, left + extra * unit)
        self._fill_batch([(placed, amount)], self.traders[taker], single=True)

    @precondition(lambda self: self.orders)
    @rule(
        picks=st.lists(st.tuples(pick, st.integers(1, 4)), min_size=1, max_size=3), taker=trader_ix
    )
    def fill_batch(self, picks, taker):
        items = []
        for which, lots in picks:
            placed = self.orders[which % len(self.orders)]
            unit = SHARE_LOT if placed.order.asset == self.pool.address else 1
            items.append((placed, lots * unit))
        self._fill_batch(items, self.traders[taker], single=False)

    @precondition(lambda self: self.orders)
    @rule(which=pick, by_maker=st.booleans(), other=trader_ix)
    def cancel(self, which, by_maker, other):
        placed = self.orders[which % len(self.orders)]
        maker = placed.order.maker
        sender = maker if by_maker else self.traders[other]
        args = (placed.order.as_tuple(),)
        if sender != maker:
            expected = err("MarketNotMaker", sender, maker)
        elif placed.cancelled:
            expected = err("MarketOrderCancelled", placed.order_hash)
        else:
            transact(self.market, "cancel", args, sender)
            for p in self.orders:  # the same order placed twice is one order
                if p.order_hash == placed.order_hash:
                    p.cancelled = True
            return
        assert revert_of(self.market, "cancel", *args, sender=sender) == expected

    @rule(who=trader_ix, nonce=st.integers(0, 4))
    def cancel_up_to(self, who, nonce):
        trader = self.traders[who]
        current = self.min_nonce[trader]
        if nonce <= current:
            expected = err("MarketNonceNotIncreasing", current, nonce)
            assert revert_of(self.market, "cancelUpTo", nonce, sender=trader) == expected
            return
        transact(self.market, "cancelUpTo", (nonce,), trader)
        self.min_nonce[trader] = nonce

    @rule()
    def time_passes(self):
        self.clock = mine_at_least(self.clock + JUMP_SECONDS)

    # ------------------------------------------------------------------ fills

    def _fill_batch(self, items, taker: str, *, single: bool) -> None:
        """Simulates the items in order on a copy of the shadow; the first failure is the
        expected revert (nothing changes), else the chain must do exactly the same."""
        filled = {p.order_hash: p.filled for p, _ in items}
        bal = {k: dict(v) for k, v in self.bal.items()}
        last = dict(self.last_price)
        failure = None
        for placed, amount in items:
            failure = self._simulate(placed, amount, taker, filled, bal, last)
            if failure is not None:
                break
        if single:
            placed, amount = items[0]
            args = (placed.order.as_tuple(), placed.signature, amount)
            fn = "fill"
        else:
            args = ([(p.order.as_tuple(), p.signature, a) for p, a in items],)
            fn = "fillBatch"
        REACHED[(failure or "filled").split(":")[0] + (" (batch)" if not single else "")] += 1
        if failure is not None:
            got = revert_of(self.market, fn, *args, sender=taker)
            if failure.startswith("MarketOrderExpired"):  # then the block's time
                assert got.startswith(failure + ", "), (got, failure)
            else:
                assert got == failure
            return
        events = transact(self.market, fn, args, taker)
        assert len(events["OrderFilled"]) == len(items)
        for placed in self.orders:
            if placed.order_hash in filled:
                placed.filled = filled[placed.order_hash]
        self.bal, self.last_price = bal, last
        self.clock = _latest_timestamp()

    def _simulate(self, placed, amount, taker, filled, bal, last):
        """Applies one fill to the shadow copies, or returns the error it must revert with."""
        order, h = placed.order, placed.order_hash
        if self.clock >= order.expiry:
            return f"MarketOrderExpired: {h!r}, {order.expiry}"  # + now (checked as prefix)
        if order.nonce < self.min_nonce[order.maker]:
            return err("MarketNonceCancelled", h, order.nonce, self.min_nonce[order.maker])
        if placed.cancelled:
            return err("MarketOrderCancelled", h)
        if taker == order.maker:
            return err("MarketSelfTrade", order.maker)
        if amount == 0:
            return err("MarketZeroAmount")
        left = order.amount - filled[h]
        if amount > left:
            return err("MarketOverfill", h, left, amount)
        legs = legs_of(order, amount, MAKER_BPS, TAKER_BPS)
        if legs.quote == 0:
            return err("MarketZeroQuote", h, amount)
        seller, buyer = (order.maker, taker) if order.sell else (taker, order.maker)
        kind = "shares" if order.asset == self.pool.address else "hours"
        if bal[kind][seller] < amount:
            if kind == "hours":
                return err(
                    "ERC1155InsufficientBalance", seller, bal[kind][seller], amount, order.token_id
                )
            return err("ERC20InsufficientBalance", seller, bal[kind][seller], amount)
        assert bal["cash"][buyer] >= legs.buyer_pays, "traders' cash is sized never to run out"
        filled[h] += amount
        bal[kind][seller] -= amount
        bal[kind][buyer] += amount
        bal["cash"][buyer] -= legs.buyer_pays
        bal["cash"][seller] += legs.seller_receives
        bal["cash"][self.fee_to] += legs.maker_fee + legs.taker_fee
        assert legs.buyer_pays == legs.seller_receives + legs.maker_fee + legs.taker_fee
        assert legs.quote == quote_of(order, amount)
        last[(order.asset, order.token_id)] = legs.quote * WAD // amount
        return None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def books_match_the_chain(self):
        w = self.w
        views = [(self.cash, "balanceOf", (a,)) for a in (*self.who, self.market.address)]
        views += [
            (self.capacity, "balanceOf", (a, w.tid)) for a in (*self.who, self.market.address)
        ]
        views += [(self.pool, "balanceOf", (a,)) for a in (*self.who, self.market.address)]
        views += [(self.market, "orderState", (p.order_hash,)) for p in self.orders]
        views += [(self.market, "minValidNonce", (t,)) for t in self.traders]
        views += [(self.market, "lastTrade", (a, t)) for a, t in self.assets]
        got = batch_views(*views)
        n = len(self.who) + 1
        for i, kind in enumerate(("cash", "hours", "shares")):
            row = got[i * n : (i + 1) * n]
            assert row[:-1] == [self.bal[kind][a] for a in self.who], kind
            assert row[-1] == 0, f"the market holds {kind}"
            assert sum(self.bal[kind].values()) == self.totals[kind], f"{kind} not conserved"
        rest = got[3 * n :]
        states, rest = rest[: len(self.orders)], rest[len(self.orders) :]
        for placed, state in zip(self.orders, states, strict=True):
            assert tuple(state) == (placed.filled, placed.cancelled)
            assert placed.filled <= placed.order.amount
        nonces, trades = rest[: len(self.traders)], rest[len(self.traders) :]
        assert nonces == [self.min_nonce[t] for t in self.traders]
        assert [t[0] for t in trades] == [self.last_price[a] for a in self.assets]


def _latest_timestamp() -> int:
    from brownie import web3

    return int(
        web3.provider.make_request("eth_getBlockByNumber", ["latest", False])["result"][
            "timestamp"
        ],
        16,
    )


def test_market_conserves_and_never_overfills(world):
    REACHED.clear()
    run_machine(MarketMachine, world, steps=STEPS)
    print(f"\nREACHED {dict(sorted(REACHED.items()))}")
    examples = int(os.environ.get(STATEFUL_EXAMPLES_ENV) or active_profile().stateful_examples)
    if examples >= 1_000:  # guards against a precondition slip making the machine vacuous
        for what in (
            "filled",
            "filled (batch)",
            "MarketOrderExpired",
            "MarketOrderCancelled",
            "MarketNonceCancelled",
            "MarketOverfill",
            "MarketSelfTrade",
            # Not "MarketZeroQuote": it needs a dust price drawn with a small amount, reached in
            # some runs of 1,000 examples only (a guard must not depend on the draw); it has
            # its unit test in test_market.py.
        ):
            assert REACHED[what] > 0, what
