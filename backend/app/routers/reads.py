"""Read API (``/api/v1``): nodes, GPU classes, epochs, offers, reservations, price index.

Every answer comes from the chain index in the database (``backend/services/
indexer.py``), never from the node on the request path: reads stay fast when the
chain is slow or down, and ``GET /api/v1/indexer`` says how far behind they are.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.app.deps import SessionDep
from backend.app.errors import ApiError
from backend.app.params import IdPath, IdQuery, Limit, Offset, address_param
from backend.app.read_cache import CachedReadRoute
from backend.app.routers.pools import position_public
from backend.app.schemas import (
    EpochPublic,
    ErrorPublic,
    ExcludedTradesPublic,
    GpuClassPublic,
    HoldingPublic,
    IndexerStatusPublic,
    NodeDetailPublic,
    NodeJailPublic,
    NodePublic,
    OfferPublic,
    PortfolioPublic,
    PricePointPublic,
    PriceStatsPublic,
    ReservationPublic,
)
from backend.db.models import (
    BalanceRow,
    ChainEvent,
    EpochRow,
    GpuClassRow,
    IndexerState,
    NodeRow,
    OfferRow,
    PoolPositionRow,
    PoolRow,
    ReservationRow,
)
from backend.services.indexing.read_models import event_counts
from backend.services.pricing import trades
from backend.services.pricing.stats import PriceStats

# Every route here answers from the database alone: their GETs may share one cached
# rendering until the next commit (backend/app/read_cache.py).
router = APIRouter(tags=["reads"], route_class=CachedReadRoute)

NOT_FOUND = {404: {"model": ErrorPublic}}


def _address(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    return address_param(value, field)


@router.get("/gpu-classes")
def list_gpu_classes(session: SessionDep) -> list[GpuClassPublic]:
    """The GPU classes registered on NodeRegistry (reference power, throughput, life)."""
    rows = session.scalars(select(GpuClassRow).order_by(GpuClassRow.class_id))
    return [GpuClassPublic.model_validate(r) for r in rows]


@router.get("/nodes")
def list_nodes(
    session: SessionDep,
    operator: str | None = None,
    class_id: IdQuery = None,
    status: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[NodePublic]:
    """Indexed nodes by id, filtered by operator address, GPU class or status."""
    query = select(NodeRow).order_by(NodeRow.node_id).limit(limit).offset(offset)
    if (op := _address(operator, "operator")) is not None:
        query = query.where(NodeRow.operator == op)
    if class_id is not None:
        query = query.where(NodeRow.class_id == class_id)
    if status is not None:
        query = query.where(NodeRow.status == status)
    return [NodePublic.model_validate(r) for r in session.scalars(query)]


@router.get("/nodes/{node_id}", responses=NOT_FOUND)
def read_node(node_id: IdPath, session: SessionDep) -> NodeDetailPublic:
    """One indexed node, with why it is jailed while it is; 404 `NodeNotFound` if the index
    has not seen it."""
    row = session.get(NodeRow, node_id)
    if row is None:
        raise ApiError(404, "NodeNotFound", f"no node {node_id} has been indexed")
    node = NodeDetailPublic.model_validate(row)
    if row.status == "jailed":
        node.jail = _jail_of(session, node_id)
    return node


def _jail_of(session: Session, node_id: int) -> NodeJailPublic | None:
    """The node's newest NodeJailed event and, in the same transaction, ChallengeJail's
    evidence. Jailings are rare, so the node's events are picked out here rather than
    by a JSON query the two databases spell differently."""
    jailed = session.scalars(
        select(ChainEvent)
        .where(ChainEvent.contract == "NodeRegistry", ChainEvent.event == "NodeJailed")
        .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
    )
    event = next((e for e in jailed if int(e.args["nodeId"]) == node_id), None)
    if event is None:
        return None
    jail = NodeJailPublic(
        reason=event.args["reason"],
        jailer=event.args["jailer"],
        tx_hash=event.tx_hash,
        block_number=event.block_number,
    )
    evidence = session.scalars(
        select(ChainEvent).where(
            ChainEvent.tx_hash == event.tx_hash,
            ChainEvent.contract == "ChallengeJail",
            ChainEvent.event == "NodeJailedForChallenges",
        )
    ).all()
    for ev in evidence:
        if int(ev.args["nodeId"]) == node_id:
            jail.challenge_epochs = [int(e) for e in ev.args["epochs"]]
            jail.challenges_failed = [int(f) for f in ev.args["failed"]]
            jail.reporter = ev.args["reporter"]
    return jail


@router.get("/epochs")
def list_epochs(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> list[EpochPublic]:
    """Attested epochs, newest first."""
    query = select(EpochRow).order_by(EpochRow.epoch.desc()).limit(limit).offset(offset)
    return [EpochPublic.model_validate(r) for r in session.scalars(query)]


@router.get("/epochs/{epoch}", responses=NOT_FOUND)
def read_epoch(epoch: IdPath, session: SessionDep) -> EpochPublic:
    """One attested epoch (root, node count, totals); 404 `EpochNotAttested` before."""
    row = session.get(EpochRow, epoch)
    if row is None:
        raise ApiError(404, "EpochNotAttested", f"epoch {epoch} has not been attested (yet)")
    return EpochPublic.model_validate(row)


@router.get("/offers")
def list_offers(
    session: SessionDep,
    status: Literal["open", "cancelled"] | None = Query(None, description="open | cancelled"),
    node_id: IdQuery = None,
    class_id: IdQuery = None,
    window_start: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[OfferPublic]:
    """Indexed capacity offers by id, filtered by status, node, class or window."""
    query = select(OfferRow).order_by(OfferRow.offer_id).limit(limit).offset(offset)
    for column, value in (
        (OfferRow.status, status),
        (OfferRow.node_id, node_id),
        (OfferRow.class_id, class_id),
        (OfferRow.window_start, window_start),
    ):
        if value is not None:
            query = query.where(column == value)
    return [OfferPublic.model_validate(r) for r in session.scalars(query)]


@router.get("/offers/{offer_id}", responses=NOT_FOUND)
def read_offer(offer_id: IdPath, session: SessionDep) -> OfferPublic:
    """One indexed offer; 404 `OfferNotFound` if the index has not seen it."""
    row = session.get(OfferRow, offer_id)
    if row is None:
        raise ApiError(404, "OfferNotFound", f"no offer {offer_id} has been indexed")
    return OfferPublic.model_validate(row)


@router.get("/reservations")
def list_reservations(
    session: SessionDep,
    holder: str | None = None,
    node_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ReservationPublic]:
    """Indexed reservations (capacity bought for a window), by holder or node."""
    query = (
        select(ReservationRow).order_by(ReservationRow.reservation_id).limit(limit).offset(offset)
    )
    if (h := _address(holder, "holder")) is not None:
        query = query.where(ReservationRow.holder == h)
    if node_id is not None:
        query = query.where(ReservationRow.node_id == node_id)
    return [ReservationPublic.model_validate(r) for r in session.scalars(query)]


@router.get("/price-index")
def price_index(
    session: SessionDep,
    class_id: IdQuery = None,
    window_start: IdQuery = None,
    limit: Limit = 100,
) -> list[PricePointPublic]:
    """What GPU-hours traded at, per GPU class and delivery window (by class, newest window
    first): VWAP, last and time-weighted price of the primary sales, of the secondary
    market's fills and of both combined. Fills the index flagged as self-trades or wash
    trades count in no price; ``excluded`` says how many there were."""
    as_of = trades.indexed_time(session) or 0
    return [
        PricePointPublic(
            class_id=p.class_id,
            window_start=p.window_start,
            primary=_stats("primary", p.primary),
            secondary=_stats("secondary", p.secondary),
            combined=_stats("combined", p.combined),
            excluded=ExcludedTradesPublic(
                trades=p.excluded.trades,
                gpu_hours=p.excluded.gpu_hours,
                volume=p.excluded.volume,
            ),
            as_of=as_of,
        )
        for p in trades.price_points(
            session, as_of=as_of, class_id=class_id, window_start=window_start, limit=limit
        )
    ]


def _stats(source: str, s: PriceStats) -> PriceStatsPublic:
    return PriceStatsPublic(
        source=source,  # type: ignore[arg-type]
        trades=s.trades,
        gpu_hours=s.gpu_hours,
        volume=s.volume,
        vwap_per_gpu_hour=s.vwap,
        last_per_gpu_hour=s.last,
        last_at=s.last_at,
        first_at=s.first_at,
        twap_per_gpu_hour=s.twap,
        twap_until=s.twap_until,
    )


@router.get("/portfolio/{address}", responses={422: {"model": ErrorPublic}})
def portfolio(address: str, session: SessionDep) -> PortfolioPublic:
    """Stablecoin and capacity balances, reservations, operated nodes and pool positions
    of ``address``."""
    holder = _address(address, "address")
    assert holder is not None
    balances = session.scalars(
        select(BalanceRow).where(BalanceRow.holder == holder, BalanceRow.amount != 0)
    ).all()
    stablecoin = sum(b.amount for b in balances if b.asset == "stablecoin")
    capacity = sorted(
        (HoldingPublic.model_validate(b) for b in balances if b.asset == "capacity"),
        key=lambda h: (h.window_start or 0, h.class_id or 0),
    )
    reservations = session.scalars(
        select(ReservationRow)
        .where(ReservationRow.holder == holder)
        .order_by(ReservationRow.reservation_id)
    )
    nodes = session.scalars(
        select(NodeRow).where(NodeRow.operator == holder).order_by(NodeRow.node_id)
    )
    state = session.scalars(select(IndexerState).order_by(IndexerState.updated_at.desc())).first()
    positions = session.execute(
        select(PoolPositionRow, PoolRow)
        .join(PoolRow, PoolRow.address == PoolPositionRow.pool)
        .where(PoolPositionRow.holder == holder)
        .order_by(PoolRow.node_id)
    ).all()
    return PortfolioPublic(
        address=holder,
        stablecoin=stablecoin,
        capacity=capacity,
        reservations=[ReservationPublic.model_validate(r) for r in reservations],
        nodes=[NodePublic.model_validate(n) for n in nodes],
        pools=[position_public(session, pool, position) for position, pool in positions],
        as_of_block=state.next_block - 1 if state else 0,
    )


@router.get("/indexer", responses={503: {"model": ErrorPublic}})
def indexer_status(session: SessionDep) -> IndexerStatusPublic:
    """How far the index (and so every read above) is behind the chain."""
    state = _only_state(session)
    return IndexerStatusPublic(
        chain_id=state.chain_id,
        deployment_block=state.deployment_block,
        next_block=state.next_block,
        head_block=state.head_block,
        lag_blocks=max(0, state.head_block - (state.next_block - 1)),
        reorgs=state.reorgs,
        resets=state.resets,
        updated_at=state.updated_at,
        events=event_counts(session),
    )


def _only_state(session: Session) -> IndexerState:
    state = session.scalars(select(IndexerState).order_by(IndexerState.updated_at.desc())).first()
    if state is None:
        raise ApiError(503, "IndexerNotStarted", "the chain indexer has not run yet")
    return state
