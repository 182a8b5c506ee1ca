"""RevenuePool under attack: payout sniping, donations, moving shares while cooling down,
a re-entrant stablecoin; and the exact gas of each operation (run with -s to print it)."""

from __future__ import annotations

import brownie
import pytest
from brownie import ZERO_ADDRESS, ReentrantToken

from tests.contracts.node_helpers import USD
from tests.contracts.pool_helpers import (
    DISTRIBUTOR_ROLE,
    ONE_SHARE,
    SLASHER_ROLE,
    deploy_pool,
    fill_round,
    to_epoch,
)
from tests.support.errors import err

SHARES = lambda usd: usd * ONE_SHARE  # noqa: E731

# Ceilings ~5% above today's exact figures: a regression fails loudly.
CEILINGS = {
    # Every deposit asks the pool's immutable risk gate (EpochSettlement.raiseCap: the node,
    # its GPU class and the depreciation curve): ~25k gas of the figures below.
    "deposit (first)": 165_000,
    "deposit (new investor)": 108_000,
    "deposit (repeat)": 90_000,
    "stake (first)": 285_000,
    "stake (new staker, same cohort)": 145_000,
    "stake (repeat, same cohort)": 90_000,
    "distribute (first, activates 1 cohort)": 205_000,
    "distribute (activates 1 cohort)": 120_000,
    "distribute (no activation)": 76_000,
    "claim (first)": 173_000,
    "claim": 80_000,
    "requestUnstake (first)": 106_000,
    "requestUnstake": 150_000,
    "withdraw": 78_000,
    "bookLoss": 94_000,
}


@pytest.fixture(scope="module")
def distributor(relayer):
    return relayer


@pytest.fixture(scope="module")
def live_pool(
    stablecoin, operator, admin, distributor, operator2, fund, buyer, staker, stranger, pool_gate
):
    pool = deploy_pool(
        stablecoin,
        operator,
        admin,
        gate=pool_gate,
        roles=((DISTRIBUTOR_ROLE, distributor), (SLASHER_ROLE, operator2)),
    )
    fund(distributor, 1_000_000 * USD, pool)
    fill_round(
        pool,
        stablecoin,
        fund,
        [buyer, staker, stranger],
        [50_000 * USD, 30_000 * USD, 20_000 * USD],
    )
    return pool


def claimable(pool, who):
    return pool.stakeOf(who).dict()["claimableAssets"]


def test_staking_just_before_a_payout_earns_nothing_from_it(
    live_pool, buyer, stranger, distributor
):
    pool = live_pool
    pool.stake(SHARES(10_000), {"from": buyer})  # epoch 1: earns from epoch 2 on
    to_epoch(pool, 2)
    pool.stake(SHARES(10_000), {"from": stranger})  # late in epoch 2, before its payout
    to_epoch(pool, 3)
    pool.stake(SHARES(1), {"from": stranger})  # and again right before the payout tx
    pool.distribute(2, 1_000 * USD, {"from": distributor})
    assert claimable(pool, buyer) == 1_000 * USD
    assert claimable(pool, stranger) == 0
    # The sniper cannot leave with anything either: unstaking stops earning at once.
    pool.requestUnstake(pool.stakeOf(stranger).dict()["pendingShares"], {"from": stranger})
    to_epoch(pool, 4)
    pool.distribute(3, 1_000 * USD, {"from": distributor})
    assert claimable(pool, stranger) == 0
    assert claimable(pool, buyer) == 2_000 * USD


def test_donations_change_no_accounting(live_pool, stablecoin, fund, buyer, staker, distributor):
    pool = live_pool
    pool.stake(SHARES(10_000), {"from": buyer})
    to_epoch(pool, 3)
    totals_before = pool.totals().dict()
    # Stablecoin and shares sent straight to the pool are nobody's: no index, no unit moves.
    fund(staker, 5_000 * USD)
    stablecoin.transfer(pool, 5_000 * USD, {"from": staker})
    pool.transfer(pool, SHARES(1_000), {"from": staker})
    assert pool.totals().dict() == totals_before
    pool.distribute(2, 300 * USD, {"from": distributor})
    assert claimable(pool, buyer) == 300 * USD
    assert claimable(pool, staker) == 0
    pool.claim(buyer, {"from": buyer})
    # What is left is the undrawn raise plus exactly the donation.
    assert stablecoin.balanceOf(pool) == 100_000 * USD + 5_000 * USD
    # A donated share does not inflate anyone's stake either.
    assert pool.stakeOf(buyer).dict()["pendingShares"] == 0
    assert pool.stakeOf(buyer).dict()["earningShares"] == SHARES(10_000)


