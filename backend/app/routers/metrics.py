"""Per-node metrics history and fleet aggregates (``/api/v1``), from attested leaves.

The rows are the leaves the oracle published for each attested epoch, each one
verified against the root the OracleHub accepted before the indexer stored it
(backend/services/indexing/leaves.py). Reads join them with the epoch's current root, so a
leaf of an epoch a reorg removed or changed is never served. Database only on the
request path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Select, case, func, select

from backend.app.deps import SessionDep
from backend.app.errors import ApiError
from backend.app.params import INT64_MAX, IdPath
from backend.app.read_cache import CachedReadRoute
from backend.app.schemas import (
    ErrorPublic,
    FleetClassMetricsPublic,
    FleetEpochMetricsPublic,
    NodeLeafProofPublic,
    NodeLeafPublic,
    NodeLoadPublic,
    NodeMetricPublic,
    WindowLoadPublic,
)
from backend.db.models import (
    ChainEvent,
    EpochRow,
    GpuClassRow,
    IndexerState,
    NodeMetricRow,
    NodeRow,
    ReservationRow,
    SaleRow,
)
from backend.services.pricing.trades import indexed_time
from gpucap.attestation import JOULES_PER_WH, MILLI_GPU_HOURS_PER_GPU_HOUR

router = APIRouter(tags=["metrics"], route_class=CachedReadRoute)

BPS = 10_000
EpochQuery = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
ERRORS = {404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}}


def _attested() -> Select[tuple[NodeMetricRow, EpochRow]]:
    """Stored leaves whose epoch is still attested with the root they were verified against."""
    return select(NodeMetricRow, EpochRow).join(
        EpochRow, (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root)
    )


def _require_node(session: SessionDep, node_id: int) -> NodeRow:
    node = session.get(NodeRow, node_id)
    if node is None:
        raise ApiError(404, "NodeNotFound", f"no node {node_id} has been indexed")
    return node


def _known_efficiency(milli_gpu_hours: int, energy_joules: int) -> float | None:
    """GPU-hours per kWh of nodes whose energy is known (both sums over those nodes only)."""
    return milli_gpu_hours * JOULES_PER_WH / energy_joules if energy_joules > 0 else None


def energy_efficiency(
    milli_gpu_hours: int, energy_joules: int, energy_coverage_bps: int
) -> float | None:
    """Delivered GPU-hours per kWh: (milli-GPU-hours / 1000) / (J / 3.6·10⁶); None when
    the energy is unknown (coverage 0) or zero."""
    if energy_coverage_bps <= 0 or energy_joules <= 0:
        return None
    return milli_gpu_hours * JOULES_PER_WH / energy_joules


@router.get("/nodes/{node_id}/metrics", responses=ERRORS)
def node_metrics(
    node_id: IdPath,
    session: SessionDep,
    from_epoch: EpochQuery = None,
    to_epoch: EpochQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
) -> list[NodeMetricPublic]:
    """The node's attested figures per epoch, newest first, within [from_epoch, to_epoch].
    Page back with ``to_epoch`` = the oldest epoch seen - 1."""
    if from_epoch is not None and to_epoch is not None and from_epoch > to_epoch:
        raise ApiError(
            422, "InvalidEpochRange", f"from_epoch {from_epoch} is after to_epoch {to_epoch}"
        )
    _require_node(session, node_id)
    query = (
        _attested()
        .where(NodeMetricRow.node_id == node_id)
        .order_by(NodeMetricRow.epoch.desc())
        .limit(limit)
    )
    if from_epoch is not None:
        query = query.where(NodeMetricRow.epoch >= from_epoch)
    if to_epoch is not None:
        query = query.where(NodeMetricRow.epoch <= to_epoch)
    return [
        NodeMetricPublic(
            epoch=m.epoch,
            uptime_bps=m.uptime_bps,
            utilization_bps=m.utilization_bps,
            sample_coverage_bps=m.sample_coverage_bps,
            utilization_coverage_bps=m.utilization_coverage_bps,
            energy_coverage_bps=m.energy_coverage_bps,
            challenges_passed=m.challenges_passed,
            challenges_failed=m.challenges_failed,
            energy_joules=m.energy_joules,
            energy_wh=m.energy_joules // JOULES_PER_WH,
            milli_gpu_hours=m.milli_gpu_hours,
            cum_milli_gpu_hours=m.cum_milli_gpu_hours,
            cum_energy_joules=m.cum_energy_joules,
            cum_busy_gpu_seconds=m.cum_busy_gpu_seconds,
            gpu_hours=m.milli_gpu_hours / MILLI_GPU_HOURS_PER_GPU_HOUR,
            energy_efficiency=energy_efficiency(
                m.milli_gpu_hours, m.energy_joules, m.energy_coverage_bps
            ),
        )
        for m, _ in session.execute(query).all()
    ]


@router.get("/nodes/{node_id}/leaves/{epoch}", responses=ERRORS)
def node_leaf(node_id: IdPath, epoch: IdPath, session: SessionDep) -> NodeLeafProofPublic:
    """The node's attested leaf for ``epoch`` with its Merkle proof and the on-chain root."""
    _require_node(session, node_id)
    attested = session.get(EpochRow, epoch)
    if attested is None:
        raise ApiError(404, "EpochNotAttested", f"epoch {epoch} has not been attested (yet)")
    found = session.execute(
        _attested().where(NodeMetricRow.node_id == node_id, NodeMetricRow.epoch == epoch)
    ).first()
    if found is None:
        raise ApiError(
            404,
            "LeafNotFound",
            f"no verified leaf of node {node_id} in epoch {epoch}: the oracle excluded the "
            "node, or its published leaves are not ingested (yet)",
        )
    m, e = found
    if m.cum_milli_gpu_hours is None or m.cum_energy_joules is None:
        raise ApiError(
            404,
            "LeafNotFound",
            f"the stored leaf of node {node_id} in epoch {epoch} is a v1 leaf (ingested"
            " before leaf v2): it has no v2 encoding to prove",
        )
    return NodeLeafProofPublic(
        leaf=NodeLeafPublic(
            node_id=m.node_id,
            epoch=m.epoch,
            uptime_bps=m.uptime_bps,
            utilization_bps=m.utilization_bps,
            sample_coverage_bps=m.sample_coverage_bps,
            utilization_coverage_bps=m.utilization_coverage_bps,
            energy_coverage_bps=m.energy_coverage_bps,
            challenges_passed=m.challenges_passed,
            challenges_failed=m.challenges_failed,
            energy_joules=m.energy_joules,
            milli_gpu_hours=m.milli_gpu_hours,
            cum_milli_gpu_hours=m.cum_milli_gpu_hours,
            cum_energy_joules=m.cum_energy_joules,
            cum_busy_gpu_seconds=m.cum_busy_gpu_seconds or 0,
        ),
        leaf_hash=m.leaf_hash,
        proof=list(m.proof),
        root=e.root,
        attestation_tx_hash=e.tx_hash,
        attestation_block=e.block_number,
    )


