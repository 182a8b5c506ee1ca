"""A small gpucap world on the module's live deployment, made through the contracts as
operators, buyers and stakers would: three nodes in two regions, capacity offered, sold and
redeemed over two delivery windows, two drawn revenue pools with stakers, and epochs
attested by the oracle quorum and settled (usage paid by a renter, debt serviced)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brownie import RevenuePool, chain, web3

from backend.risk.formulas import MONTH_SECONDS
from gpucap.attestation import Cumulative, build_commitment
from oracle.proofs import proofs_document, write_proofs
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, end_epoch, random_leaves, signatures

USD = 10**6
H100 = "H100-SXM-80GB"
A100 = "A100-SXM-80GB"
DISTRIBUTOR_ROLE = bytes(web3.keccak(text="DISTRIBUTOR_ROLE"))


@dataclass
class World:
    system: Any
    admin: Any
    # Where the oracle publishes epoch proofs for a backend that reads them (its settlement
    # keeper and metrics ingestion); None: no such backend, the world settles itself.
    proofs_dir: Path | None
    nodes: dict[str, int] = field(default_factory=dict)  # label -> node id
    pools: dict[str, Any] = field(default_factory=dict)  # label -> RevenuePool
    epochs: list[int] = field(default_factory=list)
    last_block: int = 0
    # Each node's cumulative counters, chained over its leaves as the oracles do (settlement
    # bills a range from their difference).
    counters: dict[int, Cumulative] = field(default_factory=dict)


def _region(name: str) -> bytes:
    return name.encode().ljust(32, b"\0")


def build_world(
    system: Any,
    admin: Any,
    operator: Any,
    operator2: Any,
    buyer: Any,
    staker: Any,
    proofs_dir: Path | None = None,
) -> World:
    world = World(system, admin, proofs_dir)
    coin, registry, capacity, hub = (
        system.stablecoin,
        system.registry,
        system.capacity,
        system.oracle_hub,
    )
    coin.configureFaucet(10**7 * USD, 1, {"from": admin})
    for who in (operator, operator2, buyer, staker):
        coin.drip(who, {"from": who})
    coin.drip(admin, {"from": admin})
    coin.transfer(staker, 4 * 10**6 * USD, {"from": admin})

    acquired = chain[-1].timestamp - 90 * 86_400
    specs = [
        ("h100-eu", operator, H100, 8, "eu-west", 240_000),
        ("h100-us", operator2, H100, 8, "us-east", 240_000),
        ("a100-us", operator, A100, 8, "us-east", 120_000),
    ]
    for label, who, cls, gpus, region, cost in specs:
        tx = registry.registerNode(
            system.class_ids[cls],
            gpus,
            _region(region),
            cost * USD,
            acquired,
            "0x" + f"{len(world.nodes) + 1:02x}" * 20,
            {"from": who},
        )
        world.nodes[label] = tx.events["NodeRegistered"]["nodeId"]
        coin.approve(registry, 2**256 - 1, {"from": who})
        registry.depositBond(world.nodes[label], 9_000 * USD, {"from": who})

    # Two delivery windows; the buyer takes some of each offer and redeems part of one.
    window = capacity.windowSeconds()
    first = (chain[-1].timestamp // window + 1) * window
    offers = [
        ("h100-eu", operator, H100, first, 100, 2_000_000),
        ("h100-us", operator2, H100, first, 100, 2_200_000),
        ("a100-us", operator, A100, first, 100, 1_100_000),
        ("h100-eu", operator, H100, first + window, 100, 1_900_000),
    ]
    coin.approve(capacity, 2**256 - 1, {"from": buyer})
    for (label, who, cls, start, amount, price), bought in zip(
        offers, (20, 10, 15, 10), strict=True
    ):
        token = capacity.tokenIdFor(system.class_ids[cls], start)
        offer = capacity.publishOffer(world.nodes[label], token, amount, price, {"from": who})
        capacity.buy(offer.events["OfferPublished"]["offerId"], bought, {"from": buyer})
    capacity.redeem(
        capacity.tokenIdFor(system.class_ids[H100], first),
        5,
        world.nodes["h100-eu"],
        {"from": buyer},
    )

    # Revenue pools: a heavily and a lightly financed H100, both drawn and fully staked.
    for label, raise_usd in (("h100-eu", 170_000), ("h100-us", 60_000)):
        node_id = world.nodes[label]
        who = operator if label == "h100-eu" else operator2
        pool = RevenuePool.deploy(
            (
                f"{label} pool",
                f"gp{node_id}",
                str(coin),
                str(who),
                str(admin),
                "0x" + "00" * 20,
                node_id,
                raise_usd * USD,
                chain[-1].timestamp + 86_400,
                USD,
                hub.genesisTimestamp(),
                hub.epochLengthSeconds(),
                1,
                36 * MONTH_SECONDS // hub.epochLengthSeconds(),  # 36 months, in epochs
                1_100,
                str(system.settlement),  # risk gate: the raise is capped at 80% of the value
            ),
            {"from": admin},
        )
        coin.approve(pool, 2**256 - 1, {"from": staker})
        pool.deposit(raise_usd * USD, staker, {"from": staker})
        pool.drawRaise({"from": who})
        pool.stake(pool.balanceOf(staker), {"from": staker})
        pool.grantRole(DISTRIBUTOR_ROLE, system.settlement, {"from": admin})
        system.settlement.setPool(node_id, pool, {"from": admin})
        world.pools[label] = pool

    # The buyer rents every node's delivered hours at 2.00 tUSD per GPU-hour.
    coin.approve(system.settlement, 2**256 - 1, {"from": buyer})
    for node_id in world.nodes.values():
        system.settlement.setUsageTerms(node_id, buyer, 2 * USD, {"from": admin})
        system.settlement.approveUsage(node_id, 2 * USD, {"from": buyer})

    for _ in range(6):
        attest_next(world)
    return world


def attest_next(world: World) -> int:
    """End the current oracle epoch, attest it for every node (2 of 3 oracles), publish its
    proofs as the oracle does, and settle it: by the backend's keeper when it reads the
    proofs, else here (as the keeper would)."""
    from brownie import accounts

    hub = world.system.oracle_hub
    epoch = end_epoch(hub)
    leaves = random_leaves(epoch, sorted(world.nodes.values()), seed=epoch, bases=world.counters)
    c = build_commitment(epoch, leaves, hub.configVersion())
    tx = hub.attest(
        c.report.as_tuple(), signatures(hub, c.report, ORACLE_KEYS[:2]), {"from": accounts[6]}
    )
    if world.proofs_dir is not None:
        document = proofs_document(
            c,
            chain_id=chain.id,
            oracle_hub=hub.address,
            signers=[address_of(k) for k in ORACLE_KEYS[:2]],
            attestation={"txHash": tx.txid, "blockNumber": tx.block_number, "gasUsed": tx.gas_used},
        )
        write_proofs(world.proofs_dir, epoch, document)
    else:
        items = [(leaf.values(), c.proof(leaf.node_id)) for leaf in c.leaves]
        tx = world.system.settlement.settle(epoch, items, {"from": world.admin})
    world.epochs.append(epoch)
    world.last_block = tx.block_number
    return epoch
