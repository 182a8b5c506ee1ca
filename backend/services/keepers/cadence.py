"""When a node's epoch settlement is due: the settlement keeper's cadence.

One ``EpochSettlement.settle`` of a node's newest leaf settles every epoch since its last
settlement (the leaf carries cumulative counters), at a cost that does not depend on how
many epochs it covers. So settling less often is cheaper per node-epoch: a settlement that
covers n epochs costs 1/n of one settlement per node-epoch. What settling late costs
instead: the operator, the pool and the protocol are paid later, and the books the risk
rules read (DSCR window, arrears, covenant, default) are as old as the oldest unsettled
epoch. The cadence weighs the two; a node is due when ANY of these holds:

- ``min_epochs``: its unsettled attested epochs reached this many (production: 24, a day
  of hourly epochs, so each node-epoch carries ~1/24 of one settlement's gas);
- ``max_delay_seconds``: its oldest unsettled attested epoch ended this long ago (86,400 s:
  nobody waits for money more than a day after the hour it was earned, whatever the
  epoch length; with hourly epochs it adds nothing to ``min_epochs``, with longer or
  irregularly attested epochs it bounds the wait);
- ``loan_epochs``: its pool's raise was drawn (lenders are owed a schedule) and this many
  epochs are unsettled (6: a quarter of a day). Debt service, arrears, the covenant and the
  default rule are evaluated only at a settlement, so a drawn loan's books should not be a
  day old: lenders learn of a missed payment, a breached DSCR (and the cash sweep that
  follows) within 6 hours, not 24. Why not 1: a 6-epoch lag is small against what it is
  compared with (the DSCR window covers many epochs; the default threshold is a share of
  the principal, reached over many missed payments), and settling every hour would put a
  drawn node's settle gas at 6× the fleet's, the cost issue #20 is about.

A node's first settlement is due at once: the contract bills only the first settled
epoch's own hours (a registration's counters may start before the node became billable),
so it must be exactly the first billable epoch, and it anchors the counters the later
ranges are billed from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cadence:
    min_epochs: int = 24
    max_delay_seconds: float = 86_400.0
    loan_epochs: int = 6

    def due(self, *, unsettled: int, oldest_ended_ago: float, drawn: bool) -> str | None:
        """Why a node with ``unsettled`` attested epochs since its last settlement (the
        oldest ended ``oldest_ended_ago`` seconds ago) is due now, or None if it is not."""
        if unsettled <= 0:
            return None
        if unsettled >= self.min_epochs:
            return f"{unsettled} unsettled epochs (settles at {self.min_epochs})"
        if drawn and unsettled >= self.loan_epochs:
            return f"drawn loan, {unsettled} unsettled epochs (settles at {self.loan_epochs})"
        if oldest_ended_ago >= self.max_delay_seconds:
            return (
                f"oldest unsettled epoch ended {oldest_ended_ago:.0f} s ago "
                f"(settles after {self.max_delay_seconds:.0f} s)"
            )
        return None

    def not_yet(self, *, unsettled: int, oldest_ended_ago: float, drawn: bool) -> str:
        """Why it is not due (for the plan and the log)."""
        at = min(self.min_epochs, self.loan_epochs) if drawn else self.min_epochs
        return (
            f"{unsettled} unsettled epoch(s) of {at}"
            f"{' (drawn loan)' if drawn else ''}, oldest ended {oldest_ended_ago:.0f} s ago "
            f"of {self.max_delay_seconds:.0f} s: not due yet"
        )
