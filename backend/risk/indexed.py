"""What the chain index knows about a node, as stress-run inputs (``/api/v1/risk``).

A stress run needs, per node, more than the node row: its pool's loan, how busy it
has been and what it rents for. All three are indexed, so the server fills them in
(one request from the dashboard instead of one per node):

- **debt** from its RevenuePool, once drawn. A pool counts in epochs, the projection in
  months (30 days, backend/risk/formulas.py): the tenor and the time since the draw
  are converted by the pool's own epoch length, so a 48-month loan on 30-second epochs
  (4,147,200 of them) projects as 48 months, on hourly epochs too.
  ``staked_bps`` is the staked share of the pool's shares.
- **utilization_bps**: the mean of the node's newest ``TRAILING_EPOCHS`` attested
  epochs (leaves verified against the attested root only).
- **price_per_gpu_hour**: the ask of the node's newest offer (else the class default).
- **mark_price_per_gpu_hour** (asked for with a ``MarkRule``): the market price of the
  node's class (VWAP of its trades in the rule's lookback, ending at the newest indexed
  block) when it traded enough to mark collateral to (backend/risk/collateral.py).

Anything a caller sends as an override wins, field by field.

And the run's terms (``chain_terms``): the split, covenant, curve and loan terms in force
at the newest indexed block (the newest SplitSet, RiskParamsSet and LoanParamsSet) and
the hub's epoch length, so a run settles as the chain does now, not as it was deployed;
and what no event carries (``deployed_terms``): the DSCR window, EpochSettlement's
immutable, read from the chain once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import (
    ChainEvent,
    NodeRow,
    NodeSettlementRow,
    OfferRow,
    PoolRow,
    PoolTermsRow,
)
from backend.risk.collateral import CURVES, node_collateral, trailing_utilization
from backend.risk.fleet import MAX_TENOR_MONTHS
from backend.risk.formulas import MONTH_SECONDS
from backend.services.chain import Chain
from backend.services.pricing.trades import MarkRule, indexed_time

BPS = 10_000
SETTLEMENT, LOANS = "EpochSettlement", "PoolLoans"  # ChainEvent.contract
# Params field <- event argument, per (contract, event) whose newest emission is in force.
_TERM_EVENTS: dict[tuple[str, str], dict[str, str]] = {
    (SETTLEMENT, "SplitSet"): {
        "protocol_fee_bps": "protocolFeeBps",
        "reserve_bps": "reserveBps",
        "operator_bps": "operatorBps",
    },
    (SETTLEMENT, "RiskParamsSet"): {
        "covenant_dscr_bps": "covenantDscrBps",
        "max_ltv_bps": "maxLtvBps",
        "curve": "curve",
    },
    (LOANS, "LoanParamsSet"): {
        "pledge_bps": "pledgeBps",
        "default_arrears_bps": "defaultArrearsBps",
        "default_dscr_bps": "defaultDscrBps",
        "default_dscr_epochs": "defaultDscrEpochs",
        "cure_epochs": "cureEpochs",
    },
}


def chain_terms(session: Session) -> dict[str, int | str]:
    """The engine's terms (``Params`` fields) the index knows the chain's value of: each
    from the newest event that set it, ``epoch_seconds`` from the pools' hub schedule.
    A term the index has not seen (nothing set yet, or no pool) is left out: the caller
    keeps the deployment's default. The DSCR window is immutable and emits nothing: it
    comes from the chain itself (``deployed_terms``)."""
    out: dict[str, int | str] = {}
    for (contract, event), fields in _TERM_EVENTS.items():
        args = session.scalars(
            select(ChainEvent.args)
            .where(ChainEvent.contract == contract, ChainEvent.event == event)
            .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
        ).first()
        if args:
            out.update({name: int(args[arg]) for name, arg in fields.items()})
    if "curve" in out:
        out["curve"] = CURVES.get(int(out["curve"]), "straight_line")
    epoch = session.scalar(select(func.max(PoolTermsRow.epoch_length_seconds)))
    if epoch:
        out["epoch_seconds"] = int(epoch)
    seen = select(ChainEvent.block_number).where(ChainEvent.contract == SETTLEMENT).limit(1)
    if session.scalar(seen) is not None:
        out["reserve_held_micro_usd"] = reserve_held(session)
    return out


def deployed_terms(chain: Chain) -> dict[str, int | str]:
    """The engine's terms the deployment fixed and no event carries: the DSCR window
    (EpochSettlement.dscrWindowEpochs, immutable), read from the chain once per Chain.
    Raises as ``Chain.immutable`` does (the manifest's chain unreachable or another one)."""
    settlement = chain.contract(SETTLEMENT)
    window = chain.immutable(
        "EpochSettlement.dscrWindowEpochs", settlement.functions.dscrWindowEpochs().call
    )
    return {"dscr_window_epochs": int(window)}


def reserve_held(session: Session) -> int:
    """EpochSettlement.reserveHeld as indexed: every settlement's reserve part, less what
    the treasurer withdrew (ReserveWithdrawn) and what defaults took (LossWaterfall)."""
    paid_in = session.scalar(select(func.coalesce(func.sum(NodeSettlementRow.reserve), 0)))
    out = int(paid_in or 0)
    for contract, event, arg in (
        (SETTLEMENT, "ReserveWithdrawn", "amount"),
        (LOANS, "LossWaterfall", "reserve"),
    ):
        for args in session.scalars(
            select(ChainEvent.args).where(
                ChainEvent.contract == contract, ChainEvent.event == event
            )
        ):
            out -= int(args[arg])
    return out


def months(seconds: int) -> int:
    """Whole months in ``seconds`` (floored)."""
    return max(0, seconds) // MONTH_SECONDS


def pool_debt(
    terms: PoolTermsRow, pool: PoolRow, now: int, *, from_draw: bool = False
) -> dict[str, int] | None:
    """The pool's loan in projection months (``DebtIn`` fields), or None before a draw;
    ``from_draw``: as on the day it was drawn (month 0 of the whole tenor)."""
    if not pool.drawn or pool.drawn_assets <= 0:
        return None
    epoch_seconds = terms.epoch_length_seconds
    # Rounded up: a tenor of a fraction of a month still owes within its first month.
    tenor = -(-(terms.tenor_epochs * epoch_seconds) // MONTH_SECONDS)
    tenor = min(max(tenor, 1), MAX_TENOR_MONTHS)
    drawn_at = terms.genesis_timestamp + pool.draw_epoch * epoch_seconds
    staked = pool.staked_shares * BPS // pool.total_shares if pool.total_shares else 0
    return {
        "drawn_assets": pool.drawn_assets,
        "tenor_months": tenor,
        "rate_bps": terms.rate_bps,
        "months_since_draw": 0 if from_draw else min(months(now - drawn_at), tenor),
        "staked_bps": min(staked, BPS),
    }


def scope_node_ids(session: Session, scope: str) -> list[int]:
    """``pools``: the nodes a pool is bound to; ``platform``: every node not exited."""
    if scope == "pools":
        query = select(PoolTermsRow.node_id).join(NodeRow, NodeRow.node_id == PoolTermsRow.node_id)
    else:
        query = select(NodeRow.node_id).where(NodeRow.status != "exited")
    return list(session.scalars(query.order_by(NodeRow.node_id)))


def indexed_overrides(
    session: Session,
    node_ids: list[int],
    now: int,
    *,
    loans_from_draw: bool = False,
    mark_rule: MarkRule | None = None,
) -> dict[int, dict[str, Any]]:
    """Per node: what the index adds to the node row (debt, utilization, price);
    ``loans_from_draw``: each pool loan from its draw (see ``pool_debt``); ``mark_rule``:
    also the market price its collateral is marked to, where its class traded enough."""
    out: dict[int, dict[str, Any]] = {n: {} for n in node_ids}
    if not node_ids:
        return out
    pools = session.execute(
        select(PoolTermsRow, PoolRow)
        .join(PoolRow, PoolRow.address == PoolTermsRow.address)
        .where(PoolTermsRow.node_id.in_(node_ids))
    )
    for terms, pool in pools:
        debt = pool_debt(terms, pool, now, from_draw=loans_from_draw)
        if debt is not None:
            out[terms.node_id]["debt"] = debt
    for node_id, mean in trailing_utilization(session, node_ids).items():
        out[node_id]["utilization_bps"] = mean
    newest_offer = (
        select(OfferRow.node_id, func.max(OfferRow.offer_id).label("offer_id"))
        .where(OfferRow.node_id.in_(node_ids))
        .group_by(OfferRow.node_id)
        .subquery()
    )
    asks = session.execute(
        select(OfferRow.node_id, OfferRow.price_per_gpu_hour).join(
            newest_offer, OfferRow.offer_id == newest_offer.c.offer_id
        )
    )
    for node_id, price in asks:
        out[node_id]["price_per_gpu_hour"] = price
    if mark_rule is not None:
        as_of = indexed_time(session)
        marks = node_collateral(session, node_ids, mark_rule, as_of) if as_of else {}
        for node_id, c in marks.items():
            if c.mark.implied is not None:
                out[node_id]["mark_price_per_gpu_hour"] = c.price.stats.vwap
    return out
