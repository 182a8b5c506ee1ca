"""RevenuePool unit tests: one group per external function, every revert and event."""

from __future__ import annotations

import brownie
import pytest
from brownie import ZERO_ADDRESS, RevenuePool

from tests.contracts.node_helpers import USD
from tests.contracts.pool_helpers import (
    COOLDOWN,
    DISTRIBUTOR_ROLE,
    EPOCH,
    ONE_SHARE,
    PRICE,
    RATE_BPS,
    SCALE,
    SLASHER_ROLE,
    TARGET,
    TENOR,
    YEAR,
    PoolParams,
    deploy_pool,
    fill_round,
    latest_timestamp,
    to_epoch,
)
from tests.support.errors import bytes_arg, err
from tests.support.stateful import mine_at_least

FUNDING, FAILED, SUCCEEDED = 0, 1, 2
SHARES = lambda usd: usd * ONE_SHARE  # noqa: E731  (1 USD buys one whole share)


@pytest.fixture(scope="module")
def distributor(relayer):
    return relayer


@pytest.fixture(scope="module")
def slasher(operator2):
    return operator2


@pytest.fixture(scope="module")
def new_pool(stablecoin, operator, admin, distributor, slasher, fund, pool_gate):
    """Factory: a pool in its funding round, the distributor funded and approved."""

    def _new():
        p = deploy_pool(
            stablecoin,
            operator,
            admin,
            gate=pool_gate,
            roles=((DISTRIBUTOR_ROLE, distributor), (SLASHER_ROLE, slasher)),
        )
        fund(distributor, 1_000_000 * USD, p)
        return p

    return _new


@pytest.fixture(scope="module")
def pool(new_pool):
    """A pool still in its funding round."""
    return new_pool()


@pytest.fixture(scope="module")
def investors(buyer, staker, stranger):
    return [buyer, staker, stranger]


@pytest.fixture(scope="module")
def live_pool(new_pool, stablecoin, fund, investors):
    """Another pool, its round filled: 50k / 30k / 20k USD of shares; still in epoch 1."""
    pool = new_pool()
    fill_round(pool, stablecoin, fund, investors, [50_000 * USD, 30_000 * USD, 20_000 * USD])
    return pool


def position(pool, who):
    return dict(pool.stakeOf(who).dict())


class TestConstructor:
    @pytest.mark.parametrize(
        "field,value,error",
        [
            (2, ZERO_ADDRESS, "PoolZeroAddress"),
            (3, ZERO_ADDRESS, "PoolZeroAddress"),
            (4, ZERO_ADDRESS, "PoolZeroAddress"),
            (7, 0, "PoolInvalidFunding"),
            (9, 0, "PoolInvalidFunding"),
            (11, 0, "PoolInvalidEpochSchedule"),
            (11, 366 * 24 * 3600, "PoolInvalidEpochSchedule"),
            (10, 0, "PoolInvalidEpochSchedule"),
            (12, 0, "PoolInvalidCooldown"),
            (13, 0, "PoolInvalidDebtTerms"),
            (14, 10_001, "PoolInvalidDebtTerms"),
            (15, ZERO_ADDRESS, "PoolZeroAddress"),  # no pool escapes the LTV cap
            (7, 2**128, "PoolInvalidFunding"),  # bounds every debt figure
        ],
    )
    def test_rejects_bad_config(self, stablecoin, operator, admin, pool_gate, field, value, error):
        config = list(
            PoolParams().config(stablecoin, operator, admin, latest_timestamp(), pool_gate)
        )
        config[field] = value
        args = {
            "PoolZeroAddress": (),
            "PoolInvalidFunding": (config[7], config[9], config[8]),
            "PoolInvalidEpochSchedule": (config[10], config[11]),
            "PoolInvalidCooldown": (config[12],),
            "PoolInvalidDebtTerms": (config[13], config[14]),
        }[error]
        with brownie.reverts(err(error, *args)):
            RevenuePool.deploy(tuple(config), {"from": admin})

    def test_deadline_in_the_past_is_rejected(self, stablecoin, operator, admin, pool_gate):
        config = list(
            PoolParams().config(stablecoin, operator, admin, latest_timestamp(), pool_gate)
        )
        config[8] = latest_timestamp() - 1
        with brownie.reverts(err("PoolInvalidFunding", config[7], config[9], config[8])):
            RevenuePool.deploy(tuple(config), {"from": admin})

    def test_terms_and_schedule(self, pool, stablecoin, operator, admin, pool_gate):
        _, _, node, target, price, deadline, tenor, rate = pool.terms()
        assert pool.terms()[:2] == (stablecoin.address, operator.address)
        assert (node, target, price, tenor, rate) == (
            pool_gate.node_id,
            TARGET,
            PRICE,
            TENOR,
            RATE_BPS,
        )
        genesis, length, cooldown = pool.epochSchedule()
        assert (length, cooldown, deadline - genesis) == (EPOCH, COOLDOWN, 2 * EPOCH)
        assert pool.currentEpoch() == 1 and pool.roundStatus() == FUNDING
        assert pool.decimals() == 18 and pool.hasRole(pool.DEFAULT_ADMIN_ROLE(), admin)
        assert pool.riskGate() == pool_gate.settlement  # immutable: no setter exists
        assert not any(f.get("name") == "setRiskGate" for f in pool.abi)


