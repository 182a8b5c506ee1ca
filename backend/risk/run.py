"""One entry point for the API, the CLI and the benchmark: scenarios over a fleet → JSON."""

from __future__ import annotations

from typing import Any

from backend.risk.engine import Params, project
from backend.risk.fleet import DEFAULT_CLASSES, Fleet
from backend.risk.report import projection_json
from backend.risk.scenarios import Scenario, ScenarioError


def run_scenarios(
    fleet: Fleet,
    scenarios: list[Scenario],
    params: Params,
    include_nodes: bool = True,
    include_paths: bool = False,
) -> list[dict[str, Any]]:
    """Every scenario's projection, summarised (raises FleetError/ScenarioError/
    EngineRangeError, all ValueErrors with a reason, on input the engine cannot take)."""
    check_classes(fleet, scenarios)
    shared: dict[object, Any] = {}  # scenario-independent parts, computed once
    return [
        projection_json(project(fleet, s, params, shared), include_nodes, include_paths)
        for s in scenarios
    ]


def check_classes(fleet: Fleet, scenarios: list[Scenario]) -> None:
    """A scenario's per-class prices must name a class the engine knows (a standard class or
    one in the fleet): a typo would otherwise run silently as the base case."""
    known = sorted(set(DEFAULT_CLASSES) | {str(c) for c in fleet.class_name})
    for s in scenarios:
        unknown = sorted(set(s.price_index_ppm) - set(known))
        if unknown:
            raise ScenarioError(
                f"scenario {s.name!r}: unknown GPU class {', '.join(map(repr, unknown))}; "
                f"known classes: {', '.join(known)}"
            )
