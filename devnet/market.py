"""The demo's users on the secondary market: they rest orders, take and cancel them.

Everything goes through the API and costs the users no gas (gpucap/trading.py): an
order is signed and posted to the book; a take is matched by the API, signed as a
forward request and relayed as a fill; a cancel is the maker's relayed
``Market.cancel``; approvals are a relayed ``setApprovalForAll`` and EIP-2612 permits
the relayer submits, given the first time a trader needs them.

Who trades: the world's users (they bought GPU-hours in the primary market) and its
investors (they hold pool shares). What: GPU-hours of every class in the world for the
windows ahead (those starting more than ``LEAD_SECONDS`` from now, up to
``WINDOWS_AHEAD``) and every pool's shares. At what price: near the primary one (a
class's median ask across the world's nodes; a share's round price), bids 2-10 % under
it and asks 2-10 % over, so the book has a spread that a taker pays. An order lives
``ORDER_LIFETIME_SECONDS``, or until its window starts.

devnet/market_seed.py rests the first orders at demo start; devnet/activity.py then
places, takes and cancels among its steps. Holdings are read from the chain, not the
index: at demo start the indexer is still catching up.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from gpucap import actions, trading
from gpucap.deployment import Deployment
from gpucap.signing import MarketOrder

log = logging.getLogger("gpucap.market")
SHARE = 10**18
CENT = 10**4  # stablecoin units: order prices are whole cents per GPU-hour or share
LEAD_SECONDS = 90  # a window this close to its start is not traded: the fill could land late
WINDOWS_AHEAD = 6  # the activity offers capacity up to six windows ahead
ORDER_LIFETIME_SECONDS = 30 * 60
BID_FACTORS, ASK_FACTORS = (0.90, 0.98), (1.02, 1.10)
TAKE_SLACK = Decimal("0.01")  # a taker accepts up to 1 % past the best price
GPU_HOUR_LOTS, SHARE_LOTS = (1, 4), (10, 200)  # whole units an order or a take names


@dataclass(frozen=True)
class Instrument:
    asset: str
    token_id: int
    label: str
    primary: int  # stablecoin units per whole unit (a GPU-hour, a share)
    unit: int  # base units of one whole unit
    window_start: int | None  # None: pool shares

    @property
    def lots(self) -> tuple[int, int]:
        return SHARE_LOTS if self.window_start is None else GPU_HOUR_LOTS


class Traders:
    """The users and investors of the world trading, one action at a time."""

    def __init__(
        self,
        api: actions.Api,
        w3: Web3,
        deployment: Deployment,
        world: dict[str, Any],
        rng: random.Random,
        wallet: Callable[[int], LocalAccount],
        memory: Path | None = None,
    ) -> None:
        self.api, self.w3, self.deployment, self.world = api, w3, deployment, world
        self.rng, self.wallet, self.memory = rng, wallet, memory
        self.capacity = deployment.contract(w3, "CapacityToken")
        self.stablecoin = deployment.contract(w3, "TestStablecoin")
        self.pools = {p["address"]: actions.pool(w3, p["address"]) for p in world["pools"]}
        self.people = list(world["users"]) + list(world["investors"])
        # hash -> the order as placed: what the makers remember (theirs to cancel, units
        # they promised), kept in ``memory`` across the seeding and the activity's restarts
        self.orders: dict[str, dict[str, Any]] = (
            json.loads(memory.read_text()) if memory is not None and memory.exists() else {}
        )
        self._approved: set[tuple[str, str]] = set()  # (trader, what) given already
        self._info: dict[str, Any] | None = None
        self._terms: tuple[int, dict[str, int]] | None = None  # window length, share prices

    @property
    def info(self) -> dict[str, Any]:
        """GET /api/v1/market: the domain orders are signed in (read once)."""
        if self._info is None:
            self._info = self.api.get("/api/v1/market")
        return self._info

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    # -- what trades, and at what price ------------------------------------------------

    def instruments(self, now: int) -> list[Instrument]:
        """What trades now: each class's windows ahead, then every pool's shares."""
        if self._terms is None:  # fixed at deployment: read once
            self._terms = (
                self.capacity.functions.windowSeconds().call(),
                {a: p.functions.terms().call()[4] for a, p in self.pools.items()},  # sharePrice
            )
        window, share_prices = self._terms
        first = (now + LEAD_SECONDS) // window + 1
        asks: dict[str, list[int]] = {}
        for node in self.world["nodes"]:
            asks.setdefault(node["class_name"], []).append(node["price_per_gpu_hour"])
        out = []
        for name, prices in sorted(asks.items()):
            class_id = self.deployment.gpu_classes[name]
            primary = int(statistics.median(prices))
            for k in range(WINDOWS_AHEAD):
                start = (first + k) * window
                label = f"{name} GPU-h of the {start % 86_400 // 3_600:02d}:00 UTC window"
                out.append(
                    Instrument(
                        self.capacity.address, (class_id << 64) | start, label, primary, 1, start
                    )
                )
        for address, price in share_prices.items():
            out.append(Instrument(address, 0, f"shares of {address[:10]}…", price, SHARE, None))
        return out

    def holdings(self, who: str, instruments: list[Instrument]) -> dict[Instrument, int]:
        """Base units of each instrument ``who`` holds and has not promised in an open
        sell of its own (read from the chain: one call for the GPU-hours, one per pool)."""
        windows = [i for i in instruments if i.window_start is not None]
        have = dict(
            zip(
                windows,
                self.capacity.functions.balanceOfBatch(
                    [who] * len(windows), [i.token_id for i in windows]
                ).call(),
                strict=True,
            )
        )
        for i in instruments:
            if i.window_start is None:
                have[i] = self.pools[i.asset].functions.balanceOf(who).call()
        # What was left of each when placed: fills since then lowered the holding too, so
        # this errs on the side of offering less than is free, never more.
        for placed in self.orders.values():
            if placed["maker"] == who and placed["sell"]:
                for i in have:
                    if (placed["asset"], int(placed["token_id"])) == (i.asset, i.token_id):
                        have[i] -= int(placed["remaining"])
        return {i: max(0, h) for i, h in have.items()}

    def _price(self, instrument: Instrument, *, sell: bool) -> int:
        """Stablecoin units per whole unit: the primary price moved by a random spread."""
        low, high = ASK_FACTORS if sell else BID_FACTORS
        return max(CENT, round(instrument.primary * self.rng.uniform(low, high) / CENT) * CENT)

    # -- the actions -------------------------------------------------------------------

    def place(self) -> str:
        """A random trader rests an order: an ask for part of what it holds (half the
        time, if it holds anything), else a bid on a random instrument."""
        now = self.now()
        self._forget_expired(now)
        who = self.wallet(self.rng.choice(self.people))
        choices = self.instruments(now)
        held = self.holdings(who.address, choices)
        sellable = [i for i in choices if held[i] >= i.unit]
        sell = bool(sellable) and self.rng.random() < 0.5
        instrument = self.rng.choice(sellable if sell else choices)
        self.ensure_approved(who, instrument, sell=sell)
        order = self.make_order(who, instrument, sell, now, held[instrument])
        placed = trading.place(self.api, who, order, self.info)
        self.keep(placed)
        return placed_line(placed, instrument)

    def make_order(
        self, who: LocalAccount, instrument: Instrument, sell: bool, now: int, free: int
    ) -> MarketOrder:
        """An order of a few lots (a sell: at most what is ``free``) at a price near the
        primary one, living ORDER_LIFETIME_SECONDS or until its window starts."""
        lots = self.rng.randint(*instrument.lots)
        if sell:
            lots = max(1, min(lots, free // instrument.unit))
        expiry = now + ORDER_LIFETIME_SECONDS
        if instrument.window_start is not None:
            expiry = min(expiry, instrument.window_start)
        return MarketOrder(
            maker=who.address,
            asset=instrument.asset,
            token_id=instrument.token_id,
            sell=sell,
            amount=lots * instrument.unit,
            quote_amount=lots * self._price(instrument, sell=sell),
            nonce=trading.order_nonce(),
            expiry=expiry,
        )

    def keep(self, placed: dict[str, Any]) -> None:
        """Remember an order the API placed (its maker's to cancel)."""
        self.orders[placed["order_hash"]] = placed
        self._remember()

    def take(self) -> str:
        """A trader looks at a few books and takes the best price of one side it can."""
        who = self.wallet(self.rng.choice(self.people))
        instruments = self.instruments(self.now())
        held = self.holdings(who.address, instruments)
        for instrument in self.rng.sample(instruments, min(8, len(instruments))):
            book = self.api.get(
                "/api/v1/market/book", asset=instrument.asset, token_id=str(instrument.token_id)
            )
            holding = held[instrument]
            sides = [("buy", book["asks"])] if book["asks"] else []
            if book["bids"] and holding >= instrument.unit:
                sides.append(("sell", book["bids"]))
            if sides:
                side, levels = self.rng.choice(sides)
                return self._take(who, instrument, side == "buy", levels[0], holding)
        return f"take: {who.address[:10]}… found nothing to take in the books it looked at"

    def _take(
        self, who: LocalAccount, instrument: Instrument, buy: bool, best: dict[str, Any], held: int
    ) -> str:
        lots = self.rng.randint(*instrument.lots)
        amount = min(lots * instrument.unit, int(best["amount"]))
        if not buy:
            amount = min(amount, held)
        self.ensure_approved(who, instrument, sell=not buy)
        best_price = Decimal(best["price"])
        limit = best_price * (1 + TAKE_SLACK) if buy else best_price * (1 - TAKE_SLACK)
        taken = trading.take(
            self.api,
            self.deployment,
            who,
            asset=instrument.asset,
            token_id=instrument.token_id,
            buy=buy,
            amount=amount,
            limit_price=trading.limit_text(limit, buy=buy),
        )
        action = self.api.follow(taken.accepted["action_id"])
        matched = taken.matched
        what = (
            f"{'bought' if buy else 'sold'} {int(matched['amount']) / instrument.unit:g} "
            f"{instrument.label} for {int(matched['quote']) / 10**6:,.2f} tUSD "
            f"from {len(matched['fills'])} order(s)"
        )
        if action["status"] != "confirmed":
            status = f"{action['status']} {action.get('error_code')}"
            return f"take ({what}): action {action['id']} {status}"
        return f"{who.address[:10]}… took: {what} (block {action.get('block_number')})"

    def cancel(self) -> str:
        """A maker cancels one of its open orders on-chain."""
        self._forget_expired(self.now())
        if not self.orders:
            return "cancel: the traders have no open order of their own to cancel"
        digest = self.rng.choice(sorted(self.orders))
        placed = self.api.get(f"/api/v1/market/orders/{digest}")
        if placed["status"] not in ("open", "partially_filled"):
            del self.orders[digest]
            self._remember()
            return f"cancel: order {digest[:12]}… is {placed['status']} already"
        maker = next(w for i in self.people if (w := self.wallet(i)).address == placed["maker"])
        data = trading.cancel_data(self.deployment, trading.order_of(placed))
        accepted = actions.forward(self.api, self.deployment, maker, "Market", data)
        action = self.api.follow(accepted["action_id"])
        if action["status"] != "confirmed":
            return f"cancel: action {action['id']} {action['status']} {action.get('error_code')}"
        del self.orders[digest]
        self._remember()
        unit = 1 if placed["asset"] == self.capacity.address else SHARE
        left = f"{int(placed['remaining']) // unit} left of {int(placed['amount']) // unit}"
        return (
            f"{maker.address[:10]}… cancelled order {digest} "
            f"({left}; block {action.get('block_number')})"
        )

    # -- approvals ---------------------------------------------------------------------

    def ensure_approved(self, who: LocalAccount, instrument: Instrument, *, sell: bool) -> None:
        """What a trade of ``instrument`` needs from ``who``, given the first time: the
        GPU-hours or the pool's shares for a sell, the stablecoin for a buy."""
        if not sell:
            need = "stablecoin"
        else:
            need = "capacity" if instrument.window_start is not None else instrument.asset
        if (who.address, need) in self._approved:
            return
        for line in self.approve(
            who,
            pools=[need] if need.startswith("0x") else [],
            capacity=need == "capacity",
            stablecoin=need == "stablecoin",
        ):
            log.info("%s", line)

    def approve(
        self,
        who: LocalAccount,
        *,
        pools: list[str],
        capacity: bool = True,
        stablecoin: bool = True,
        api: actions.Api | None = None,
    ) -> list[str]:
        """Give the market ``who``'s approvals (GPU-hours, the stablecoin, ``pools``' shares:
        what is missing of those) and wait for each; what was done, as log lines."""
        api = api or self.api
        given = trading.approve(
            api, self.deployment, who, pools, capacity=capacity, stablecoin=stablecoin
        )
        lines = [f"{who.address[:10]}… {d['what']}: {d['status']}" for d in given.done]
        failed = []
        for what, action_id in given.pending:
            action = api.follow(action_id)
            lines.append(f"{who.address[:10]}… approved the market for {what}: {action['status']}")
            if action["status"] != "confirmed":
                failed.append(f"{what} ({action['status']} {action.get('error_code')})")
        if failed:
            raise actions.TxRejected(f"{who.address} could not approve {', '.join(failed)}")
        wanted = [n for n, on in (("capacity", capacity), ("stablecoin", stablecoin)) if on]
        self._approved |= {(who.address, n) for n in [*wanted, *pools]}
        return lines

    def _forget_expired(self, now: int) -> None:
        live = {h: o for h, o in self.orders.items() if o["expiry"] > now}
        if len(live) != len(self.orders):
            self.orders = live
            self._remember()

    def _remember(self) -> None:
        if self.memory is not None:
            tmp = self.memory.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.orders))
            tmp.replace(self.memory)


def placed_line(placed: dict[str, Any], instrument: Instrument) -> str:
    lots = int(placed["amount"]) // instrument.unit
    price = int(placed["quote_amount"]) // lots / 10**6
    side = "an ask" if placed["sell"] else "a bid"
    return (
        f"{placed['maker'][:10]}… placed {side} for {lots} {instrument.label} at "
        f"{price:.2f} tUSD (order {placed['order_hash']})"
    )
