"""Risk stress scenarios (``/api/v1/risk``): project pools through named or custom worlds.

The fleet comes from the chain index (``scope`` — every pool's node, or the platform —
or ``node_ids``: class, GPUs, cost, acquisition date and bond as indexed; life and
residual from the node's GPU class; the pool's loan, trailing attested utilization and
newest ask from backend/risk/indexed.py, and with ``collateral: "marked"`` its class's
market price) with ``overrides`` winning field by field, or
inline (``nodes``). The projection is pure computation (backend/risk): deterministic for
a given body and index, so a client that pins ``start_time`` gets the same answer every
time. Terms the body leaves out (split, covenant, curve, loan terms, epoch length) are the
chain's as indexed, the DSCR window the deployed settlement's (an immutable, read from the
chain once), else the deployment's defaults; the answer says which (``terms_source``).
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from sqlalchemy import select
from web3.exceptions import Web3Exception

from backend.app.deps import ChainProvider, MarkRuleDep, SessionDep
from backend.app.errors import ApiError
from backend.app.schemas import ErrorPublic
from backend.db.models import GpuClassRow, NodeRow
from backend.risk.fleet import Fleet, NodeInput
from backend.risk.indexed import (
    chain_terms,
    deployed_terms,
    indexed_overrides,
    scope_node_ids,
)
from backend.risk.report import scenario_info
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED
from backend.risk.schemas import (
    MICRO_USD_CONTEXT,
    NodeIn,
    ScenarioInfoPublic,
    ScenarioRunPublic,
    ScenarioRunRequest,
    run_body,
)
from backend.services.errors import ChainUnavailable, WrongChain
from backend.services.pricing.trades import MarkRule
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/risk", tags=["risk"])
INVALID = {422: {"model": ErrorPublic}}


@router.get("/scenarios")
def list_scenarios() -> list[ScenarioInfoPublic]:
    """The named scenarios and what each assumes."""
    return [ScenarioInfoPublic.model_validate(scenario_info(s)) for s in NAMED.values()]


def _indexed_fleet(
    body: ScenarioRunRequest, session: SessionDep, now: int, rule: MarkRule
) -> list[NodeInput]:
    if body.scope is not None:
        ids = scope_node_ids(session, body.scope)
        if not ids:
            raise ApiError(422, "NoNodesInScope", f"scope {body.scope!r}: no indexed nodes")
        try:
            body.check_size(len(ids))
        except ValueError as exc:
            raise ApiError(422, "ValidationFailed", f"scope {body.scope!r}: {exc}") from exc
    else:
        ids = list(dict.fromkeys(body.node_ids or []))
        if len(ids) != len(body.node_ids or []):
            raise ApiError(422, "ValidationFailed", "node_ids: a node appears twice")
    rows = {r.node_id: r for r in session.scalars(select(NodeRow).where(NodeRow.node_id.in_(ids)))}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ApiError(
            422,
            "NodeNotIndexed",
            f"node_ids: {missing[:20]} have not been indexed",
            missing=missing,
        )
    classes = {c.class_id: c for c in session.scalars(select(GpuClassRow))}
    overrides = {o.node_id: o for o in body.overrides}
    stray = sorted(set(overrides) - set(ids))
    if stray:
        raise ApiError(422, "ValidationFailed", f"overrides: nodes {stray[:20]} not in the fleet")
    derived = indexed_overrides(
        session,
        ids,
        now,
        loans_from_draw=body.loans_from_draw,
        mark_rule=rule if body.collateral == "marked" else None,
    )
    nodes = []
    for node_id in ids:
        row = rows[node_id]
        cls = classes.get(row.class_id)
        if cls is None:
            raise ApiError(
                422, "ClassNotIndexed", f"node {node_id}: GPU class {row.class_id} not indexed"
            )
        o = overrides.get(node_id)
        extra = {
            **derived[node_id],
            **(o.model_dump(exclude={"node_id"}, exclude_unset=True) if o else {}),
        }
        # Index rows and the (already validated) overrides carry prices in micro-USD.
        node = NodeIn.model_validate(
            dict(
                node_id=node_id,
                class_name=cls.name,
                gpu_count=row.gpu_count,
                acquisition_cost=row.acquisition_cost,
                acquired_at=row.acquired_at,
                economic_life_months=cls.economic_life_months,
                residual_value_bps=cls.residual_value_bps,
                bond=row.bonded,
                operator=row.operator,
                **extra,
            ),
            context=MICRO_USD_CONTEXT,
        )
        nodes.append(node.to_input())
    return nodes


def _deployed_terms(provider: ChainProvider) -> dict[str, int | str]:
    """The deployment's immutable terms from the chain (``deployed_terms``), or none when
    the chain cannot say (no manifest yet, the node down or another chain): the run then
    keeps the default and its ``terms_source`` says ``deploy_default``."""
    try:
        return deployed_terms(provider())
    except (ManifestError, ChainUnavailable, WrongChain, Web3Exception) as exc:
        log.warning("risk run: the deployed DSCR window is unknown (%s); using the default", exc)
        return {}


@router.post("/scenarios", responses=INVALID)
def run_scenarios_route(
    body: ScenarioRunRequest, session: SessionDep, rule: MarkRuleDep, request: Request
) -> ScenarioRunPublic:
    """Project the fleet through each scenario: DSCR/LTV paths, first covenant breach,
    first default and the loss waterfall, per node and aggregated (platform, class)."""
    start = body.start_time if body.start_time is not None else int(time.time()) // 3600 * 3600
    # The terms in force on the chain: as indexed, and the immutable ones as deployed.
    chain = {**chain_terms(session), **_deployed_terms(request.app.state.chain_provider)}
    try:
        inputs = (
            [n.to_input() for n in body.nodes]
            if body.nodes is not None
            else _indexed_fleet(body, session, start, rule)
        )
        fleet = Fleet.from_nodes(inputs, body.energy_costs())
        params = body.params(start, chain)
        results = run_scenarios(
            fleet, body.selected(), params, body.include_nodes, body.include_node_paths
        )
    except ValueError as exc:  # FleetError, ScenarioError, EngineRangeError: input it cannot take
        raise ApiError(422, "ScenarioInputInvalid", str(exc)) from exc
    return ScenarioRunPublic.model_validate(
        run_body(
            start,
            body.horizon_months,
            len(fleet),
            results,
            body.collateral,
            params,
            body.terms_source(chain),
        )
    )
