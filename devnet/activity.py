"""`python -m devnet.activity`: the demo's users, acting every few seconds so the world moves.

Each step one user does one thing a person would: buy GPU-hours of an open
offer, redeem capacity tokens into a reservation, offer a node's capacity of a
later window (as its operator), deposit into a pool that is still raising,
stake pool shares, claim pool revenue, or trade on the secondary market: rest a
bid or an ask, take the best price of a book, cancel an order of its own
(devnet/market.py; about one step in three). Capacity and market actions go
through the API (gasless, validated by the API); pool actions are the wallet's
own transactions (pools are not relayable), simulated first (gpucap/actions.py).
A rejection is logged with its code and the loop goes on: a rejected action is
part of the show, never a crash.

Admin changes go through the timelock after the hand-over (scripts/seed.py): before
each step, a user executes any announced change that is due (anyone may), as the
API lists them, so the demo's scheduled change takes effect after its delay.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from devnet.market import Traders
from devnet.world import USD, read_world
from gpucap import actions, devchain
from gpucap.deployment import Deployment
from gpucap.logs import configure_logging

log = logging.getLogger("gpucap.activity")
SHARE = 10**18
# A window this close to its start is left alone: the action could land after it.
LEAD_SECONDS = 90
FUNDING, SUCCEEDED = 0, 2  # RevenuePool.RoundStatus


class Activity:
    def __init__(
        self,
        api: actions.Api,
        w3: Web3,
        deployment: Deployment,
        world: dict,
        seed: int,
        orders: Path | None = None,
    ):
        self.api, self.w3, self.deployment, self.world = api, w3, deployment, world
        self.rng = random.Random(seed)
        self.capacity = deployment.contract(w3, "CapacityToken")
        self.stablecoin = deployment.contract(w3, "TestStablecoin")
        self.pools = [actions.pool(w3, p["address"]) for p in world["pools"]]
        self.timelock = (
            deployment.contract(w3, "GpucapTimelock")
            if "GpucapTimelock" in deployment.contracts
            else None
        )
        self._wallets: dict[int, LocalAccount] = {}
        self.market = Traders(api, w3, deployment, world, self.rng, self.wallet, orders)

    def wallet(self, index: int) -> LocalAccount:
        if index not in self._wallets:
            self._wallets[index] = Account.from_key(devchain.dev_private_key(index))
        return self._wallets[index]

    def step(self) -> str:
        """One action by one user; returns what happened (also logged)."""
        kinds = [
            self.buy,
            self.buy,
            self.redeem,
            self.redeem,
            self.offer,
            self.deposit,
            self.stake,
            self.claim,
            self.market.place,
            self.market.place,
            self.market.take,
            self.market.take,
            self.market.cancel,
        ]
        action = self.rng.choice(kinds)
        if self.timelock is not None:
            try:
                due = self.execute_due()
            except (actions.ApiRejected, actions.TxRejected) as exc:
                due = f"executing a due timelock change: {exc}"
            if due:
                log.info("%s", due)
        try:
            outcome = action()
        except actions.ApiRejected as exc:
            outcome = f"{action.__name__}: API said {exc}"
        except actions.TxRejected as exc:
            outcome = f"{action.__name__}: {exc}"
        log.info("%s", outcome)
        return outcome

    # -- governance: due timelock changes, executed by anyone ----------------------

    def execute_due(self) -> str | None:
        """Executes the first due operation the API lists (its calls in batch order)."""
        assert self.timelock is not None
        ready = self.api.get("/api/v1/governance/changes", status="ready")
        if not ready:
            return None
        operation = ready[0]["operation_id"]
        calls = [c for c in ready if c["operation_id"] == operation]
        call = actions.timelock_execute(self.timelock, calls)
        who = self.wallet(self.rng.choice(self.world["users"]))
        actions.send_call(self.w3, who, call)
        what = ", ".join(f"{c['contract']}.{c['function']}" for c in calls)
        return f"{who.address[:10]}… executed the due timelock change {what}"

    # -- capacity, through the API ------------------------------------------------

    def buy(self) -> str:
        user = self.wallet(self.rng.choice(self.world["users"]))
        offers = self.api.get(
            "/api/v1/offers", status="open", offset=self.rng.randrange(0, 600, 100)
        ) or self.api.get("/api/v1/offers", status="open")
        soon = time.time() + LEAD_SECONDS
        open_ = [o for o in offers if o["amount"] > o["sold"] and o["window_start"] > soon]
        if not open_:
            return "buy: no open offer indexed (yet)"
        offer = self.rng.choice(open_)
        amount = self.rng.randint(1, min(2, offer["amount"] - offer["sold"]))
        data, signing = actions.buy_calldata(
            self.api, self.deployment, user, offer["offer_id"], amount
        )
        what = f"bought {amount} GPU-h of offer {offer['offer_id']}"
        return self._relay(user, data, signing, what)

    def redeem(self) -> str:
        user = self.wallet(self.rng.choice(self.world["users"]))
        held = self.api.get(f"/api/v1/portfolio/{user.address}")["capacity"]
        soon = time.time() + LEAD_SECONDS
        tokens = [h for h in held if h["amount"] > 0 and (h["window_start"] or 0) > soon]
        if not tokens:
            return f"redeem: {user.address} holds nothing redeemable"
        token = self.rng.choice(tokens)
        token_id = int(token["token_id"])
        offers = self.api.get("/api/v1/offers", class_id=token["class_id"], status="open")
        for node_id in {
            o["node_id"] for o in offers if int(o["token_id"]) == token_id and o["sold"]
        }:
            room = self.capacity.functions.redeemableFrom(node_id, token_id).call()
            if room:
                amount = min(room, token["amount"], 2)
                data = self.capacity.encode_abi("redeem", args=[token_id, amount, node_id])
                return self._relay(user, data, None, f"redeemed {amount} GPU-h on node {node_id}")
        return "redeem: no node found with room for that token (in the first page of offers)"

    def offer(self) -> str:
        """An operator offers a node's free capacity of a window a few hours ahead (the
        seeded offers cover the next three windows: this keeps the market going)."""
        node = self.rng.choice(self.world["nodes"])
        operator = self.wallet(node["operator"])
        window = self.capacity.functions.windowSeconds().call()
        start = (int(time.time()) // window + self.rng.randint(4, 6)) * window
        limit, promised, _ = self.capacity.functions.capacityOf(node["node_id"], start).call()
        amount = min(limit - promised, node["gpu_count"])
        if amount <= 0:
            return f"offer: node {node['node_id']} has promised all of that window already"
        class_id = self.deployment.gpu_classes[node["class_name"]]
        price = node["price_per_gpu_hour"] * self.rng.choice((95, 100, 105)) // 100
        data = self.capacity.encode_abi(
            "publishOffer", args=[node["node_id"], (class_id << 64) | start, amount, price]
        )
        what = f"offered {amount} GPU-h of node {node['node_id']} at {price / USD:.2f}"
        return self._relay(operator, data, None, what)

    def _relay(
        self, user: LocalAccount, data: str, signing: actions.Signing | None, what: str
    ) -> str:
        accepted = actions.forward(self.api, self.deployment, user, "CapacityToken", data, signing)
        action = self.api.follow(accepted["action_id"])
        if action["status"] != "confirmed":
            return (
                f"{what[:20]}…: action {action['id']} {action['status']} {action.get('error_code')}"
            )
        return f"{user.address[:10]}… {what} (block {action.get('block_number')})"

    # -- pools, the wallet's own transactions ---------------------------------------

    def _pool_people(self) -> list[int]:
        return list(self.world["investors"]) + list(self.world["users"])

    def deposit(self) -> str:
        raising = [p for p in self.pools if p.functions.roundStatus().call() == FUNDING]
        if not raising:
            return "deposit: no pool is raising"
        pool = self.rng.choice(raising)
        who = self.wallet(self.rng.choice(self._pool_people()))
        target = pool.functions.terms().call()[3]
        raised = pool.functions.totals().call()[0]
        left = target - raised
        assets = min(left, self.rng.choice((500, 1_000, 2_500)) * USD)
        if assets <= 0:
            return "deposit: round full"
        actions.send_call(self.w3, who, self.stablecoin.functions.approve(pool.address, assets))
        actions.send_call(self.w3, who, pool.functions.deposit(assets, who.address))
        return f"{who.address[:10]}… deposited {assets / USD:,.0f} tUSD in pool {pool.address}"

    def stake(self) -> str:
        who = self.wallet(self.rng.choice(self._pool_people()))
        for pool in self.rng.sample(self.pools, len(self.pools)):
            shares = pool.functions.balanceOf(who.address).call()
            if shares and pool.functions.roundStatus().call() == SUCCEEDED:
                amount = max(1, shares // 2)
                actions.send_call(self.w3, who, pool.functions.stake(amount))
                return f"{who.address[:10]}… staked {amount / SHARE:,.0f} shares in {pool.address}"
        return f"stake: {who.address[:10]}… holds no unstaked shares of a funded pool"

    def claim(self) -> str:
        who = self.wallet(self.rng.choice(self._pool_people()))
        for pool in self.pools:
            claimable = pool.functions.stakeOf(who.address).call()[5]
            if claimable:
                actions.send_call(self.w3, who, pool.functions.claim(who.address))
                return (
                    f"{who.address[:10]}… claimed {claimable / USD:,.2f} tUSD from {pool.address}"
                )
        return (
            f"claim: nothing to claim yet for {who.address[:10]}… (revenue arrives at settlement)"
        )


class _Stop(Exception):
    pass


def main(
    api: Annotated[str, typer.Option(help="API base URL")],
    world: Annotated[Path, typer.Option(help="world.json written by scripts/seed.py")],
    interval: Annotated[float, typer.Option(help="seconds between two actions")] = 4.0,
    seed: Annotated[int, typer.Option(help="seed of the users' choices")] = 0,
    steps: Annotated[int, typer.Option(help="stop after N actions (0: until SIGTERM)")] = 0,
    orders: Annotated[
        Path | None, typer.Option(help="where the traders remember their market orders (JSON)")
    ] = None,
) -> None:
    """Users acting on the demo world until SIGTERM."""
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    w3 = Web3(Web3.HTTPProvider(os.environ.get("GPUCAP_RPC_URL", "http://127.0.0.1:8545")))
    deployment = Deployment.load(
        os.environ.get("GPUCAP_MANIFEST_PATH", "deployments/development.json")
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    activity = Activity(actions.Api(api), w3, deployment, read_world(world), seed, orders)
    done = 0
    try:
        while steps <= 0 or done < steps:
            try:
                activity.step()
            except (OSError, httpx.HTTPError, Web3Exception) as exc:  # busy or restarting: go on
                log.warning("step failed: %s", exc)
            done += 1
            time.sleep(interval)
    except _Stop:
        log.info("stopped after %d actions", done)


if __name__ == "__main__":
    typer.run(main)
