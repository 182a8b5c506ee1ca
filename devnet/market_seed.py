"""``python -m devnet.market_seed``: the market's first orders, so the book is not empty
at first look (devnet/__main__.py runs it before it says the world is up).

Every trader of devnet/market.py approves the market, gaslessly and all at once (a
relayed ``setApprovalForAll``, permits of the stablecoin and of the pool shares it
holds), then each instrument gets a bid or two from traders with tUSD to spare and up
to two holders' asks, at the traders' prices. The orders are remembered where the
activity finds them (``--orders``): its makers may cancel them later.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from devnet.market import Instrument, Traders, placed_line
from devnet.world import read_world
from gpucap import actions, devchain, trading
from gpucap.deployment import Deployment
from gpucap.signing import MarketOrder

log = logging.getLogger("gpucap.market")
SPARE = 1_000 * 10**6  # tUSD a trader keeps to bid with
THREADS = 4  # makers whose first orders are posted at once


def seed_book(traders: Traders) -> str:
    """Approvals, then the first orders; what was placed, in a line."""
    people = [traders.wallet(i) for i in traders.people]
    log.info("the market's first orders: %d traders approve it", len(people))
    pools_of = {
        w.address: [a for a, p in traders.pools.items() if p.functions.balanceOf(w.address).call()]
        for w in people
    }

    def approve(who: LocalAccount) -> list[str]:
        api = actions.Api(traders.api.base_url)  # a client per thread
        return traders.approve(who, pools=pools_of[who.address], api=api)

    with ThreadPoolExecutor(max_workers=min(8, len(people))) as workers:
        for lines in workers.map(approve, people):
            for line in lines:
                log.info("%s", line)
    by_maker = _orders(traders, people)
    info = traders.info

    def post(items: list[tuple[Instrument, MarketOrder, LocalAccount]]) -> list[Any]:
        api = actions.Api(traders.api.base_url)
        out: list[Any] = []
        for instrument, order, who in items:
            try:
                out.append((instrument, trading.place(api, who, order, info)))
            except actions.ApiRejected as exc:
                out.append(f"seeding {instrument.label}: API said {exc}")
        return out

    placed = {True: 0, False: 0}
    with ThreadPoolExecutor(max_workers=THREADS) as workers:
        for results in workers.map(post, by_maker.values()):
            for result in results:
                if isinstance(result, str):
                    log.warning("%s", result)
                    continue
                instrument, order = result
                traders.keep(order)
                placed[order["sell"]] += 1
                log.info("%s", placed_line(order, instrument))
    booked = {i for items in by_maker.values() for i, _, _ in items}
    windows = sum(1 for i in booked if i.window_start is not None)
    return (
        f"{placed[False] + placed[True]} resting orders ({placed[False]} bids, "
        f"{placed[True]} asks) for {windows} GPU-hour windows and {len(booked) - windows} "
        f"pools' shares, from {len(by_maker)} traders"
    )


def _orders(
    traders: Traders, people: list[LocalAccount]
) -> dict[str, list[tuple[Instrument, MarketOrder, LocalAccount]]]:
    """Every first order, by maker, made in order from the seeded generator (they are
    posted in parallel, one thread per maker: the API takes one maker's at a time)."""
    now = traders.now()
    instruments = traders.instruments(now)
    coin = traders.stablecoin.functions
    bidders = [w for w in people if coin.balanceOf(w.address).call() >= SPARE]
    held = {w.address: traders.holdings(w.address, instruments) for w in people}
    rng = traders.rng
    by_maker: dict[str, list[tuple[Instrument, MarketOrder, LocalAccount]]] = {}
    for instrument in instruments:
        holders = [w for w in people if held[w.address][instrument] >= instrument.unit]
        for sell, makers in (
            (False, rng.sample(bidders, min(rng.randint(1, 2), len(bidders)))),
            (True, rng.sample(holders, min(2, len(holders)))),
        ):
            for who in makers:
                order = traders.make_order(
                    who, instrument, sell, now, held[who.address][instrument]
                )
                if sell:
                    held[who.address][instrument] -= order.amount
                by_maker.setdefault(who.address, []).append((instrument, order, who))
    return by_maker


def main(
    api: Annotated[str, typer.Option(help="API base URL")],
    world: Annotated[Path, typer.Option(help="world.json written by scripts/seed.py")],
    seed: Annotated[int, typer.Option(help="seed of the traders' choices")] = 0,
    orders: Annotated[
        Path | None, typer.Option(help="where the traders remember their orders (JSON)")
    ] = None,
) -> None:
    """Seed the book: the traders approve the market and rest their first orders."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    w3 = Web3(Web3.HTTPProvider(os.environ.get("GPUCAP_RPC_URL", "http://127.0.0.1:8545")))
    deployment = Deployment.load(
        os.environ.get("GPUCAP_MANIFEST_PATH", "deployments/development.json")
    )
    traders = Traders(
        actions.Api(api),
        w3,
        deployment,
        read_world(world),
        random.Random(f"gpucap-demo-market:{seed}"),
        functools.cache(lambda index: Account.from_key(devchain.dev_private_key(index))),
        orders,
    )
    summary = seed_book(traders)
    log.info("%s", summary)
    print(summary, flush=True)  # the last line: what `make demo` prints


if __name__ == "__main__":
    typer.run(main)
