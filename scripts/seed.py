"""Seed the demo world on a freshly deployed system (what `make demo` runs after deploy.py).

    brownie run scripts/seed.py --network <network>

The world (devnet/world.py: $GPUCAP_WORLD_NODES nodes, default 1,000, seed
$GPUCAP_WORLD_SEED) is ~12 operators with registered, bonded nodes over the
standard GPU classes, offers of each node's capacity for the next delivery
windows, RevenuePools for some nodes (most funded, drawn and staked; some still
raising) and a few users who bought and redeemed capacity.

Thousands of transactions: they are signed here and sent in JSON-RPC batches,
one phase at a time (a phase only holds transactions that do not depend on
another sender's in the same phase), and their receipts are awaited in bulk
(gpucap/bulk.py). Progress goes to stdout as ``@@progress <phase> <done> <total>``
lines, which `make demo` turns into a progress bar. The result, with the chain's
node ids and pool addresses, is written to $GPUCAP_WORLD_PATH (world.json).

Then, with $GPUCAP_TIMELOCK_DELAY_SECONDS set (`make demo` sets it), every admin power
moves to a GpucapTimelock with that delay, the pools' too (scripts/deploy.py's
``hand_over_calls``), the manifest is rewritten with the timelock, and one change is
scheduled through it so the demo shows one waiting for its time of effect.

Uses anvil's development keys: it refuses a chain whose id is not anvil's.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brownie import Contract, GpucapTimelock, chain, network
from eth_account import Account
from web3 import Web3
from web3.utils.address import get_create_address

from backend.risk.formulas import MONTH_SECONDS
from devnet.world import USAGE_PAYER, USD, PlannedPool, WorldPlan, plan_world, write_world
from gpucap import devchain
from gpucap.bulk import BulkSender, Calldata, MinedTx, PlannedTx, event_topic
from gpucap.deployment import Deployment
from scripts.deploy import (
    PoolTerms,
    hand_over_calls,
    load_system,
    node_pool_args,
    node_pool_bindings,
    write_manifest,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_UINT = 2**256 - 1
REGISTRY = "NodeRegistry"
CAPACITY = "CapacityToken"
STABLECOIN = "TestStablecoin"
SETTLEMENT = "EpochSettlement"
HUB = "OracleHub"
SHARE_PRICE = PoolTerms(target_assets=1).share_price
# Windows starting sooner than this are not offered: the offer would land too late.
OFFER_LEAD_SECONDS = 300

# Gas limits per call (generous: each is ~2x what it takes; gpucap/bulk.py does not estimate).
GAS = {
    "drip": 120_000,
    "configureFaucet": 80_000,
    "approve": 80_000,
    "registerNode": 400_000,
    "depositBond": 200_000,
    "publishOffer": 400_000,
    "deployPool": 8_000_000,
    "binding": 200_000,
    "deposit": 300_000,
    "buy": 350_000,
    "drawRaise": 250_000,
    "stake": 350_000,
    "redeem": 450_000,
    # A terms change writes a log entry (two fresh slots, the node's tail, the link); the
    # payer's consent, if it falls in a later epoch than the terms, writes one too.
    "setUsageTerms": 150_000,
    "approveUsage": 150_000,
    "deployTimelock": 6_000_000,
    "schedule": 200_000,
}


@dataclass(frozen=True)
class Offer:
    offer_id: int
    node_id: int
    token_id: int
    amount: int


def _progress(phase: str):
    def report(done: int, total: int) -> None:
        print(f"@@progress {phase} {done} {total}", flush=True)

    return report


def _manifest_path() -> Path:
    return Path(
        os.environ.get("GPUCAP_MANIFEST")
        or REPO_ROOT / "deployments" / f"{network.show_active()}.json"
    )


def _rpc_url() -> str:
    return os.environ.get("GPUCAP_RPC_URL") or network.web3.provider.endpoint_uri


def _terms(pool: PlannedPool, epoch_seconds: int) -> PoolTerms:
    """The round and its debt in real time: a 48-month tenor is 48 x 30 days of the
    hub's epochs (86,400 30-s epochs a month), at the plan's yearly rate."""
    return PoolTerms(
        target_assets=pool.target_assets,
        tenor_epochs=pool.tenor_months * MONTH_SECONDS // epoch_seconds,
        rate_bps=pool.rate_bps,
    )


class Seeder:
    def __init__(self, plan: WorldPlan, deployment: Deployment, manifest: dict[str, Any]) -> None:
        self.plan = plan
        # Our own provider, for JSON-RPC batches.
        self.w3 = Web3(Web3.HTTPProvider(_rpc_url(), request_kwargs={"timeout": 60}))
        self.deployment = deployment
        self.c = {name: deployment.contract(self.w3, name) for name in deployment.contracts}
        self.encode = {name: Calldata(ref.abi) for name, ref in deployment.contracts.items()}
        self.system = load_system(manifest)  # brownie handles, for deploy.py's pool helpers
        artifact = json.loads((REPO_ROOT / "build" / "contracts" / "RevenuePool.json").read_text())
        self.pool_factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        self.encode_pool = Calldata(artifact["abi"])
        abis = [ref.abi for ref in deployment.contracts.values()] + [artifact["abi"]]
        self.sender = BulkSender(self.w3, abis=abis)
        self._accounts: dict[int, Any] = {}

    def account(self, index: int) -> Any:
        if index not in self._accounts:
            self._accounts[index] = Account.from_key(devchain.dev_private_key(index))
        return self._accounts[index]

    def call(self, who: Any, contract: str, function: str, *args: Any) -> PlannedTx:
        """A call of a manifest contract (ABI-encoded here)."""
        data = self.encode[contract](function, *args)
        return PlannedTx(
            f"{function}{args[:2]}", who, self.c[contract].address, data, GAS[function]
        )

    def pool_call(self, who: Any, pool: str, function: str, *args: Any) -> PlannedTx:
        data = self.encode_pool(function, *args)
        return PlannedTx(f"{function} on pool {pool}", who, pool, data, GAS[function])

    def run(self, phase: str, txs: list[PlannedTx]) -> list[MinedTx]:
        started = time.monotonic()
        mined = self.sender.send(txs, _progress(phase)) if txs else []
        print(f"{phase}: {len(txs)} transactions in {time.monotonic() - started:.1f}s", flush=True)
        return mined

    def seed(self) -> tuple[list[int], dict[int, str]]:
        """Five phases; returns the node ids (in plan order) and pool addresses (by node index)."""
        now = self.w3.eth.get_block("latest")["timestamp"]
        self._fund()
        node_ids = self._register(now)
        offers, pools = self._bond_offer_and_raise(node_ids, now)
        bought = self._deposit_and_buy(offers, pools)
        self._draw_stake_and_redeem(node_ids, pools, bought)
        return node_ids, pools

    def _fund(self) -> None:
        """Stablecoin for everyone from the faucet (opened wide, then closed), and approvals."""
        plan, admin, coin = self.plan, self.account(0), self.c[STABLECOIN]
        per_investor = [
            sum(
                d
                for p in plan.pools
                for i, d in zip(p.investors, p.deposits, strict=True)
                if i == inv
            )
            for inv in plan.investors
        ]
        funding = max([plan.operator_funding(op) for op in plan.operators] + per_investor)
        funding = max(funding, 50_000 * USD)
        drip = coin.functions.dripAmount().call()
        cooldown = coin.functions.cooldownSeconds().call()
        everyone = sorted({*plan.operators, *plan.investors, *plan.users, USAGE_PAYER})
        txs = [self.call(admin, STABLECOIN, "configureFaucet", funding, 1)]  # one drip each
        txs += [self.call(admin, STABLECOIN, "drip", self.account(i).address) for i in everyone]
        txs.append(self.call(admin, STABLECOIN, "configureFaucet", drip, cooldown))
        registry, capacity = self.c[REGISTRY].address, self.c[CAPACITY].address
        txs += [
            self.call(self.account(op), STABLECOIN, "approve", registry, MAX_UINT)
            for op in plan.operators
        ]
        txs += [
            self.call(self.account(u), STABLECOIN, "approve", capacity, MAX_UINT)
            for u in plan.users
        ]
        settlement = self.c[SETTLEMENT].address
        payer = self.account(USAGE_PAYER)
        txs.append(self.call(payer, STABLECOIN, "approve", settlement, MAX_UINT))
        self.run("funding", txs)

    def _register(self, now: int) -> list[int]:
        classes = self.deployment.gpu_classes
        txs = [
            self.call(
                self.account(n.operator),
                REGISTRY,
                "registerNode",
                classes[n.class_name],
                n.gpu_count,
                n.region.encode().ljust(32, b"\0"),
                n.acquisition_cost,
                now - n.age_days * 86_400,
                n.node_key,
            )
            for n in self.plan.nodes
        ]
        registered = event_topic(self.c[REGISTRY].abi, "NodeRegistered")
        registry = self.c[REGISTRY].address
        # NodeRegistered(nodeId indexed, operator indexed, classId indexed, …)
        return [m.topics(registry, registered)[0][0] for m in self.run("nodes", txs)]

    def _bond_offer_and_raise(
        self, node_ids: list[int], now: int
    ) -> tuple[list[Any], dict[int, str]]:
        """Bonds and offers (operators); pools deployed and bound (admin)."""
        classes = self.deployment.gpu_classes
        window = self.c[CAPACITY].functions.windowSeconds().call()
        first = -(-(now + OFFER_LEAD_SECONDS) // window) * window
        starts = [first + k * window for k in range(self.plan.offer_windows)]
        txs = []
        amounts = []  # offered per transaction (0: not an offer)
        for n in self.plan.nodes:
            operator, node_id = self.account(n.operator), node_ids[n.index]
            txs.append(self.call(operator, REGISTRY, "depositBond", node_id, n.bond))
            amount = n.offer_amount(window)
            amounts.append(0)
            for start in starts if amount else []:
                amounts.append(amount)
                token_id = (classes[n.class_name] << 64) | start
                txs.append(
                    self.call(
                        operator,
                        CAPACITY,
                        "publishOffer",
                        node_id,
                        token_id,
                        amount,
                        n.price_per_gpu_hour,
                    )
                )
        pool_txs, pools = self._pools(node_ids, now)
        mined = self.run("offers and pools", txs + pool_txs)
        published = event_topic(self.c[CAPACITY].abi, "OfferPublished")
        capacity = self.c[CAPACITY].address
        # OfferPublished(offerId indexed, nodeId indexed, tokenId indexed, …)
        offers = [
            Offer(offer_id, node_id, token_id, amount)
            for m, amount in zip(mined[: len(txs)], amounts, strict=True)
            for offer_id, node_id, token_id in m.topics(capacity, published)
        ]
        return offers, pools

    def _pools(self, node_ids: list[int], now: int) -> tuple[list[PlannedTx], dict[int, str]]:
        """Each pool's deployment then its bindings, all from the admin, in nonce order (so
        each address is known before it is mined), built by scripts/deploy.py's helpers."""
        admin = self.account(0)
        nonce = self.sender.next_nonce(admin.address)
        epoch_seconds = self.c[HUB].functions.epochLengthSeconds().call()
        txs: list[PlannedTx] = []
        addresses: dict[int, str] = {}
        for pool in self.plan.pools:
            node_id = node_ids[pool.node_index]
            operator = self.account(self.plan.nodes[pool.node_index].operator).address
            args = node_pool_args(
                self.system,
                node_id=node_id,
                operator=operator,
                admin=admin.address,
                terms=_terms(pool, epoch_seconds),
                now=now,
            )
            data = self.pool_factory.constructor(*args).data_in_transaction
            txs.append(
                PlannedTx(f"deploy pool of node {node_id}", admin, None, data, GAS["deployPool"])
            )
            address = get_create_address(admin.address, nonce)
            for call in node_pool_bindings(self.system, address, node_id):
                label = f"{call.function} for the pool of node {node_id}"
                txs.append(PlannedTx(label, admin, call.to, call.data, GAS["binding"]))
            nonce = self.sender.next_nonce(admin.address) + len(txs)
            addresses[pool.node_index] = address
        return txs, addresses

    def _deposit_and_buy(
        self, offers: list[Any], pools: dict[int, str]
    ) -> list[tuple[int, Any, int]]:
        """Investors fund the rounds; users buy a little of a few offers."""
        txs = []
        for pool in self.plan.pools:
            address = pools[pool.node_index]
            for investor, assets in zip(pool.investors, pool.deposits, strict=True):
                if assets:
                    who = self.account(investor)
                    txs.append(self.call(who, STABLECOIN, "approve", address, assets))
                    txs.append(self.pool_call(who, address, "deposit", assets, who.address))
        rng = random.Random(f"gpucap-demo-buyers:{self.plan.seed}")
        bought: list[tuple[int, Any, int]] = []
        left = {offer.offer_id: offer.amount for offer in offers}  # users share offers
        for user in self.plan.users:
            for offer in rng.sample(offers, min(4, len(offers))):
                amount = min(rng.randint(1, 3), left[offer.offer_id])
                if amount == 0:
                    continue
                left[offer.offer_id] -= amount
                txs.append(self.call(self.account(user), CAPACITY, "buy", offer.offer_id, amount))
                bought.append((user, offer, amount))
        self.run("investors and buyers", txs)
        return bought

    def _draw_stake_and_redeem(
        self, node_ids: list[int], pools: dict[int, str], bought: list[tuple[int, Any, int]]
    ) -> None:
        txs = []
        for pool in self.plan.pools:
            if not pool.funded:
                continue
            address = pools[pool.node_index]
            operator = self.account(self.plan.nodes[pool.node_index].operator)
            txs.append(self.pool_call(operator, address, "drawRaise"))
            # The pool's node is rented whole: EpochSettlement bills the customer each epoch
            # for the GPU-hours the oracles attest, and that revenue services the debt. The
            # customer agrees to the price on-chain from its own account (approveUsage):
            # without that consent its usage is not billed.
            node = self.plan.nodes[pool.node_index]
            payer = self.account(USAGE_PAYER)
            node_id = node_ids[pool.node_index]
            txs.append(
                self.call(
                    self.account(0),
                    SETTLEMENT,
                    "setUsageTerms",
                    node_id,
                    payer.address,
                    node.price_per_gpu_hour,
                )
            )
            txs.append(
                self.call(payer, SETTLEMENT, "approveUsage", node_id, node.price_per_gpu_hour)
            )
            for investor, assets in zip(pool.investors, pool.deposits, strict=True):
                shares = assets * 10**18 // SHARE_PRICE * pool.stake_share_bps // 10_000
                if shares:
                    txs.append(self.pool_call(self.account(investor), address, "stake", shares))
        for user, offer, amount in bought[::2]:  # half of the purchases become reservations
            txs.append(
                self.call(
                    self.account(user),
                    CAPACITY,
                    "redeem",
                    offer.token_id,
                    amount,
                    offer.node_id,
                )
            )
        self.run("stakes and reservations", txs)

    def hand_over(self, delay_seconds: int, pools: dict[int, str], node_ids: list[int]) -> str:
        """Deploys a GpucapTimelock (the deployer proposes; anyone executes) and gives it
        every admin power, the seeded pools' included: one phase of the deployer's calls in
        nonce order (scripts/deploy.py's hand_over_calls). Then schedules, through it, the
        usage terms of the first node whose pool is still raising: a change the dashboard
        lists as pending until its time of effect, that anyone may then execute (the
        activity process does). Returns the timelock's address."""
        admin = self.account(0)
        artifact = json.loads((REPO_ROOT / "build/contracts/GpucapTimelock.json").read_text())
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        data = factory.constructor(delay_seconds, [admin.address]).data_in_transaction
        timelock = get_create_address(admin.address, self.sender.next_nonce(admin.address))
        txs = [PlannedTx("deploy the timelock", admin, None, data, GAS["deployTimelock"])]
        for call in hand_over_calls(
            self.system, admin.address, timelock, pools=sorted(pools.values())
        ):
            label = f"{call.function} on {call.to}"
            txs.append(PlannedTx(label, admin, call.to, call.data, GAS["binding"]))
        raising = [p for p in self.plan.pools if not p.funded]
        if raising:
            node = self.plan.nodes[raising[0].node_index]
            terms = self.encode[SETTLEMENT](
                "setUsageTerms",
                node_ids[node.index],
                self.account(USAGE_PAYER).address,
                node.price_per_gpu_hour,
            )
            schedule = Calldata(artifact["abi"])(
                "schedule",
                self.c[SETTLEMENT].address,
                0,
                bytes.fromhex(terms[2:]),
                b"\0" * 32,
                b"gpucap demo: usage terms".ljust(32, b"\0"),
                delay_seconds,
            )
            label = "schedule usage terms"
            txs.append(PlannedTx(label, admin, timelock, schedule, GAS["schedule"]))
        self.run("hand-over to the timelock", txs)
        self.system.timelock = Contract.from_abi("GpucapTimelock", timelock, GpucapTimelock.abi)
        self.system.guardian = admin.address
        return timelock