def _weighted(weighted_sum: int | None, weights: int | None) -> float | None:
    """A coverage-weighted mean; None when nothing was observed (every weight 0)."""
    if not weights:
        return None
    return int(weighted_sum or 0) / int(weights)


@router.get("/fleet/metrics", responses={422: {"model": ErrorPublic}})
def fleet_metrics(
    session: SessionDep,
    epochs: Annotated[int, Query(ge=1, le=1000, description="the newest N epochs")] = 24,
) -> list[FleetEpochMetricsPublic]:
    """Per epoch (newest first, epochs with ingested leaves only) and per GPU class:
    attested nodes, mean utilization and uptime weighted by their coverage (a node whose
    figure has coverage 0 is unknown, not idle: it weighs nothing and is counted in
    ``*_unknown_nodes``), delivered GPU-hours, energy."""
    newest = (
        select(NodeMetricRow.epoch)
        .join(
            EpochRow,
            (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root),
        )
        .distinct()
        .order_by(NodeMetricRow.epoch.desc())
        .limit(epochs)
    ).subquery()
    util_weight = NodeMetricRow.utilization_coverage_bps
    uptime_weight = NodeMetricRow.sample_coverage_bps
    energy_known = NodeMetricRow.energy_coverage_bps > 0
    rows = session.execute(
        select(
            NodeMetricRow.epoch,
            EpochRow.attested_at,
            NodeRow.class_id,
            GpuClassRow.name,
            func.count(),
            func.sum(NodeMetricRow.utilization_bps * util_weight),
            func.sum(util_weight),
            func.sum(case((util_weight > 0, 0), else_=1)),
            func.sum(NodeMetricRow.uptime_bps * uptime_weight),
            func.sum(uptime_weight),
            func.sum(case((uptime_weight > 0, 0), else_=1)),
            func.sum(NodeMetricRow.milli_gpu_hours),
            func.sum(NodeMetricRow.energy_joules),
            # Efficiency pairs GPU-hours with energy of the same nodes: those whose energy
            # is known (an unknown energy is published as 0 J with coverage 0).
            func.sum(case((energy_known, NodeMetricRow.milli_gpu_hours), else_=0)),
            func.sum(case((energy_known, NodeMetricRow.energy_joules), else_=0)),
            func.sum(case((energy_known, 0), else_=1)),
        )
        .join(
            EpochRow,
            (EpochRow.epoch == NodeMetricRow.epoch) & (EpochRow.root == NodeMetricRow.root),
        )
        .join(NodeRow, NodeRow.node_id == NodeMetricRow.node_id)
        .outerjoin(GpuClassRow, GpuClassRow.class_id == NodeRow.class_id)
        .where(NodeMetricRow.epoch.in_(select(newest.c.epoch)))
        .group_by(NodeMetricRow.epoch, EpochRow.attested_at, NodeRow.class_id, GpuClassRow.name)
        .order_by(NodeMetricRow.epoch.desc(), NodeRow.class_id)
    ).all()
    by_epoch: dict[int, FleetEpochMetricsPublic] = {}
    classes: dict[int, list[FleetClassMetricsPublic]] = defaultdict(list)
    milli_total: dict[int, int] = defaultdict(int)  # summed exactly, divided once
    known_total: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # milli, J, unknown
    for row in rows:
        epoch, attested_at, class_id, name, nodes = row[:5]
        util, util_cover, util_unknown, uptime, uptime_cover, uptime_unknown = row[5:11]
        milli, energy, known_milli, known_energy, energy_unknown = row[11:]
        milli_total[epoch] += int(milli)
        known = known_total[epoch]
        known[0] += int(known_milli)
        known[1] += int(known_energy)
        known[2] += int(energy_unknown)
        classes[epoch].append(
            FleetClassMetricsPublic(
                class_id=class_id,
                class_name=name,
                nodes=nodes,
                mean_utilization_bps=_weighted(util, util_cover),
                utilization_unknown_nodes=int(util_unknown),
                mean_uptime_bps=_weighted(uptime, uptime_cover),
                uptime_unknown_nodes=int(uptime_unknown),
                gpu_hours=int(milli) / MILLI_GPU_HOURS_PER_GPU_HOUR,
                energy_joules=int(energy),
                energy_wh=int(energy) // JOULES_PER_WH,
                energy_unknown_nodes=int(energy_unknown),
                energy_efficiency=_known_efficiency(int(known_milli), int(known_energy)),
            )
        )
        by_epoch.setdefault(
            epoch,
            FleetEpochMetricsPublic(
                epoch=epoch,
                attested_at=attested_at,
                nodes=0,
                gpu_hours=0,
                energy_joules=0,
                energy_wh=0,
                classes=[],
            ),
        )
    out = []
    for epoch, summary in by_epoch.items():
        summary.classes = classes[epoch]
        summary.nodes = sum(c.nodes for c in summary.classes)
        summary.gpu_hours = milli_total[epoch] / MILLI_GPU_HOURS_PER_GPU_HOUR
        summary.energy_joules = sum(c.energy_joules for c in summary.classes)
        summary.energy_wh = summary.energy_joules // JOULES_PER_WH
        known_milli, known_energy, energy_unknown = known_total[epoch]
        summary.energy_unknown_nodes = energy_unknown
        summary.energy_efficiency = _known_efficiency(known_milli, known_energy)
        out.append(summary)
    return out


