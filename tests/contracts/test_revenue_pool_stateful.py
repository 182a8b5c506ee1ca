"""Stateful property: RevenuePool never pays out more than came in, and loses nothing.

Random sequences of deposits (including over-the-cap ones), the round completing or failing,
refunds, the operator's draw, stake / unstake request / withdraw, revenue distributions for
any allowed epoch (late ones too), stake in more epochs than one distribution activates
(reaching MAX_COHORTS_PER_CALL: the revenue is deferred), permissionless activateCohorts,
claims, booked losses (up to wiping every stake out, and near-total ones that drive the unit
rate to its bound and release the stake), share transfers, donations of stablecoin and
shares, and time passing.

Beside the chain: an integer mirror of the pool's accounting (tests/contracts/pool_shadow.py)
and plain ledgers of every token movement. After every step:
- every account's stakeOf() and the pool's totals() equal the mirror, to the unit;
- stablecoin: pool balance == raised - refunded - drawn + revenue in - paid + donations;
- revenue, exactly in units of 1e-36: revenue in == paid + Σ claimable (whole units plus each
  account's tracked fraction) + the undistributed remainder — nothing is paid that did not
  come in, and no dust is nobody's;
- shares: supply == Σ holders + custody; custody == staked + donated shares; Σ stake value
  <= staked; seized shares == booked loss shares.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from tests.contracts.node_helpers import USD
from tests.contracts.pool_helpers import (
    DISTRIBUTOR_ROLE,
    EPOCH,
    SLASHER_ROLE,
    PoolParams,
    deploy_pool,
)
from tests.contracts.pool_shadow import MAX_COHORTS_PER_CALL, SCALE, ShadowPool
from tests.support.errors import err
from tests.support.stateful import (
    SnapshotMachine,
    batch_views,
    mine_at_least,
    revert_of,
    run_machine,
    stateful_timeout,
    transact,
)

pytestmark = stateful_timeout

PRICE = 1_000_003  # not a round number: share amounts and refunds have remainders
TARGET = 1_000 * USD
OPENING = (400 * USD, 300 * USD)  # already deposited by investors 0 and 1
DEADLINE_EPOCHS = 3  # the world starts in epoch 2: two epochs of advance fail an open round
FUNDING, FAILED, SUCCEEDED = 0, 1, 2

who = st.integers(0, 2)
fraction = st.integers(1, 1_000)  # per mille of what is available
revenue = st.one_of(st.integers(1, 50), st.integers(1, 500 * USD))


class RevenuePoolMachine(SnapshotMachine):
    def __init__(self) -> None:
        super().__init__()
        # Anchor block time to the snapshot's (a revert restores state, not anvil's clock offset):
        # one block a second past the snapshot's latest.
        now = mine_at_least(0)
        self.epoch = (now - self.genesis) // EPOCH + 1
        self.shadow = ShadowPool(price=PRICE, cooldown=1)
        self.names = [a.address for a in self.investors]
        self.shares = dict.fromkeys(self.names, 0)
        for name, amount in zip(self.names, OPENING, strict=False):
            self.shares[name] = amount * 10**18 // PRICE
        self.raised, self.refunded, self.drawn = sum(OPENING), 0, 0
        self.donated_stable = self.donated_shares = 0
        self.failed = False
        self.flooded = False  # stake_in_many_epochs ran (once an example: it is costly)
        self.views = self.world_views  # (contract, fn_name, args) of every invariant view

    # ------------------------------------------------------------------ helpers

    @property
    def status(self) -> int:
        if self.raised >= TARGET:
            return SUCCEEDED
        return FAILED if self.failed else FUNDING

    def _supply(self) -> int:
        s = self.shadow
        return sum(self.shares.values()) + s.staked + s.released_total + self.donated_shares

    # ------------------------------------------------------------------ funding round

    @initialize(
        open_round=st.integers(0, 3),
        i=who,
        stakes=st.lists(fraction, min_size=2),
        first_revenue=revenue,
    )
    def start(self, open_round: int, i: int, stakes: list[int], first_revenue: int) -> None:
        """Three examples in four begin with the round completed, two investors staked and
        the first epoch they earn from settled: staking is where the accounting is
        intricate; the rest explore deposits, failure and refunds."""
        if open_round:
            self.complete_round(i)
            for j, per_mille in enumerate(stakes[:2]):
                self.stake((i + j) % 3, per_mille)
            self.settle_next_epoch(first_revenue)

    @precondition(lambda self: self.status == FUNDING)
    @rule(i=who, amount=st.integers(1, 400 * USD))
    def deposit(self, i: int, amount: int) -> None:
        investor = self.investors[i]
        remaining = TARGET - self.raised
        if amount > remaining:
            got = revert_of(self.pool, "deposit", amount, investor.address, sender=investor)
            assert got == err("PoolFundingCapExceeded", amount, remaining)
            return
        transact(self.pool, "deposit", (amount, investor), investor)
        self.shares[investor.address] += amount * 10**18 // PRICE
        self.raised += amount

    @precondition(lambda self: self.status == FUNDING)
    @rule(i=who)
    def complete_round(self, i: int) -> None:
        self.deposit(i, TARGET - self.raised)

    @precondition(lambda self: self.status == FAILED)
    @rule(i=who, per_mille=fraction)
    def refund(self, i: int, per_mille: int) -> None:
        investor = self.investors[i]
        shares = self.shares[investor.address] * per_mille // 1_000
        if shares == 0:
            return
        assets = shares * (self.raised - self.refunded) // self._supply()
        transact(self.pool, "refund", (shares, investor), investor)
        self.shares[investor.address] -= shares
        self.refunded += assets

    @precondition(lambda self: self.status == SUCCEEDED and self.drawn == 0)
    @rule()
    def draw(self) -> None:
        transact(self.pool, "drawRaise", (), self.operator)
        self.drawn = self.raised

    # ------------------------------------------------------------------ staking

    @precondition(lambda self: self.status == SUCCEEDED)
    @rule(i=who, per_mille=fraction)
    def stake(self, i: int, per_mille: int) -> None:
        investor = self.investors[i]
        shares = self.shares[investor.address] * per_mille // 1_000
        if shares == 0 or self.shadow.to_units(shares) == 0:
            return
        transact(self.pool, "stake", (shares,), investor)
        self.shadow.stake(investor.address, shares, self.epoch)
        self.shares[investor.address] -= shares

    @precondition(lambda self: self.shadow.staked > 0)
    @rule(i=who, per_mille=fraction)
    def request_unstake(self, i: int, per_mille: int) -> None:
        investor = self.investors[i]
        available = self.shadow.to_shares(self.shadow.stakeable_units(investor.address))
        shares = available * per_mille // 1_000
        if shares == 0:
            return
        transact(self.pool, "requestUnstake", (shares,), investor)
        self.shadow.request_unstake(investor.address, shares, self.epoch)

    @rule(i=who)
    def withdraw(self, i: int) -> None:
        investor = self.investors[i]
        p = self.shadow.settled(investor.address)
        if p.cooling == 0 and p.released == 0:
            got = revert_of(self.pool, "withdraw", sender=investor)
            assert got == err("PoolNothingCooling")
            return
        if self.epoch < p.unlock and p.released == 0:
            got = revert_of(self.pool, "withdraw", sender=investor)
            assert got == err("PoolCooldownActive", p.unlock, self.epoch)
            return
        transact(self.pool, "withdraw", (), investor)
        shares, _ = self.shadow.withdraw(investor.address, self.epoch)
        self.shares[investor.address] += shares

    @rule(i=who)
    def claim(self, i: int) -> None:
        # Someone with revenue to claim if anyone has it (claims are the payout path; the
        # nothing-to-claim revert is checked when nobody has anything).
        owed = [a for a in self.investors if self.shadow.settled(a.address).accrued >= SCALE]
        investor = owed[i % len(owed)] if owed else self.investors[i]
        if self.shadow.settled(investor.address).accrued < SCALE:
            got = revert_of(self.pool, "claim", investor.address, sender=investor)
            assert got == err("PoolNothingToClaim")
            return
        transact(self.pool, "claim", (investor,), investor)
        self.shadow.claim(investor.address)

    # ------------------------------------------------------------------ settlement hooks

    @precondition(lambda self: self.status == SUCCEEDED)
    @rule(amount=revenue, back=st.integers(0, 1))
    def distribute(self, amount: int, back: int) -> None:
        epoch = max(self.epoch - 1 - back, self.shadow.last_distributed)
        if epoch == 0:
            got = revert_of(self.pool, "distribute", 0, amount, sender=self.distributor)
            assert got == err("PoolEpochOutOfOrder", 0, 0)
            return
        emitted = transact(self.pool, "distribute", (epoch, amount), self.distributor)
        if not self.shadow.distribute(epoch, amount):  # the bound left cohorts due
            assert dict(emitted["RevenueDeferred"]) == {"epoch": epoch, "assets": amount}

    @rule(max_count=st.integers(1, MAX_COHORTS_PER_CALL + 2))
    def activate_cohorts(self, max_count: int) -> None:
        """Anyone activates cohorts due by the last distributed epoch, then the carried
        revenue is credited (the mirror says to the unit where it went)."""
        due = self.shadow.due_cohorts()
        emitted = transact(self.pool, "activateCohorts", (max_count,), self.donor)
        self.shadow.activate_cohorts(max_count)
        activated = len(emitted["CohortActivated"]) if "CohortActivated" in emitted else 0
        assert activated == min(due, max_count)

    @precondition(lambda self: self.status == SUCCEEDED and not self.flooded)
    @rule()
    def stake_in_many_epochs(self) -> None:
        """Stake in MAX_COHORTS_PER_CALL + 4 consecutive epochs with no distribution: the next
        one finds more cohorts due than it may activate (the bound), and defers its revenue."""
        self.flooded = True
        for _ in range(MAX_COHORTS_PER_CALL + 4):
            self.advance(1)
            richest = max(range(3), key=lambda j: self.shares[self.names[j]])
            self.stake(richest, 1)

    @rule(
        amount=st.one_of(st.integers(1, 100), st.integers(1, 300 * USD), st.just(10**12)),
        to=who,
    )
    def book_loss(self, amount: int, to: int) -> None:
        recipient = self.investors[to]
        if self.shadow.staked == 0:
            got = revert_of(self.pool, "bookLoss", amount, recipient.address, sender=self.slasher)
            assert got == err("PoolNothingStaked")
            return
        transact(self.pool, "bookLoss", (amount, recipient), self.slasher)
        shares = self.shadow.book_loss(amount)
        self.shares[recipient.address] += shares

    @precondition(lambda self: self.shadow.staked > 0)
    @rule(keep=st.one_of(st.integers(1, 10**3), st.integers(1, 10**12)), to=who)
    def book_near_total_loss(self, keep: int, to: int) -> None:
        """A loss that leaves a sliver staked: repeated, it drives the unit rate to its bound,
        where the remaining stake is released."""
        rest = self.shadow.staked - keep
        self.book_loss(max(1, rest * PRICE // 10**18), to)

    # ------------------------------------------------------------------ everything else

    @rule(src=who, dst=who, per_mille=fraction)
    def transfer(self, src: int, dst: int, per_mille: int) -> None:
        a, b = self.investors[src], self.investors[dst]
        shares = self.shares[a.address] * per_mille // 1_000
        transact(self.pool, "transfer", (b, shares), a)
        self.shares[a.address] -= shares
        self.shares[b.address] += shares

    @rule(stable=st.integers(0, 10 * USD), per_mille=st.integers(0, 10), i=who)
    def donate(self, stable: int, per_mille: int, i: int) -> None:
        investor = self.investors[i]
        if stable:
            transact(self.stablecoin, "transfer", (self.pool, stable), self.donor)
            self.donated_stable += stable
        shares = self.shares[investor.address] * per_mille // 1_000
        if shares:
            transact(self.pool, "transfer", (self.pool, shares), investor)
            self.shares[investor.address] -= shares
            self.donated_shares += shares

    @precondition(lambda self: self.status == SUCCEEDED)
    @rule(amount=revenue)
    def settle_next_epoch(self, amount: int) -> None:
        """What settlement does every epoch: wait for the epoch to end, push its revenue."""
        self.advance(1)
        self.distribute(amount, 0)

    @rule(epochs=st.integers(1, 2))
    def advance(self, epochs: int) -> None:
        self.epoch += epochs
        mine_at_least(self.genesis + (self.epoch - 1) * EPOCH + 1)
        if self.epoch > DEADLINE_EPOCHS and self.raised < TARGET:
            self.failed = True

    # ------------------------------------------------------------------ invariants

    @invariant()
    def pool_matches_ledgers(self) -> None:
        s = self.shadow
        views = batch_views(*self.views)
        totals, status, supply, pool_stable, custody = views[:5]
        stakes = views[5 : 5 + len(self.names)]
        balances = views[5 + len(self.names) :]
        (raised, refunded, drawn, rev_in, paid, undistributed, undistributed_scaled) = totals[:7]
        staked, earning, units = totals[7:10]
        assert (raised, refunded, drawn) == (self.raised, self.refunded, self.drawn)
        assert status == self.status
        assert (rev_in, paid, staked, earning, units) == (
            s.revenue_in,
            s.revenue_paid,
            s.staked,
            s.earning,
            s.total_units,
        )
        assert (undistributed, undistributed_scaled) == (s.remainder // SCALE, s.remainder)
        assert tuple(totals[10:]) == (s.loss_shares, s.loss_assets, s.released_total)
        # Stablecoin: every unit that entered is in the pool or went out through a known door.
        expected = self.raised - self.refunded - self.drawn + rev_in - paid + self.donated_stable
        assert pool_stable == expected
        # Revenue, exactly (× SCALE): in == paid + Σ claimable (whole units and each account's
        # fraction) + the undistributed remainder. Nothing paid that did not come in, no dust
        # that is nobody's.
        owed_scaled = sum(stake[5] * SCALE + stake[6] for stake in stakes)
        assert rev_in * SCALE == paid * SCALE + owed_scaled + undistributed_scaled
        # Shares: nothing minted or burnt outside deposits and refunds; custody is exact.
        assert list(balances) == [self.shares[n] for n in self.names]
        assert supply == self._supply()
        released = totals[12]  # set aside by rate resets, owed to accounts (plus rounding dust)
        assert custody == staked + released + self.donated_shares
        values = sum(stake[0] + stake[1] + stake[2] for stake in stakes)
        assert values <= staked
        assert sum(stake[10] for stake in stakes) <= released
        # And every position is the mirror's, to the unit.
        for name, stake in zip(self.names, stakes, strict=True):
            assert dict(zip(_STAKE_FIELDS, stake, strict=True)) == s.view(name), name


_STAKE_FIELDS = (
    "earningShares",
    "pendingShares",
    "coolingShares",
    "activationEpoch",
    "unlockEpoch",
    "claimableAssets",
    "claimableFractionScaled",
    "claimedAssets",
    "principalShares",
    "lossShares",
    "releasedShares",
)


@pytest.fixture(scope="module")
def world(
    stablecoin, operator, admin, relayer, operator2, fund, buyer, staker, stranger, pool_gate
):
    pool = deploy_pool(
        stablecoin,
        operator,
        admin,
        PoolParams(price=PRICE, target=TARGET, funding_seconds=DEADLINE_EPOCHS * EPOCH),
        gate=pool_gate,
        roles=((DISTRIBUTOR_ROLE, relayer), (SLASHER_ROLE, operator2)),
    )
    investors = [buyer, staker, stranger]
    fund(relayer, 10**6 * USD, pool)
    for investor in investors:
        fund(investor, 2 * TARGET, pool)
    for investor, amount in zip(investors, OPENING, strict=False):
        pool.deposit(amount, investor, {"from": investor})
    genesis = pool.epochSchedule()[0]
    names = [a.address for a in investors]
    views = (
        (pool, "totals", ()),
        (pool, "roundStatus", ()),
        (pool, "totalSupply", ()),
        (stablecoin, "balanceOf", (pool.address,)),
        (pool, "balanceOf", (pool.address,)),
        *((pool, "stakeOf", (name,)) for name in names),
        *((pool, "balanceOf", (name,)) for name in names),
    )
    mine_at_least(genesis + EPOCH + 1)  # one second into epoch 2: a whole epoch of margin
    return {
        "pool": pool,
        "stablecoin": stablecoin,
        "operator": operator,
        "distributor": relayer,
        "slasher": operator2,
        "donor": admin,
        "investors": investors,
        "genesis": genesis,
        "world_views": views,
    }


def test_revenue_pool_accounting(world):
    run_machine(RevenuePoolMachine, world, steps=20)
