"""Each node's collateral from the index: its book value and its value marked to the market.

Book value is RiskModel.value on the curve the chain uses now (the newest
EpochSettlement.RiskParamsSet; straight line at deploy), the capital's share of gross
under the split it uses now (the newest SplitSet), at the newest indexed block's
time: what EpochSettlement would value the node at in that block. The mark is
``backend.risk.marking``'s, with the node's class's market price (VWAP of its trades in
the rule's lookback, ``backend.services.pricing.trades``) and the node's trailing attested
utilization (the class default's when nothing is attested yet, as in a stress run).

For the pool view (``PoolPublic.collateral``) and the stress engine's marked collateral
(``/api/v1/risk/scenarios`` with ``collateral: "marked"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import ChainEvent, EpochRow, GpuClassRow, NodeMetricRow, NodeRow
from backend.risk import formulas as F
from backend.risk.fleet import DEFAULT_UTILIZATION_BPS
from backend.risk.marking import CAPITAL_SHARE_BPS, Mark, mark, market_implied_value
from backend.risk.marking import remaining_life_seconds as remaining
from backend.services.pricing.trades import ClassPrice, MarkRule, class_prices

TRAILING_EPOCHS = 12  # attested epochs a node's utilization is averaged over
BPS = 10_000
CURVES = {0: "straight_line", 1: "declining_balance"}  # RiskModel.Curve


@dataclass(frozen=True)
class NodeCollateral:
    node_id: int
    curve: str
    as_of: int
    mark: Mark
    price: ClassPrice
    utilization_bps: int
    utilization_attested: bool
    remaining_life_seconds: int
    capital_share_bps: int


def deployed_curve(session: Session) -> str:
    """The curve of the newest RiskParamsSet the index holds (straight line without one)."""
    args = session.scalars(
        select(ChainEvent.args)
        .where(ChainEvent.contract == "EpochSettlement", ChainEvent.event == "RiskParamsSet")
        .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
    ).first()
    return CURVES.get(int(args["curve"]), "straight_line") if args else "straight_line"


def deployed_capital_share(session: Session) -> int:
    """The capital's share of gross (bps) under the newest SplitSet the index holds:
    1e4 - fee - reserve - operator share (the deployment's split without one)."""
    args = session.scalars(
        select(ChainEvent.args)
        .where(ChainEvent.contract == "EpochSettlement", ChainEvent.event == "SplitSet")
        .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
    ).first()
    if not args:
        return CAPITAL_SHARE_BPS
    return BPS - int(args["protocolFeeBps"]) - int(args["reserveBps"]) - int(args["operatorBps"])


def trailing_utilization(session: Session, node_ids: list[int]) -> dict[int, int]:
    """Coverage-weighted mean utilization (bps) of each node's newest TRAILING_EPOCHS
    attested epochs, from leaves verified against the attested root. A leaf whose
    utilization coverage is 0 says nothing (unknown, not idle) and weighs nothing; nodes
    without any known utilization are left out."""
    newest = session.scalar(select(func.max(EpochRow.epoch)))
    if newest is None or not node_ids:
        return {}
    weight = NodeMetricRow.utilization_coverage_bps
    rows = session.execute(
        select(
            NodeMetricRow.node_id,
            func.sum(NodeMetricRow.utilization_bps * weight),
            func.sum(weight),
        )
        .join(
            EpochRow,
            (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root),
        )
        .where(
            NodeMetricRow.node_id.in_(node_ids),
            NodeMetricRow.epoch > newest - TRAILING_EPOCHS,
            weight > 0,
        )
        .group_by(NodeMetricRow.node_id)
    )
    return {
        int(node_id): min(round(int(weighted) / int(total)), BPS)
        for node_id, weighted, total in rows
    }


def trailing_unknown_epochs(session: Session, node_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per node: (attested epochs among the newest TRAILING_EPOCHS, how many of them say
    nothing of its utilization: no verified leaf of the node, or one whose utilization
    coverage is 0). The epochs ``trailing_utilization`` leaves out, counted."""
    newest = session.scalar(select(func.max(EpochRow.epoch)))
    if newest is None or not node_ids:
        return {n: (0, 0) for n in node_ids}
    attested = session.scalar(select(func.count()).where(EpochRow.epoch > newest - TRAILING_EPOCHS))
    known = dict(
        session.execute(
            select(NodeMetricRow.node_id, func.count())
            .join(
                EpochRow,
                (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root),
            )
            .where(
                NodeMetricRow.node_id.in_(node_ids),
                NodeMetricRow.epoch > newest - TRAILING_EPOCHS,
                NodeMetricRow.utilization_coverage_bps > 0,
            )
            .group_by(NodeMetricRow.node_id)
        ).all()
    )
    total = int(attested or 0)
    return {n: (total, total - int(known.get(n, 0))) for n in node_ids}


def node_collateral(
    session: Session, node_ids: list[int], rule: MarkRule, as_of: int
) -> dict[int, NodeCollateral]:
    """Book and marked value of each indexed node at ``as_of`` (nodes or classes the index
    does not hold are left out)."""
    nodes = list(session.scalars(select(NodeRow).where(NodeRow.node_id.in_(node_ids))))
    classes = {
        c.class_id: c
        for c in session.scalars(
            select(GpuClassRow).where(GpuClassRow.class_id.in_({n.class_id for n in nodes}))
        )
    }
    prices = class_prices(session, classes, rule, as_of)
    utilization = trailing_utilization(session, [n.node_id for n in nodes])
    curve = deployed_curve(session)
    capital_share = deployed_capital_share(session)
    out = {}
    for n in nodes:
        cls = classes.get(n.class_id)
        if cls is None:
            continue
        book = F.collateral_value(
            curve,
            n.acquisition_cost,
            cls.residual_value_bps,
            cls.economic_life_months,
            n.acquired_at,
            as_of,
        )
        price = prices[n.class_id]
        util = utilization.get(n.node_id, DEFAULT_UTILIZATION_BPS)
        implied = None
        if price.enough and price.stats.vwap is not None:
            implied = market_implied_value(
                acquisition_cost=n.acquisition_cost,
                residual_value_bps=cls.residual_value_bps,
                economic_life_months=cls.economic_life_months,
                acquired_at=n.acquired_at,
                t=as_of,
                gpu_count=n.gpu_count,
                price_per_gpu_hour=price.stats.vwap,
                utilization_bps=util,
                capital_share_bps=capital_share,
            )
        out[n.node_id] = NodeCollateral(
            node_id=n.node_id,
            curve=curve,
            as_of=as_of,
            mark=mark(book, implied),
            price=price,
            utilization_bps=util,
            utilization_attested=n.node_id in utilization,
            remaining_life_seconds=remaining(n.acquired_at, cls.economic_life_months, as_of),
            capital_share_bps=capital_share,
        )
    return out