class TestDeposit:
    def test_mints_shares_at_the_price(self, pool, stablecoin, fund, buyer, staker):
        fund(buyer, 1_000 * USD, pool)
        tx = pool.deposit(1_000 * USD, staker, {"from": buyer})
        assert tx.return_value == SHARES(1_000) == pool.balanceOf(staker)
        assert dict(tx.events["Deposited"]) == {
            "caller": buyer,
            "receiver": staker,
            "assets": 1_000 * USD,
            "shares": SHARES(1_000),
        }
        assert stablecoin.balanceOf(pool) == 1_000 * USD
        assert pool.totals().dict()["raisedAssets"] == 1_000 * USD

    def test_reaching_the_target_succeeds_the_round(self, live_pool):
        assert live_pool.roundStatus() == SUCCEEDED
        assert live_pool.totalSupply() == SHARES(100_000)

    def test_reverts(self, pool, fund, buyer):
        fund(buyer, TARGET + 1, pool)
        with brownie.reverts(err("PoolZeroAmount")):
            pool.deposit(0, buyer, {"from": buyer})
        with brownie.reverts(err("PoolFundingCapExceeded", TARGET + 1, TARGET)):
            pool.deposit(TARGET + 1, buyer, {"from": buyer})
        with brownie.reverts(err("ERC20InvalidReceiver", ZERO_ADDRESS)):
            pool.deposit(1, ZERO_ADDRESS, {"from": buyer})

    def test_dust_deposit_that_buys_no_share_reverts(
        self, stablecoin, operator, admin, fund, buyer, pool_gate
    ):
        pricey = deploy_pool(stablecoin, operator, admin, PoolParams(price=10**19), gate=pool_gate)
        fund(buyer, 10, pricey)
        with brownie.reverts(err("PoolZeroAmount")):
            pricey.deposit(1, buyer, {"from": buyer})

    def test_closed_after_success_and_after_the_deadline(self, pool, live_pool, fund, buyer):
        fund(buyer, USD, live_pool)
        with brownie.reverts(err("PoolRoundNotOpen", SUCCEEDED)):
            live_pool.deposit(USD, buyer, {"from": buyer})

    def test_closed_after_a_failed_deadline(self, pool, fund, buyer):
        fund(buyer, 2 * USD, pool)
        pool.deposit(USD, buyer, {"from": buyer})
        mine_at_least(pool.terms()[5])
        assert pool.roundStatus() == FAILED
        with brownie.reverts(err("PoolRoundNotOpen", FAILED)):
            pool.deposit(USD, buyer, {"from": buyer})


