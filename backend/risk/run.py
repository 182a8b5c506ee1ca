"""One entry point for the API, the CLI and the benchmark: scenarios over a fleet → JSON."""

from __future__ import annotations

from typing import Any

from backend.risk.engine import Params, project
from backend.risk.fleet import Fleet
from backend.risk.report import projection_json
from backend.risk.scenarios import Scenario


def run_scenarios(
    fleet: Fleet,
    scenarios: list[Scenario],
    params: Params,
    include_nodes: bool = True,
    include_paths: bool = False,
) -> list[dict[str, Any]]:
    """Every scenario's projection, summarised (raises FleetError/ScenarioError/
    EngineRangeError, all ValueErrors with a reason, on input the engine cannot take)."""
    return [
        projection_json(project(fleet, s, params), include_nodes, include_paths) for s in scenarios
    ]
