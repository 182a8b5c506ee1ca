"""RevenuePool's staking accounting, mirrored in Python from the pool's events.

Why mirror rather than read ``stakeOf`` from the chain: a distribution or a loss
changes every staker's claimable revenue and stake without an event per staker, and
the API must answer from the database. The pool's events carry every input of its
accounting (units staked and unstaked, each cohort's activation, the revenue index
after each distribution, losses, wipe-outs and releases), so folding them with the contract's own
rules reproduces ``stakeOf`` exactly — the tests compare the two on a live chain.

Each function here names the RevenuePool function it mirrors. They work on any
objects with the attributes of ``PoolRow``, ``PoolCohortRow`` and ``PoolPositionRow``
(the ORM rows in practice) and never touch a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

SCALE = 10**36  # RevenuePool.SCALE
ONE_SHARE = 10**18
MAX_UNITS_PER_SHARE = 10**9  # RevenuePool.MAX_UNITS_PER_SHARE


class PoolState(Protocol):
    staked_shares: int
    total_units: int
    earning_units: int
    revenue_index: int
    era: int
    era_end_index: dict[str, str]
    era_release: dict[str, list[str]]
    released_shares: int


class Cohort(Protocol):
    units: int
    index_at_fold: int
    era: int
    queued: bool
    folded: bool


class Position(Protocol):
    units: int
    pending_units: int
    cooling_units: int
    revenue_index: int
    accrued_scaled: int
    principal_shares: int
    claimed: int
    era: int
    lost_shares: int
    activation_epoch: int
    unlock_epoch: int
    released_shares: int


CohortLookup = Callable[[int], Cohort | None]


def mul_div(x: int, y: int, d: int, *, round_up: bool = False) -> int:
    """OpenZeppelin Math.mulDiv (floor, or ceil)."""
    q, r = divmod(x * y, d)
    return q + 1 if round_up and r else q


def to_shares(pool: PoolState, units: int) -> int:
    """RevenuePool._toShares."""
    if pool.total_units == 0:
        return 0
    return mul_div(units, pool.staked_shares, pool.total_units)


def to_units(pool: PoolState, shares: int, *, round_up: bool = False) -> int:
    """RevenuePool._toUnits / _toUnitsRoundUp."""
    if pool.total_units == 0:
        return shares
    return mul_div(shares, pool.total_units, pool.staked_shares, round_up=round_up)


def era_end_index(pool: PoolState, era: int) -> int:
    return int(pool.era_end_index.get(str(era), 0))


def era_release(pool: PoolState, era: int) -> tuple[int, int] | None:
    """RevenuePool._eraRelease[era] as (shares, units); None unless ``era`` ended in a release."""
    release = (pool.era_release or {}).get(str(era))
    return None if release is None else (int(release[0]), int(release[1]))


def ends_era(staked_after: int, total_units: int) -> bool:
    """RevenuePool.bookLoss: does a loss leaving ``staked_after`` shares end the era?"""
    return staked_after == 0 or total_units > staked_after * MAX_UNITS_PER_SHARE


def end_era(pool: PoolState, staked: int) -> None:
    """RevenuePool._endEra: every unit is void; ``staked`` > 0 shares are released."""
    # New dicts, so the JSON columns' changes are seen.
    pool.era_end_index = {**pool.era_end_index, str(pool.era): str(pool.revenue_index)}
    if staked:
        pool.era_release = {
            **(pool.era_release or {}),
            str(pool.era): [str(staked), str(pool.total_units)],
        }
        pool.released_shares += staked
        pool.staked_shares = 0
    pool.era += 1
    pool.total_units = 0
    pool.earning_units = 0


def settle(pool: PoolState, cohorts: CohortLookup, p: Position) -> int:
    """RevenuePool._settle, in place: revenue accrued, activated warm-up moved to
    earning, an ended era cleared (its stake lost, or released at the era's final rate
    and credited to ``p.released_shares``). Returns the shares this call released."""
    index = pool.revenue_index
    if p.era != pool.era:
        end = era_end_index(pool, p.era)
        earned = p.units * (end - p.revenue_index)
        if p.pending_units:
            old = cohorts(p.activation_epoch)
            if old is not None and old.folded and old.era == p.era:
                earned += p.pending_units * (end - old.index_at_fold)
        p.accrued_scaled += earned
        released = 0
        release = era_release(pool, p.era)
        if release is not None and release[1]:
            value = p.units + p.pending_units + p.cooling_units
            released = mul_div(value, release[0], release[1])
        # released <= the position's value <= principal (stake rounds in the pool's favour).
        p.lost_shares += p.principal_shares - min(p.principal_shares, released)
        p.released_shares += released
        p.principal_shares = 0
        p.units = p.pending_units = p.cooling_units = 0
        p.activation_epoch = p.unlock_epoch = 0
        p.era = pool.era
        p.revenue_index = index
        return released
    accrued = p.units * (index - p.revenue_index)
    if p.pending_units:
        cohort = cohorts(p.activation_epoch)
        if cohort is not None and cohort.folded:
            accrued += p.pending_units * (index - cohort.index_at_fold)
            p.units += p.pending_units
            p.pending_units = 0
            p.activation_epoch = 0
    p.accrued_scaled += accrued
    p.revenue_index = index
    return 0


def add_to_cohort(pool: PoolState, cohort: Cohort, units: int) -> None:
    """RevenuePool._addToCohort (the cohort row exists; fresh rows start zeroed)."""
    if cohort.era != pool.era or not cohort.queued:
        cohort.units = 0
        cohort.index_at_fold = 0
        cohort.era = pool.era
        cohort.queued = True
        cohort.folded = False
    cohort.units += units


@dataclass(frozen=True)
class StakeView:
    """RevenuePool.stakeOf, from the mirrored state."""

    earning_shares: int
    pending_shares: int
    cooling_shares: int
    activation_epoch: int
    unlock_epoch: int
    claimable_assets: int
    claimable_fraction_scaled: int
    claimed_assets: int
    principal_shares: int
    loss_shares: int
    released_shares: int


def stake_view(pool: PoolState, cohorts: CohortLookup, position: Any) -> StakeView:
    """stakeOf(account) without writing: ``position`` is copied, then settled."""
    p = _Copy(position)
    settle(pool, cohorts, p)
    value = to_shares(pool, p.units + p.pending_units + p.cooling_units)
    return StakeView(
        earning_shares=to_shares(pool, p.units),
        pending_shares=to_shares(pool, p.pending_units),
        cooling_shares=to_shares(pool, p.cooling_units),
        activation_epoch=p.activation_epoch,
        unlock_epoch=p.unlock_epoch,
        claimable_assets=p.accrued_scaled // SCALE,
        claimable_fraction_scaled=p.accrued_scaled % SCALE,
        claimed_assets=p.claimed,
        principal_shares=p.principal_shares,
        loss_shares=p.lost_shares + max(0, p.principal_shares - value),
        released_shares=p.released_shares,
    )


_POSITION_FIELDS = (
    "units",
    "pending_units",
    "cooling_units",
    "revenue_index",
    "accrued_scaled",
    "principal_shares",
    "claimed",
    "era",
    "lost_shares",
    "activation_epoch",
    "unlock_epoch",
    "released_shares",
)


class _Copy:
    """A detached copy of a position's accounting fields (settling it writes nothing)."""

    def __init__(self, source: Any) -> None:
        for name in _POSITION_FIELDS:
            setattr(self, name, int(getattr(source, name) or 0))


def epoch_at(timestamp: int, genesis_timestamp: int, epoch_length_seconds: int) -> int:
    """RevenuePool.currentEpoch at ``timestamp`` (0 before genesis, epoch 1 at genesis)."""
    if timestamp < genesis_timestamp:
        return 0
    return (timestamp - genesis_timestamp) // epoch_length_seconds + 1