def main() -> None:
    if chain.id != devchain.CHAIN_ID:
        raise SystemExit(f"seed.py uses development keys; refusing chain id {chain.id}")
    nodes = int(os.environ.get("GPUCAP_WORLD_NODES", "1000"))
    seed = int(os.environ.get("GPUCAP_WORLD_SEED", "0"))
    manifest_path = _manifest_path()
    plan = plan_world(nodes, seed)
    started = time.monotonic()
    seeder = Seeder(plan, Deployment.load(manifest_path), json.loads(manifest_path.read_text()))
    node_ids, pools = seeder.seed()
    world_path = Path(os.environ.get("GPUCAP_WORLD_PATH") or manifest_path.with_name("world.json"))
    write_world(world_path, plan, node_ids, pools)
    delay = os.environ.get("GPUCAP_TIMELOCK_DELAY_SECONDS")
    if delay:
        timelock = seeder.hand_over(int(delay), pools, node_ids)
        write_manifest(seeder.system, manifest_path)
        print(f"admin powers handed to the timelock {timelock} ({delay} s delay)", flush=True)
    print(
        f"seeded {len(node_ids)} nodes of {len(plan.operators)} operators, {len(pools)} pools "
        f"in {time.monotonic() - started:.1f}s; world: {world_path}",
        flush=True,
    )
    sys.stdout.flush()