# -- load factor as billed, per delivery window ------------------------------------------

LOAD_ERRORS = {
    404: {"model": ErrorPublic, "description": "No such node in the index"},
    422: {"model": ErrorPublic, "description": "Bad query parameter"},
    503: {
        "model": ErrorPublic,
        "description": "The indexer has not run yet (no indexed block, or the deployment's "
        "window and epoch schedule not read yet)",
    },
}
SECONDS_PER_HOUR = 3_600
MILLI = 1_000


def window_epochs(
    window_start: int, window_seconds: int, genesis: int, length: int
) -> tuple[int, int]:
    """(first, last) OracleHub epochs that count toward the window, as
    CapacityToken._windowEpochs: those ending in (start, start + window]; last < first
    for a window wholly before the hub's genesis."""
    end = window_start + window_seconds
    first = (window_start - genesis) // length + 1 if window_start >= genesis else 1
    last = (end - genesis) // length if end >= genesis else 0
    return first, last


def _node_lifetime(session: SessionDep, node: NodeRow) -> tuple[int, int | None]:
    """(registered_at, exited_at) unix times, from the node's NodeRegistered and NodeExited
    events."""
    registered_at: int | None = None
    exited_at: int | None = None
    events = session.execute(
        select(ChainEvent.event, ChainEvent.block_timestamp, ChainEvent.args).where(
            ChainEvent.contract == "NodeRegistry",
            ChainEvent.event.in_(("NodeRegistered", "NodeExited")),
            ChainEvent.block_number >= node.registered_block,
        )
    )
    for name, timestamp, args in events:
        if int(args["nodeId"]) != node.node_id:
            continue
        if name == "NodeRegistered":
            registered_at = int(timestamp)
        else:
            exited_at = int(timestamp)
    if registered_at is None:  # the node row comes from that event: only a broken index
        raise ApiError(503, "IndexInconsistent", f"node {node.node_id} has no NodeRegistered event")
    return registered_at, exited_at