class TestRefund:
    def test_failed_round_refunds_pro_rata_to_the_unit(
        self, stablecoin, operator, admin, fund, buyer, staker, stranger, pool_gate
    ):
        odd = deploy_pool(stablecoin, operator, admin, PoolParams(price=3), gate=pool_gate)
        fill_round(odd, stablecoin, fund, [buyer, staker], [10, 7])
        # Shares are transferable: the refund follows the shares, not the depositor.
        odd.transfer(stranger, odd.balanceOf(staker) // 3, {"from": staker})
        mine_at_least(odd.terms()[5])
        paid = 0
        for who in (stranger, buyer, staker):
            shares = odd.balanceOf(who)
            before = stablecoin.balanceOf(who)
            tx = odd.refund(shares, who, {"from": who})
            assert stablecoin.balanceOf(who) - before == tx.return_value
            assert dict(tx.events["Refunded"]) == {
                "owner": who,
                "receiver": who,
                "shares": shares,
                "assets": tx.return_value,
            }
            paid += tx.return_value
        assert paid == 17 and stablecoin.balanceOf(odd) == 0 and odd.totalSupply() == 0
        assert odd.totals().dict()["refundedAssets"] == 17

    def test_reverts(self, pool, fund, buyer, stranger):
        fund(buyer, USD, pool)
        pool.deposit(USD, buyer, {"from": buyer})
        with brownie.reverts(err("PoolRoundNotFailed", FUNDING)):
            pool.refund(1, buyer, {"from": buyer})
        mine_at_least(pool.terms()[5])
        with brownie.reverts(err("PoolZeroAmount")):
            pool.refund(0, buyer, {"from": buyer})
        with brownie.reverts(err("PoolZeroAddress")):
            pool.refund(1, ZERO_ADDRESS, {"from": buyer})
        with brownie.reverts(err("ERC20InsufficientBalance", stranger, 0, 1)):
            pool.refund(1, stranger, {"from": stranger})

    def test_no_refund_after_success(self, live_pool, buyer):
        with brownie.reverts(err("PoolRoundNotFailed", SUCCEEDED)):
            live_pool.refund(1, buyer, {"from": buyer})


class TestDrawRaise:
    def test_operator_draws_the_raise_once(self, live_pool, stablecoin, operator):
        before = stablecoin.balanceOf(operator)
        tx = live_pool.drawRaise({"from": operator})
        print(f"\nGAS drawRaise: {tx.gas_used}")
        assert tx.return_value == TARGET == stablecoin.balanceOf(operator) - before
        assert dict(tx.events["RaiseDrawn"]) == {
            "operator": operator,
            "assets": TARGET,
            "drawEpoch": 1,
        }
        assert tuple(live_pool.draw()) == (True, 1, TARGET)
        with brownie.reverts(err("PoolAlreadyDrawn")):
            live_pool.drawRaise({"from": operator})

    def test_reverts(self, pool, live_pool, stranger, operator):
        with brownie.reverts(err("PoolNotOperator", stranger)):
            live_pool.drawRaise({"from": stranger})

    def test_not_before_success(self, pool, operator):
        with brownie.reverts(err("PoolRoundNotSucceeded", FUNDING)):
            pool.drawRaise({"from": operator})


class TestDebtSchedule:
    def test_no_debt_before_the_draw(self, live_pool):
        assert tuple(live_pool.debtServiceDue(2)) == (0, 0)
        assert live_pool.debtOutstanding(2) == 0
        assert live_pool.debtServiceBetween(0, 100) == 0

    def test_service_between_is_the_sum_of_the_epochs(self, live_pool, operator):
        """The closed form (principal by difference, interest by a floor sum) == Σ per epoch,
        over every range that starts and ends before, inside and after the tenor."""
        live_pool.drawRaise({"from": operator})  # epoch 1: instalments in epochs 2..13
        due = [sum(live_pool.debtServiceDue(e)) for e in range(0, TENOR + 4)]
        for a in (0, 1, 2, 3, 7, 13, 14):
            for b in (0, 1, 2, 5, 12, 13, 15):
                assert live_pool.debtServiceBetween(a, b) == sum(due[a : b + 1]), (a, b)
        assert live_pool.debtServiceBetween(0, 2**64 - 1) == sum(due)  # no overflow, O(log)

    def test_straight_line_principal_plus_interest(self, live_pool, operator):
        live_pool.drawRaise({"from": operator})  # epoch 1
        per = TARGET // TENOR
        for n in range(1, TENOR + 1):
            outstanding = TARGET - per * (n - 1)
            principal = outstanding if n == TENOR else per
            interest = outstanding * RATE_BPS * EPOCH // (10_000 * YEAR)
            assert tuple(live_pool.debtServiceDue(1 + n)) == (principal, interest)
            assert live_pool.debtOutstanding(1 + n) == outstanding - principal
        assert tuple(live_pool.debtServiceDue(1)) == (0, 0)
        assert tuple(live_pool.debtServiceDue(2 + TENOR)) == (0, 0)
        assert live_pool.debtOutstanding(1) == TARGET
        assert live_pool.debtOutstanding(100) == 0


class TestStake:
    def test_moves_shares_into_custody_in_warm_up(self, live_pool, buyer):
        tx = live_pool.stake(SHARES(10_000), {"from": buyer})
        assert dict(tx.events["Staked"]) == {
            "account": buyer,
            "shares": SHARES(10_000),
            "units": SHARES(10_000),
            "activationEpoch": 2,
        }
        assert live_pool.balanceOf(live_pool) == SHARES(10_000)
        assert live_pool.balanceOf(buyer) == SHARES(40_000)
        p = position(live_pool, buyer)
        assert (p["pendingShares"], p["earningShares"], p["activationEpoch"]) == (
            SHARES(10_000),
            0,
            2,
        )
        assert p["principalShares"] == SHARES(10_000) and p["lossShares"] == 0

    def test_reverts(self, pool, live_pool, buyer, operator2):
        with brownie.reverts(err("PoolZeroAmount")):
            live_pool.stake(0, {"from": buyer})
        with brownie.reverts(err("ERC20InsufficientBalance", operator2, 0, 1)):
            live_pool.stake(1, {"from": operator2})

    def test_not_before_success(self, pool, fund, buyer):
        fund(buyer, USD, pool)
        pool.deposit(USD, buyer, {"from": buyer})
        with brownie.reverts(err("PoolRoundNotSucceeded", FUNDING)):
            pool.stake(1, {"from": buyer})

    def test_staking_again_restarts_a_warm_up_still_pending(self, live_pool, buyer):
        live_pool.stake(SHARES(1), {"from": buyer})  # epoch 1 → activates at 2
        to_epoch(live_pool, 2)  # epoch 2 arrived but nothing distributed: cohort not active
        tx = live_pool.stake(SHARES(2), {"from": buyer})
        assert dict(tx.events["WarmupRestarted"]) == {
            "account": buyer,
            "units": SHARES(1),
            "activationEpoch": 3,
        }
        p = position(live_pool, buyer)
        assert (p["pendingShares"], p["activationEpoch"]) == (SHARES(3), 3)


class TestRequestUnstake:
    def test_takes_warm_up_stake_first_then_earning(self, live_pool, buyer, distributor):
        live_pool.stake(SHARES(100), {"from": buyer})
        to_epoch(live_pool, 3)
        live_pool.distribute(2, USD, {"from": distributor})  # activates the epoch-2 cohort
        live_pool.stake(SHARES(50), {"from": buyer})  # pending for epoch 4
        tx = live_pool.requestUnstake(SHARES(80), {"from": buyer})
        assert dict(tx.events["UnstakeRequested"]) == {
            "account": buyer,
            "shares": SHARES(80),
            "units": SHARES(80),
            "unlockEpoch": 3 + 1 + COOLDOWN,
        }
        p = position(live_pool, buyer)
        assert (p["pendingShares"], p["earningShares"], p["coolingShares"]) == (
            0,
            SHARES(70),
            SHARES(80),
        )
        assert p["unlockEpoch"] == 5 and p["activationEpoch"] == 0
        assert live_pool.totals().dict()["earningUnits"] == SHARES(70)

    def test_reverts(self, live_pool, buyer):
        with brownie.reverts(err("PoolZeroAmount")):
            live_pool.requestUnstake(0, {"from": buyer})
        live_pool.stake(SHARES(5), {"from": buyer})
        with brownie.reverts(err("PoolInsufficientStake", SHARES(5), SHARES(5) + 1)):
            live_pool.requestUnstake(SHARES(5) + 1, {"from": buyer})


class TestWithdraw:
    def test_after_a_full_epoch_of_cooldown(self, live_pool, buyer):
        live_pool.stake(SHARES(10), {"from": buyer})
        live_pool.requestUnstake(SHARES(10), {"from": buyer})  # epoch 1 → unlock at 3
        with brownie.reverts(err("PoolCooldownActive", 3, 1)):
            live_pool.withdraw({"from": buyer})
        to_epoch(live_pool, 2)
        with brownie.reverts(err("PoolCooldownActive", 3, 2)):
            live_pool.withdraw({"from": buyer})
        to_epoch(live_pool, 3)
        before = live_pool.balanceOf(buyer)
        tx = live_pool.withdraw({"from": buyer})
        assert tx.return_value == SHARES(10) == live_pool.balanceOf(buyer) - before
        assert dict(tx.events["Unstaked"]) == {
            "account": buyer,
            "shares": SHARES(10),
            "units": SHARES(10),
        }
        p = position(live_pool, buyer)
        assert p["coolingShares"] == 0 and p["principalShares"] == 0 and p["lossShares"] == 0
        assert live_pool.totals().dict()["stakedShares"] == 0

    def test_nothing_cooling(self, live_pool, buyer):
        with brownie.reverts(err("PoolNothingCooling")):
            live_pool.withdraw({"from": buyer})


class TestDistributeAndClaim:
    def test_revenue_goes_pro_rata_to_stake_earning_for_the_whole_epoch(
        self, live_pool, stablecoin, buyer, staker, distributor
    ):
        live_pool.stake(SHARES(30_000), {"from": buyer})
        live_pool.stake(SHARES(10_000), {"from": staker})
        to_epoch(live_pool, 3)
        tx = live_pool.distribute(2, 1_000 * USD, {"from": distributor})
        assert dict(tx.events["CohortActivated"]) == {
            "activationEpoch": 2,
            "units": SHARES(40_000),
        }
        index = 1_000 * USD * SCALE // SHARES(40_000)
        assert dict(tx.events["RevenueDistributed"]) == {
            "epoch": 2,
            "assets": 1_000 * USD,
            "earningUnits": SHARES(40_000),
            "revenueIndex": index,
        }
        assert position(live_pool, buyer)["claimableAssets"] == 750 * USD
        before = stablecoin.balanceOf(staker)
        claim = live_pool.claim(staker, {"from": staker})
        assert claim.return_value == 250 * USD == stablecoin.balanceOf(staker) - before
        assert dict(claim.events["RevenueClaimed"]) == {
            "account": staker,
            "receiver": staker,
            "assets": 250 * USD,
        }
        p = position(live_pool, staker)
        assert (p["claimableAssets"], p["claimedAssets"]) == (0, 250 * USD)
        t = live_pool.totals().dict()
        assert (t["revenueInAssets"], t["revenuePaidAssets"]) == (1_000 * USD, 250 * USD)

    def test_the_same_epoch_may_receive_more_revenue(self, live_pool, buyer, distributor):
        live_pool.stake(SHARES(1), {"from": buyer})
        to_epoch(live_pool, 3)
        live_pool.distribute(2, USD, {"from": distributor})
        live_pool.distribute(2, USD, {"from": distributor})
        assert position(live_pool, buyer)["claimableAssets"] == 2 * USD
        assert live_pool.lastDistributedEpoch() == 2

    def test_revenue_with_nobody_earning_waits_for_the_next_distribution(
        self, live_pool, buyer, distributor
    ):
        to_epoch(live_pool, 2)
        live_pool.distribute(1, 7 * USD, {"from": distributor})
        assert live_pool.totals().dict()["undistributedAssets"] == 7 * USD
        live_pool.stake(SHARES(3), {"from": buyer})  # epoch 2 → activates at 3
        to_epoch(live_pool, 4)
        live_pool.distribute(3, 2, {"from": distributor})
        assert position(live_pool, buyer)["claimableAssets"] == 7 * USD + 2
        assert live_pool.totals().dict()["undistributedAssets"] == 0

    def test_rounding_keeps_dust_in_the_pool(self, live_pool, buyer, staker, stranger, distributor):
        for who in (buyer, staker, stranger):
            live_pool.stake(SHARES(1), {"from": who})
        to_epoch(live_pool, 3)
        live_pool.distribute(2, 10, {"from": distributor})
        claimable = [position(live_pool, w)["claimableAssets"] for w in (buyer, staker, stranger)]
        assert claimable == [3, 3, 3]
        # The tenth unit is not lost: each staker owns a third of it, to 1e-36, and the
        # index division's remainder is carried; together they make exactly one unit.
        fractions = [position(live_pool, w)["claimableFractionScaled"] for w in (buyer, staker)]
        assert fractions == [333_333_333_333_333_333 * 10**18] * 2
        assert live_pool.totals().dict()["undistributedScaled"] == 10**18
        assert 3 * fractions[0] + 10**18 == SCALE
        live_pool.distribute(2, 2, {"from": distributor})  # 12 in: exactly 4 each now
        claimable = [position(live_pool, w)["claimableAssets"] for w in (buyer, staker, stranger)]
        assert claimable == [4, 4, 4]

    def test_distribute_reverts(self, pool, live_pool, stranger, distributor):
        with brownie.reverts(
            err("AccessControlUnauthorizedAccount", stranger, bytes_arg(DISTRIBUTOR_ROLE))
        ):
            live_pool.distribute(1, USD, {"from": stranger})
        with brownie.reverts(err("PoolZeroAmount")):
            live_pool.distribute(1, 0, {"from": distributor})
        with brownie.reverts(err("PoolEpochNotEnded", 1, 1)):
            live_pool.distribute(1, USD, {"from": distributor})
        to_epoch(live_pool, 4)
        with brownie.reverts(err("PoolEpochOutOfOrder", 0, 0)):
            live_pool.distribute(0, USD, {"from": distributor})
        live_pool.distribute(3, USD, {"from": distributor})
        with brownie.reverts(err("PoolEpochOutOfOrder", 2, 3)):
            live_pool.distribute(2, USD, {"from": distributor})

    def test_distribute_needs_a_succeeded_round(self, pool, distributor):
        to_epoch(pool, 2)
        with brownie.reverts(err("PoolRoundNotSucceeded", FUNDING)):
            pool.distribute(1, USD, {"from": distributor})

    def test_claim_reverts(self, live_pool, buyer):
        with brownie.reverts(err("PoolNothingToClaim")):
            live_pool.claim(buyer, {"from": buyer})
        with brownie.reverts(err("PoolZeroAddress")):
            live_pool.claim(ZERO_ADDRESS, {"from": buyer})

    def test_unstake_request_stops_earning_at_once(self, live_pool, buyer, staker, distributor):
        live_pool.stake(SHARES(10), {"from": buyer})
        live_pool.stake(SHARES(10), {"from": staker})
        to_epoch(live_pool, 3)
        live_pool.distribute(2, 20 * USD, {"from": distributor})
        live_pool.requestUnstake(SHARES(10), {"from": staker})
        live_pool.distribute(2, 20 * USD, {"from": distributor})
        assert position(live_pool, buyer)["claimableAssets"] == 30 * USD
        assert position(live_pool, staker)["claimableAssets"] == 10 * USD


class TestCohortBound:
    """distribute activates at most MAX_COHORTS_PER_CALL warm-up cohorts. Revenue of a
    distribution that leaves cohorts due is carried, not credited to the incomplete set of
    earning units; activateCohorts (anyone) activates the rest and credits it."""

    def test_revenue_waits_for_every_due_cohort(
        self, live_pool, buyer, staker, stranger, distributor
    ):
        bound = live_pool.MAX_COHORTS_PER_CALL()
        live_pool.stake(SHARES(1_000), {"from": staker})  # epoch 1: cohort 2
        # The buyer stakes in each of the next bound + 1 epochs (cohorts 3 .. bound + 3); its
        # pending stake moves along, so it all sits in the last cohort.
        for epoch in range(2, bound + 3):
            to_epoch(live_pool, epoch)
            live_pool.stake(SHARES(1), {"from": buyer})
        last = bound + 3
        to_epoch(live_pool, last + 1)
        tx = live_pool.distribute(last, 1_000 * USD, {"from": distributor})
        print(f"\nGAS distribute activating {bound} cohorts (the bound): {tx.gas_used}")
        assert [e["activationEpoch"] for e in tx.events["CohortActivated"]] == list(
            range(2, bound + 2)
        )
        assert dict(tx.events["RevenueDeferred"]) == {"epoch": last, "assets": 1_000 * USD}
        assert dict(tx.events["RevenueDistributed"]) == {
            "epoch": last,
            "assets": 1_000 * USD,
            "earningUnits": SHARES(1_000),
            "revenueIndex": 0,
        }
        # Not credited to the staker alone while the buyer's cohort, due too, is not in.
        assert position(live_pool, staker)["claimableAssets"] == 0
        assert live_pool.totals().dict()["undistributedScaled"] == 1_000 * USD * SCALE
        # Stake made now is due only after the last distributed epoch: it gets none of it.
        live_pool.stake(SHARES(5), {"from": stranger})

        with brownie.reverts(err("PoolZeroAmount")):
            live_pool.activateCohorts(0, {"from": stranger})
        tx = live_pool.activateCohorts(1, {"from": stranger})  # cohort bound + 2 only
        assert tx.return_value is False
        assert dict(tx.events["CohortActivated"]) == {"activationEpoch": bound + 2, "units": 0}
        assert "RevenueDistributed" not in tx.events
        assert live_pool.totals().dict()["undistributedScaled"] == 1_000 * USD * SCALE

        tx = live_pool.activateCohorts(10, {"from": stranger})
        assert tx.return_value is True
        assert dict(tx.events["CohortActivated"]) == {
            "activationEpoch": bound + 3,
            "units": SHARES(bound + 1),
        }
        earning = SHARES(1_000 + bound + 1)
        index = 1_000 * USD * SCALE // earning
        assert dict(tx.events["RevenueDistributed"]) == {
            "epoch": last,
            "assets": 0,
            "earningUnits": earning,
            "revenueIndex": index,
        }
        got = {w: position(live_pool, w) for w in (staker, buyer, stranger)}
        assert got[staker]["claimableAssets"] == SHARES(1_000) * index // SCALE
        assert got[buyer]["claimableAssets"] == SHARES(bound + 1) * index // SCALE
        assert got[stranger]["claimableAssets"] == 0
        assert got[stranger]["pendingShares"] == SHARES(5)
        assert live_pool.totals().dict()["undistributedScaled"] == 1_000 * USD * SCALE - (
            index * earning
        )
        # Nothing left due: a further call changes nothing.
        tx = live_pool.activateCohorts(10, {"from": stranger})
        assert tx.return_value is True and len(tx.events) == 0

    def test_the_next_distribution_continues_the_activation(
        self, live_pool, buyer, staker, distributor
    ):
        bound = live_pool.MAX_COHORTS_PER_CALL()
        live_pool.stake(SHARES(100), {"from": staker})  # cohort 2
        for epoch in range(2, bound + 3):  # cohorts 3 .. bound + 3, the buyer's in the last
            to_epoch(live_pool, epoch)
            live_pool.stake(SHARES(1), {"from": buyer})
        to_epoch(live_pool, bound + 4)
        assert (
            "RevenueDeferred"
            in live_pool.distribute(bound + 3, 100 * USD, {"from": distributor}).events
        )
        tx = live_pool.distribute(bound + 3, 17 * USD, {"from": distributor})
        assert len(tx.events["CohortActivated"]) == 2 and "RevenueDeferred" not in tx.events
        earning = SHARES(100 + bound + 1)
        assert tx.events["RevenueDistributed"]["earningUnits"] == earning
        index = 117 * USD * SCALE // earning  # both distributions' revenue, over every unit
        assert tx.events["RevenueDistributed"]["revenueIndex"] == index
        assert position(live_pool, buyer)["claimableAssets"] == SHARES(bound + 1) * index // SCALE


class TestBookLoss:
    def test_seizes_staked_shares_pro_rata_visible_per_staker(
        self, live_pool, buyer, staker, slasher, stranger, distributor
    ):
        live_pool.stake(SHARES(30_000), {"from": buyer})
        live_pool.stake(SHARES(10_000), {"from": staker})
        live_pool.requestUnstake(SHARES(10_000), {"from": staker})  # cooling still bears loss
        tx = live_pool.bookLoss(4_000 * USD, stranger, {"from": slasher})
        assert tx.return_value == SHARES(4_000)
        assert dict(tx.events["LossBooked"]) == {
            "assets": 4_000 * USD,
            "shares": SHARES(4_000),
            "recipient": stranger,
            "stakedSharesAfter": SHARES(36_000),
        }
        assert live_pool.balanceOf(stranger) == SHARES(24_000)  # 20k own + 4k seized
        b, s = position(live_pool, buyer), position(live_pool, staker)
        assert (b["pendingShares"], b["lossShares"]) == (SHARES(27_000), SHARES(3_000))
        assert (s["coolingShares"], s["lossShares"]) == (SHARES(9_000), SHARES(1_000))
        to_epoch(live_pool, 3)
        assert live_pool.withdraw({"from": staker}).return_value == SHARES(9_000)
        s = position(live_pool, staker)
        assert (s["principalShares"], s["lossShares"]) == (0, SHARES(1_000))
        t = live_pool.totals().dict()
        assert (t["lossShares"], t["lossAssets"], t["stakedShares"]) == (
            SHARES(4_000),
            4_000 * USD,
            SHARES(27_000),
        )
        # Revenue per unit is unchanged by the loss: the buyer is now the only earner.
        live_pool.distribute(2, 9 * USD, {"from": distributor})
        assert position(live_pool, buyer)["claimableAssets"] == 9 * USD

    def test_a_loss_beyond_the_stake_wipes_it_out_keeping_earnings(
        self, live_pool, buyer, staker, slasher, stranger, distributor
    ):
        live_pool.stake(SHARES(10), {"from": buyer})
        to_epoch(live_pool, 3)
        live_pool.distribute(2, 5 * USD, {"from": distributor})
        live_pool.stake(SHARES(5), {"from": buyer})  # in warm-up: also wiped
        tx = live_pool.bookLoss(1_000 * USD, stranger, {"from": slasher})
        assert tx.return_value == SHARES(15)
        assert tx.events["StakeWipedOut"]["newEra"] == 1
        p = position(live_pool, buyer)
        assert (p["earningShares"], p["pendingShares"], p["claimableAssets"]) == (0, 0, 5 * USD)
        assert (p["principalShares"], p["lossShares"]) == (0, SHARES(15))
        # The pool works on: a new staker earns alone from its own warm-up on.
        live_pool.stake(SHARES(4), {"from": staker})
        to_epoch(live_pool, 5)
        live_pool.distribute(4, 8 * USD, {"from": distributor})
        assert position(live_pool, staker)["claimableAssets"] == 8 * USD
        assert position(live_pool, buyer)["claimableAssets"] == 5 * USD
        live_pool.claim(buyer, {"from": buyer})

    def test_repeated_near_total_losses_release_instead_of_overflowing(
        self, live_pool, buyer, staker, slasher
    ):
        """16 rounds of: a 99.99% loss, then its recipient stakes the seized shares. Each
        round multiplies the units a share stands for by ~1e4: unbounded, the unit arithmetic
        overflows (Panic) by round 14 and the revenue index stops moving long before. Bounded,
        every third loss releases the stake at its exact value and a fresh era begins."""
        pool = live_pool
        pool.stake(SHARES(50_000), {"from": buyer})
        releases = []
        for _ in range(16):
            staked = pool.totals()["stakedShares"]
            assets = staked * 9_999 // 10_000 * PRICE // ONE_SHARE  # 99.99% of its value
            tx = pool.bookLoss(assets, staker, {"from": slasher})
            t = pool.totals().dict()
            assert t["totalUnits"] <= t["stakedShares"] * 10**9  # the bound holds after every loss
            if "StakeReleased" in tx.events:
                left = staked - tx.return_value
                assert dict(tx.events["StakeReleased"]) == {
                    "newEra": len(releases) + 1,
                    "shares": left,
                }
                assert tx.events["LossBooked"]["stakedSharesAfter"] == 0
                assert (t["stakedShares"], t["totalUnits"], t["earningUnits"]) == (0, 0, 0)
                releases.append(left)
            pool.stake(tx.return_value, {"from": staker})
        assert len(releases) == 5
        t = pool.totals().dict()
        assert t["releasedShares"] == sum(releases)
        assert pool.balanceOf(pool) == t["stakedShares"] + t["releasedShares"]
        b, s = position(pool, buyer), position(pool, staker)
        # Exact per position: what was staked is lost or released, nothing else.
        assert b["lossShares"] + b["releasedShares"] == SHARES(50_000)
        assert b["principalShares"] == b["earningShares"] == b["pendingShares"] == 0
        # Released shares are each position's floor at the final rate: a few units of dust.
        owed = b["releasedShares"] + s["releasedShares"]
        assert 0 <= t["releasedShares"] - owed <= 2 * len(releases)
        # Released stake is withdrawable at once, without a cooldown.
        tx = pool.withdraw({"from": buyer})
        assert tx.return_value == b["releasedShares"] > 0
        assert dict(tx.events["ReleasedStakeWithdrawn"]) == {
            "account": buyer,
            "shares": b["releasedShares"],
        }
        assert "Unstaked" not in tx.events
        assert position(pool, buyer)["releasedShares"] == 0
        assert pool.totals()["releasedShares"] == t["releasedShares"] - b["releasedShares"]
        with brownie.reverts(err("PoolNothingCooling")):
            pool.withdraw({"from": buyer})

    def test_reverts(self, live_pool, slasher, stranger, buyer):
        with brownie.reverts(
            err("AccessControlUnauthorizedAccount", stranger, bytes_arg(SLASHER_ROLE))
        ):
            live_pool.bookLoss(1, stranger, {"from": stranger})
        with brownie.reverts(err("PoolZeroAmount")):
            live_pool.bookLoss(0, stranger, {"from": slasher})
        with brownie.reverts(err("PoolZeroAddress")):
            live_pool.bookLoss(1, ZERO_ADDRESS, {"from": slasher})
        with brownie.reverts(err("PoolNothingStaked")):
            live_pool.bookLoss(1, stranger, {"from": slasher})


class TestShareTokenExtras:
    def test_permit_approves_share_transfers(self, live_pool, buyer, staker):
        from eth_account import Account

        from gpucap import devchain
        from tests.contracts.capacity_helpers import sign_permit

        owner = Account.from_key(devchain.dev_private_key(3))  # buyer is accounts[3]
        assert owner.address == buyer.address
        deadline = latest_timestamp() + 3600
        v, r, s = sign_permit(owner, live_pool, staker.address, SHARES(5), deadline)
        live_pool.permit(buyer, staker, SHARES(5), deadline, v, r, s, {"from": staker})
        live_pool.transferFrom(buyer, staker, SHARES(5), {"from": staker})
        assert live_pool.balanceOf(staker) == SHARES(30_005)

    def test_relayed_stake_is_the_signer_s(
        self, stablecoin, operator, admin, forwarder, fund, buyer, relayer, pool_gate
    ):
        from eth_account import Account

        from gpucap import devchain
        from tests.contracts.forwarder_helpers import sign_request

        gasless = deploy_pool(
            stablecoin, operator, admin, PoolParams(forwarder=forwarder), gate=pool_gate
        )
        fill_round(gasless, stablecoin, fund, [buyer], [TARGET])
        signer = Account.from_key(devchain.dev_private_key(3))
        request = sign_request(
            signer,
            forwarder.address,
            31337,
            gasless.address,
            gasless.stake.encode_input(SHARES(7)),
            forwarder.nonces(buyer),
            latest_timestamp() + 3600,
        )
        tx = forwarder.execute(request.as_tuple(), {"from": relayer})
        assert tx.events["Staked"]["account"] == buyer
        assert position(gasless, buyer)["pendingShares"] == SHARES(7)
        assert position(gasless, relayer)["pendingShares"] == 0
