"""An integer mirror of RevenuePool's staking and revenue accounting, for the stateful test.

It replays every accepted operation with the contract's own rounding, so the machine can
compare each account's position and the pool's totals with the chain to the unit; the
machine separately checks the conservation laws that do not depend on this mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SCALE = 10**36
ONE_SHARE = 10**18
MAX_UNITS_PER_SHARE = 10**9
MAX_COHORTS_PER_CALL = 16


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Position:
    units: int = 0
    pending: int = 0
    cooling: int = 0
    rindex: int = 0
    accrued: int = 0  # scaled by SCALE, like the contract's accruedScaled
    claimed: int = 0
    principal: int = 0
    lost: int = 0
    activation: int = 0
    unlock: int = 0
    era: int = 0
    released: int = 0  # the contract's _releasedOf plus what settling the position releases


@dataclass
class Cohort:
    units: int = 0
    index_at_fold: int = 0
    era: int = 0
    queued: bool = False
    folded: bool = False


@dataclass
class ShadowPool:
    price: int
    cooldown: int
    staked: int = 0  # S
    total_units: int = 0  # U
    earning: int = 0  # E
    index: int = 0
    remainder: int = 0
    era: int = 0
    last_distributed: int = 0
    revenue_in: int = 0
    revenue_paid: int = 0
    loss_shares: int = 0
    loss_assets: int = 0
    cohorts: dict[int, Cohort] = field(default_factory=dict)
    queue: list[int] = field(default_factory=list)
    head: int = 0
    era_end: dict[int, int] = field(default_factory=dict)
    era_release: dict[int, tuple[int, int]] = field(default_factory=dict)  # (shares, units)
    released_total: int = 0
    positions: dict[str, Position] = field(default_factory=dict)

    # ------------------------------------------------------------ conversions

    def to_units(self, shares: int) -> int:
        return shares if self.total_units == 0 else shares * self.total_units // self.staked

    def to_units_up(self, shares: int) -> int:
        if self.total_units == 0:
            return shares
        return ceil_div(shares * self.total_units, self.staked)

    def to_shares(self, units: int) -> int:
        return 0 if self.total_units == 0 else units * self.staked // self.total_units

    # ------------------------------------------------------------ positions

    def settled(self, who: str) -> Position:
        p = replace(self.positions.get(who, Position()))
        if p.era != self.era:
            end = self.era_end[p.era]
            earned = p.units * (end - p.rindex)
            if p.pending:
                c = self.cohorts.get(p.activation)
                if c and c.folded and c.era == p.era:
                    earned += p.pending * (end - c.index_at_fold)
            p.accrued += earned
            rel_shares, rel_units = self.era_release.get(p.era, (0, 0))
            released = (
                (p.units + p.pending + p.cooling) * rel_shares // rel_units if rel_units else 0
            )
            p.released += released
            p.lost += p.principal - min(p.principal, released)
            p.principal = p.units = p.pending = p.cooling = p.activation = p.unlock = 0
            p.era, p.rindex = self.era, self.index
            return p
        accrued = p.units * (self.index - p.rindex)
        if p.pending:
            c = self.cohorts[p.activation]
            if c.folded:
                accrued += p.pending * (self.index - c.index_at_fold)
                p.units += p.pending
                p.pending = p.activation = 0
        p.accrued += accrued
        p.rindex = self.index
        return p

    def view(self, who: str) -> dict[str, int]:
        """What stakeOf(who) must return."""
        p = self.settled(who)
        value = self.to_shares(p.units + p.pending + p.cooling)
        return {
            "earningShares": self.to_shares(p.units),
            "pendingShares": self.to_shares(p.pending),
            "coolingShares": self.to_shares(p.cooling),
            "activationEpoch": p.activation,
            "unlockEpoch": p.unlock,
            "claimableAssets": p.accrued // SCALE,
            "claimableFractionScaled": p.accrued % SCALE,
            "claimedAssets": p.claimed,
            "principalShares": p.principal,
            "lossShares": p.lost + max(0, p.principal - value),
            "releasedShares": p.released,
        }

    def _add_to_cohort(self, activation: int, units: int) -> None:
        c = self.cohorts.setdefault(activation, Cohort())
        if c.era != self.era or not c.queued:
            c.units, c.index_at_fold, c.era, c.queued, c.folded = 0, 0, self.era, True, False
            self.queue.append(activation)
        c.units += units

    # ------------------------------------------------------------ operations

    def stake(self, who: str, shares: int, epoch: int) -> int:
        p = self.settled(who)
        units = self.to_units(shares)
        activation = epoch + 1
        if p.pending and p.activation != activation:
            self.cohorts[p.activation].units -= p.pending
            self._add_to_cohort(activation, p.pending)
        self._add_to_cohort(activation, units)
        p.pending += units
        p.activation = activation
        p.principal += shares
        self.positions[who] = p
        self.total_units += units
        self.staked += shares
        return units

    def stakeable_units(self, who: str) -> int:
        p = self.settled(who)
        return p.units + p.pending

    def request_unstake(self, who: str, shares: int, epoch: int) -> tuple[int, int]:
        p = self.settled(who)
        units = self.to_units_up(shares)
        assert units <= p.units + p.pending
        from_pending = min(units, p.pending)
        if from_pending:
            self.cohorts[p.activation].units -= from_pending
            p.pending -= from_pending
            if p.pending == 0:
                p.activation = 0
        from_earning = units - from_pending
        p.units -= from_earning
        self.earning -= from_earning
        p.cooling += units
        p.unlock = epoch + 1 + self.cooldown
        self.positions[who] = p
        return units, p.unlock

    def withdraw(self, who: str, epoch: int) -> tuple[int, int]:
        """Pays unlocked cooling stake and released stake: (shares, cooling units paid)."""
        p = self.settled(who)
        units, shares = 0, 0
        if p.cooling and epoch >= p.unlock:
            units = p.cooling
            shares = self.to_shares(units)
            part = p.principal * units // (p.units + p.pending + units)
            if part > shares:
                p.lost += part - shares
            p.principal -= part
            p.cooling = p.unlock = 0
            self.total_units -= units
            self.staked -= shares
        shares += p.released
        self.released_total -= p.released
        p.released = 0
        self.positions[who] = p
        return shares, units

    def claim(self, who: str) -> int:
        p = self.settled(who)
        amount = p.accrued // SCALE
        p.accrued -= amount * SCALE
        p.claimed += amount
        self.positions[who] = p
        self.revenue_paid += amount
        return amount

    def _activate(self, epoch: int, max_count: int) -> bool:
        """Activates up to `max_count` cohorts due by `epoch`; True if none is left due."""
        end = min(len(self.queue), self.head + max_count)
        while self.head < end and self.queue[self.head] <= epoch:
            c = self.cohorts[self.queue[self.head]]
            c.folded, c.queued, c.index_at_fold = True, False, self.index
            self.earning += c.units
            self.head += 1
        return self.head == len(self.queue) or self.queue[self.head] > epoch

    def due_cohorts(self) -> int:
        """Queued cohorts due by the last distributed epoch and not yet activated."""
        return sum(1 for a in self.queue[self.head :] if a <= self.last_distributed)

    def distribute(self, epoch: int, assets: int) -> bool:
        """Returns False when the bound left cohorts due (the revenue is carried)."""
        self.last_distributed = epoch
        complete = self._activate(epoch, MAX_COHORTS_PER_CALL)
        numerator = assets * SCALE + self.remainder
        if self.earning == 0 or not complete:
            self.remainder = numerator
        else:
            inc = numerator // self.earning
            self.remainder = numerator - inc * self.earning
            self.index += inc
        self.revenue_in += assets
        return complete

    def activate_cohorts(self, max_count: int) -> bool:
        complete = self._activate(self.last_distributed, max_count)
        if complete and self.earning and self.remainder >= self.earning:
            inc = self.remainder // self.earning
            self.remainder -= inc * self.earning
            self.index += inc
        return complete

    def book_loss(self, assets: int) -> int:
        shares = min(ceil_div(assets * ONE_SHARE, self.price), self.staked)
        self.staked -= shares
        self.loss_shares += shares
        self.loss_assets += assets
        if self.staked == 0 or self.total_units > self.staked * MAX_UNITS_PER_SHARE:
            self.era_end[self.era] = self.index
            if self.staked:  # released at the era's final rate, not wiped
                self.era_release[self.era] = (self.staked, self.total_units)
                self.released_total += self.staked
                self.staked = 0
            self.era += 1
            self.total_units = self.earning = 0
            self.head = len(self.queue)
        return shares