@router.get("/nodes/{node_id}/load", responses=LOAD_ERRORS)
def node_load(
    node_id: IdPath,
    session: SessionDep,
    windows: Annotated[
        int,
        Query(ge=1, le=100, description="how many delivery windows, newest first"),
    ] = 12,
) -> NodeLoadPublic:
    """The node's load factor as billed, per CapacityToken delivery window: GPU-hours sold
    (less those refunded for a shortfall) over the GPU-hours the node could deliver in the
    window (its GPU count x the hours of the window it was registered: a window it joined
    or exited in counts only its registered part), beside the GPU-hours the quorum attests
    it delivered there (the verified leaves of the epochs counting toward the window) and
    how well those epochs were observed.

    The newest window listed is the later of the window running at ``as_of`` (the newest
    indexed block's time) and the newest window the node sold hours of; then
    ``windows - 1`` before it, none ending before the node registered."""
    node = _require_node(session, node_id)
    state = session.scalars(select(IndexerState).order_by(IndexerState.updated_at.desc())).first()
    as_of = indexed_time(session)
    if state is None or as_of is None:
        raise ApiError(503, "IndexerNotStarted", "the chain indexer has not run yet")
    window = state.window_seconds
    genesis, length = state.epoch_genesis_timestamp, state.epoch_length_seconds
    if window is None or genesis is None or length is None:
        raise ApiError(
            503, "ScheduleNotIndexed", "the indexer has not read the window and epoch schedule yet"
        )
    registered_at, exited_at = _node_lifetime(session, node)
    newest_sold = session.scalar(
        select(func.max(SaleRow.window_start)).where(SaleRow.node_id == node_id)
    )
    newest = max(as_of // window * window, newest_sold or 0)
    starts = [
        start
        for start in (newest - k * window for k in range(windows))
        if start >= 0 and start + window > registered_at
    ]
    if not starts:
        return _load_public(node, window, as_of, registered_at, exited_at, [])
    oldest = starts[-1]

    sold = dict(
        session.execute(
            select(SaleRow.window_start, func.sum(SaleRow.amount))
            .where(SaleRow.node_id == node_id, SaleRow.window_start.between(oldest, newest))
            .group_by(SaleRow.window_start)
        ).all()
    )
    reserved = {
        start: (int(amount), int(shortfall or 0))
        for start, amount, shortfall in session.execute(
            select(
                ReservationRow.window_start,
                func.sum(ReservationRow.amount),
                func.sum(ReservationRow.shortfall_milli_gpu_hours),
            )
            .where(
                ReservationRow.node_id == node_id,
                ReservationRow.window_start.between(oldest, newest),
            )
            .group_by(ReservationRow.window_start)
        )
    }
    # The window an epoch counts toward: the one its end (genesis + epoch x length) lies in,
    # (start, start + window].
    first_epoch = window_epochs(oldest, window, genesis, length)[0]
    last_epoch = window_epochs(newest, window, genesis, length)[1]
    attested_start = (genesis + EpochRow.epoch * length - 1) // window * window
    attested = dict(
        session.execute(
            select(attested_start, func.count())
            .where(EpochRow.epoch.between(first_epoch, last_epoch))
            .group_by(attested_start)
        ).all()
    )
    leaf_start = (genesis + NodeMetricRow.epoch * length - 1) // window * window
    covered = NodeMetricRow.sample_coverage_bps > 0
    leaves = {
        int(start): (int(count), int(known), int(milli), int(coverage))
        for start, count, known, milli, coverage in session.execute(
            _attested()
            .with_only_columns(
                leaf_start,
                func.count(),
                func.sum(case((covered, 1), else_=0)),
                func.sum(NodeMetricRow.milli_gpu_hours),
                func.sum(NodeMetricRow.sample_coverage_bps),
            )
            .where(
                NodeMetricRow.node_id == node_id,
                NodeMetricRow.epoch.between(first_epoch, last_epoch),
            )
            .group_by(leaf_start)
        )
    }
    out = []
    for start in starts:
        end = start + window
        first, last = window_epochs(start, window, genesis, length)
        registered = max(
            0, min(end, exited_at if exited_at is not None else end) - max(start, registered_at)
        )
        available = node.gpu_count * registered * MILLI // SECONDS_PER_HOUR
        sold_hours = int(sold.get(start, 0))
        reserved_hours, refunded = reserved.get(start, (0, 0))
        billed = sold_hours * MILLI - refunded
        n_attested = int(attested.get(start, 0))
        n_leaves, known, delivered, coverage = leaves.get(start, (0, 0, 0, 0))
        out.append(
            WindowLoadPublic(
                window_start=start,
                window_end=end,
                token_id=str((node.class_id << 64) | start),
                status="upcoming" if as_of < start else "open" if as_of < end else "ended",
                sold_gpu_hours=sold_hours,
                reserved_gpu_hours=reserved_hours,
                refunded_milli_gpu_hours=refunded,
                billed_milli_gpu_hours=billed,
                registered_seconds=registered,
                available_milli_gpu_hours=available,
                load_factor_bps=billed * BPS // available if available > 0 else None,
                first_epoch=first,
                last_epoch=last,
                attested_epochs=n_attested,
                leaves=n_leaves,
                unknown_epochs=n_attested - known,
                delivered_milli_gpu_hours=delivered,
                sample_coverage_bps=coverage // n_attested if n_attested else None,
            )
        )
    return _load_public(node, window, as_of, registered_at, exited_at, out)


def _load_public(
    node: NodeRow,
    window: int,
    as_of: int,
    registered_at: int,
    exited_at: int | None,
    windows: list[WindowLoadPublic],
) -> NodeLoadPublic:
    return NodeLoadPublic(
        node_id=node.node_id,
        gpu_count=node.gpu_count,
        window_seconds=window,
        as_of=as_of,
        registered_at=registered_at,
        exited_at=exited_at,
        windows=windows,
    )
