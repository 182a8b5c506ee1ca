"""Read models of pool loans, folded from PoolLoans' events.

``pool_loans`` is each node's loan now (PoolLoans keeps one Loan per node): its lifecycle
state and the epoch it entered it, the pledged bond, and the default's claim and loss
waterfall; ``pool_loan_events`` the history of every loan event. Each handler depends only
on earlier events of the same node, so a full replay (reorg) and the live path agree.
Figures the events do not carry (arrears now, the cure and low-DSCR runs, what recovery
repaid) are derived at read time from the node's settlements (``node_settlements``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from backend.db.models import ChainEvent, PoolLoanEventRow, PoolLoanRow

LOANS = "PoolLoans"
# IPoolLoans.LoanState, by its uint8 value.
STATES = ("performing", "cash_sweep", "defaulted")


def state_name(value: Any) -> str:
    return STATES[int(value)]


def _loan(session: Session, node_id: int) -> PoolLoanRow:
    row = session.get(PoolLoanRow, node_id)
    if row is None:
        row = PoolLoanRow(
            node_id=node_id,
            state=STATES[0],
            pledge_taken=False,
            pledged=0,
            pledge_released=0,
        )
        session.add(row)
        session.flush()
    return row


def _history(
    session: Session,
    ev: ChainEvent,
    *,
    epoch: int | None = None,
    states: tuple[str, str] | None = None,
    **amounts: int,
) -> None:
    session.add(
        PoolLoanEventRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            node_id=int(ev.args["nodeId"]),
            event=ev.event,
            epoch=epoch,
            from_state=states[0] if states else None,
            to_state=states[1] if states else None,
            amounts=amounts,
            block_timestamp=ev.block_timestamp,
            tx_hash=ev.tx_hash,
        )
    )


def _state_changed(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    loan = _loan(session, int(a["nodeId"]))
    before, after = state_name(a["from"]), state_name(a["to"])
    loan.state, loan.since_epoch = after, int(a["epoch"])
    _history(session, ev, epoch=int(a["epoch"]), states=(before, after))


def _bond_pledged(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    loan = _loan(session, int(a["nodeId"]))
    loan.pool, loan.pledge_taken, loan.pledged = a["pool"], True, int(a["amount"])
    _history(session, ev, pledged=int(a["amount"]))


def _pledge_released(session: Session, ev: ChainEvent) -> None:
    loan = _loan(session, int(ev.args["nodeId"]))
    amount = int(ev.args["amount"])
    loan.pledged = 0
    loan.pledge_released += amount
    _history(session, ev, released=amount)


def _defaulted(session: Session, ev: ChainEvent) -> None:
    """Emitted by declareDefault after its LoanStateChanged, before its LossWaterfall."""
    a = ev.args
    loan = _loan(session, int(a["nodeId"]))
    loan.default_epoch = int(a["epoch"])
    loan.principal_accelerated = int(a["principal"])
    loan.arrears_at_default = int(a["arrears"])
    loan.recovery_claim = int(a["recoveryClaim"])
    loan.default_tx = ev.tx_hash
    loan.pledged = 0  # seized: the waterfall says how much
    _history(
        session,
        ev,
        epoch=int(a["epoch"]),
        principal=int(a["principal"]),
        arrears=int(a["arrears"]),
        recovery_claim=int(a["recoveryClaim"]),
    )


def _waterfall(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    loan = _loan(session, int(a["nodeId"]))
    loan.bond_seized, loan.stakers_loss = int(a["bond"]), int(a["stakers"])
    loan.reserve_cover, loan.holders_loss = int(a["reserve"]), int(a["holders"])
    _history(
        session,
        ev,
        epoch=loan.default_epoch,
        bond=int(a["bond"]),
        stakers=int(a["stakers"]),
        reserve=int(a["reserve"]),
        holders=int(a["holders"]),
    )


HANDLERS: dict[tuple[str, str], Callable[[Session, ChainEvent], None]] = {
    (LOANS, "LoanStateChanged"): _state_changed,
    (LOANS, "BondPledged"): _bond_pledged,
    (LOANS, "PledgeReleased"): _pledge_released,
    (LOANS, "LoanDefaulted"): _defaulted,
    (LOANS, "LossWaterfall"): _waterfall,
}
