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
from sqlalchemy import Select, func, select

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
    NodeMetricPublic,
)
from backend.db.models import EpochRow, GpuClassRow, NodeMetricRow, NodeRow
from gpucap.attestation import JOULES_PER_WH, MILLI_GPU_HOURS_PER_GPU_HOUR

router = APIRouter(tags=["metrics"], route_class=CachedReadRoute)

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


@router.get("/fleet/metrics", responses={422: {"model": ErrorPublic}})
def fleet_metrics(
    session: SessionDep,
    epochs: Annotated[int, Query(ge=1, le=1000, description="the newest N epochs")] = 24,
) -> list[FleetEpochMetricsPublic]:
    """Per epoch (newest first, epochs with ingested leaves only) and per GPU class:
    attested nodes, mean utilization and uptime, delivered GPU-hours, energy."""
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
    rows = session.execute(
        select(
            NodeMetricRow.epoch,
            EpochRow.attested_at,
            NodeRow.class_id,
            GpuClassRow.name,
            func.count(),
            func.avg(NodeMetricRow.utilization_bps),
            func.avg(NodeMetricRow.uptime_bps),
            func.sum(NodeMetricRow.milli_gpu_hours),
            func.sum(NodeMetricRow.energy_joules),
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
    for epoch, attested_at, class_id, name, nodes, util, uptime, milli, energy in rows:
        milli_total[epoch] += int(milli)
        classes[epoch].append(
            FleetClassMetricsPublic(
                class_id=class_id,
                class_name=name,
                nodes=nodes,
                mean_utilization_bps=float(util),
                mean_uptime_bps=float(uptime),
                gpu_hours=int(milli) / MILLI_GPU_HOURS_PER_GPU_HOUR,
                energy_joules=int(energy),
                energy_wh=int(energy) // JOULES_PER_WH,
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
        out.append(summary)
    return out
