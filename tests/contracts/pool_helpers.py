"""Deployment and time helpers shared by the RevenuePool test groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brownie import ZERO_ADDRESS, RevenuePool, web3

from tests.contracts.node_helpers import USD
from tests.support.stateful import mine_at_least

EPOCH = 3_600  # long enough that wall-clock seconds inside one test never cross a boundary
ONE_SHARE = 10**18
PRICE = 1 * USD  # stablecoin units per whole share
TARGET = 100_000 * USD
FUNDING_SECONDS = 2 * EPOCH
TENOR = 12
RATE_BPS = 1_200
COOLDOWN = 1
SCALE = 10**36
YEAR = 365 * 24 * 3600

DISTRIBUTOR_ROLE = bytes(web3.keccak(text="DISTRIBUTOR_ROLE"))
SLASHER_ROLE = bytes(web3.keccak(text="SLASHER_ROLE"))


def latest_timestamp() -> int:
    return web3.eth.get_block("latest")["timestamp"]


@dataclass(frozen=True)
class Gate:
    """A pool's risk gate (the deployed EpochSettlement) and the registered node it finances:
    every pool is capped by `settlement.raiseCap(node_id)` (conftest's `pool_gate`)."""

    settlement: Any
    node_id: int


@dataclass(frozen=True)
class PoolParams:
    target: int = TARGET
    price: int = PRICE
    funding_seconds: int = FUNDING_SECONDS
    epoch: int = EPOCH
    cooldown: int = COOLDOWN
    tenor: int = TENOR
    rate_bps: int = RATE_BPS
    forwarder: Any = ZERO_ADDRESS

    def config(self, stablecoin: Any, operator: Any, admin: Any, now: int, gate: Gate) -> tuple:
        """The PoolConfig tuple; genesis is `now`, so the pool starts in epoch 1."""
        return (
            f"gpucap node {gate.node_id} share",
            f"gN{gate.node_id}",
            str(stablecoin),
            str(operator),
            str(admin),
            str(self.forwarder),
            gate.node_id,
            self.target,
            now + self.funding_seconds,
            self.price,
            now,
            self.epoch,
            self.cooldown,
            self.tenor,
            self.rate_bps,
            str(gate.settlement),
        )


def deploy_pool(
    stablecoin, operator, admin, params: PoolParams | None = None, *, gate: Gate, roles=()
):
    """Deploys a pool with genesis at the latest block; grants `roles` as (role, account)."""
    params = params or PoolParams()
    pool = RevenuePool.deploy(
        params.config(stablecoin, operator, admin, latest_timestamp(), gate), {"from": admin}
    )
    for role, account in roles:
        pool.grantRole(role, account, {"from": admin})
    return pool


def epoch_start(pool, epoch: int) -> int:
    genesis, length, _ = pool.epochSchedule()
    return genesis + (epoch - 1) * length


def to_epoch(pool, epoch: int) -> None:
    """Mines a block one second into `epoch` (no-op if the chain is already in it)."""
    if pool.currentEpoch() >= epoch:
        assert pool.currentEpoch() == epoch, "time only moves forward"
        return
    mine_at_least(epoch_start(pool, epoch) + 1)
    assert pool.currentEpoch() == epoch


def fill_round(pool, stablecoin, fund, investors, amounts):
    """Each investor deposits its amount (funded and approved first)."""
    for who, amount in zip(investors, amounts, strict=True):
        fund(who, amount, pool)
        pool.deposit(amount, who, {"from": who})