def test_shares_cooling_down_cannot_move(live_pool, buyer, stranger, distributor):
    pool = live_pool
    pool.stake(SHARES(50_000), {"from": buyer})  # everything the buyer holds
    to_epoch(pool, 3)
    pool.distribute(2, 100 * USD, {"from": distributor})
    pool.requestUnstake(SHARES(50_000), {"from": buyer})
    # The cooling shares sit in the pool's custody: nothing to transfer, nothing to re-stake.
    with brownie.reverts(err("ERC20InsufficientBalance", buyer, 0, 1)):
        pool.transfer(stranger, 1, {"from": buyer})
    with brownie.reverts(err("ERC20InsufficientBalance", buyer, 0, 1)):
        pool.stake(1, {"from": buyer})
    with brownie.reverts(err("PoolCooldownActive", 5, 3)):
        pool.withdraw({"from": buyer})
    # Shares that moved freely to an accomplice start their own warm-up.
    pool.stake(SHARES(20_000), {"from": stranger})
    pool.distribute(2, 100 * USD, {"from": distributor})  # nobody earns now: carried forward
    assert claimable(pool, stranger) == 0 and claimable(pool, buyer) == 100 * USD
    assert pool.totals().dict()["undistributedAssets"] == 100 * USD


def test_reentrant_stablecoin_cannot_reenter(
    admin, operator, distributor, buyer, staker, stranger, pool_gate
):
    token = ReentrantToken.deploy({"from": admin})
    # The token itself holds the distributor role: the guard, not the role check, must stop it.
    pool = deploy_pool(
        token,
        operator,
        admin,
        gate=pool_gate,
        roles=((DISTRIBUTOR_ROLE, distributor), (DISTRIBUTOR_ROLE, token)),
    )
    for who in (buyer, staker, distributor):
        token.mint(who, 200_000 * USD, {"from": admin})
        token.approve(pool, 2**256 - 1, {"from": who})

    # Deposit: the pull calls back into deposit.
    token.arm(pool, pool.deposit.encode_input(USD, stranger), {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        pool.deposit(USD, buyer, {"from": buyer})
    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    pool.deposit(60_000 * USD, buyer, {"from": buyer})
    pool.deposit(40_000 * USD, staker, {"from": staker})
    pool.stake(SHARES(60_000), {"from": buyer})
    to_epoch(pool, 3)

    # Distribute: the pull calls back into distribute (a second credit for one payment).
    token.arm(pool, pool.distribute.encode_input(2, USD), {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        pool.distribute(2, 600 * USD, {"from": distributor})
    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    pool.distribute(2, 600 * USD, {"from": distributor})

    # Claim: the payout calls back into claim (a double payout) and into drawRaise.
    for call in (pool.claim.encode_input(buyer), pool.drawRaise.encode_input()):
        token.arm(pool, call, {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            pool.claim(buyer, {"from": buyer})
    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    assert pool.claim(buyer, {"from": buyer}).return_value == 600 * USD
    assert token.balanceOf(pool) == 100_000 * USD


def test_gas(
    live_pool, stablecoin, fund, buyer, staker, stranger, distributor, operator2, pool_gate
):
    """First = the pool's first use of each slot (cold, zero → non-zero); steady = the same
    operation once the pool is running (a new investor / staker, a later epoch)."""
    pool = live_pool
    gas = {}
    # deposit figures come from a fresh round (the live pool's round is already full).
    fresh = deploy_pool(stablecoin, buyer, buyer, gate=pool_gate)
    fund(staker, 2 * USD, fresh)
    fund(stranger, USD, fresh)
    gas["deposit (first)"] = fresh.deposit(USD, staker, {"from": staker}).gas_used
    gas["deposit (new investor)"] = fresh.deposit(USD, stranger, {"from": stranger}).gas_used
    gas["deposit (repeat)"] = fresh.deposit(USD, staker, {"from": staker}).gas_used
    gas["stake (first)"] = pool.stake(SHARES(1_000), {"from": buyer}).gas_used
    gas["stake (new staker, same cohort)"] = pool.stake(SHARES(1_000), {"from": staker}).gas_used
    gas["stake (repeat, same cohort)"] = pool.stake(SHARES(1_000), {"from": buyer}).gas_used
    to_epoch(pool, 3)
    tx = pool.distribute(2, 100 * USD, {"from": distributor})
    gas["distribute (first, activates 1 cohort)"] = tx.gas_used
    gas["claim (first)"] = pool.claim(buyer, {"from": buyer}).gas_used
    gas["requestUnstake (first)"] = pool.requestUnstake(SHARES(500), {"from": buyer}).gas_used
    gas["bookLoss"] = pool.bookLoss(10 * USD, stranger, {"from": operator2}).gas_used
    pool.stake(SHARES(1_000), {"from": stranger})  # a new cohort for epoch 4
    to_epoch(pool, 5)
    tx = pool.distribute(4, 100 * USD, {"from": distributor})
    gas["distribute (activates 1 cohort)"] = tx.gas_used
    gas["distribute (no activation)"] = pool.distribute(4, USD, {"from": distributor}).gas_used
    gas["claim"] = pool.claim(buyer, {"from": buyer}).gas_used
    gas["withdraw"] = pool.withdraw({"from": buyer}).gas_used
    gas["requestUnstake"] = pool.requestUnstake(SHARES(500), {"from": staker}).gas_used
    print("\nGAS " + ", ".join(f"{k}={v}" for k, v in gas.items()))
    for name, used in gas.items():
        assert used <= CEILINGS[name], (name, used)
