"""The risk API through a real HTTP server: a node registered on anvil is indexed by the
worker, and POST /api/v1/risk/scenarios projects it from the index — the served answer is
the engine's answer on the indexed facts, to the unit."""

from __future__ import annotations

from brownie import chain

from backend.risk import terms as T
from backend.risk.engine import Params
from backend.risk.fleet import DEFAULT_CLASSES, Debt, EnergyCosts, Fleet, NodeInput
from backend.risk.run import run_scenarios
from backend.risk.scenarios import NAMED
from backend.risk.schemas import RUN_TERMS, ScenarioRunPublic, param_name
from scripts.deploy import DeployConfig
from tests.backend.backend_helpers import Stack, wait_for

USD = 10**6
H100 = "H100-SXM-80GB"
START = 1_767_225_600  # pinned: the answer is a function of the body alone


def test_scenarios_listed(stack: Stack) -> None:
    resp = stack.get("/api/v1/risk/scenarios")
    assert resp.status_code == 200
    listed = {s["name"]: s for s in resp.json()}
    assert list(listed) == list(NAMED)
    assert listed["deflation_40"]["annual_price_decline_bps"] == 4_000
    assert listed["slow_productivity"]["tenor_months"] == 120


def test_indexed_node_projected_as_the_engine_does(stack: Stack, admin, operator) -> None:
    s = stack.deployment.system
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    s.stablecoin.drip(operator, {"from": operator})
    acquired = chain[-1].timestamp - 90 * 86_400
    node_id = s.registry.registerNode(
        s.class_ids[H100],
        8,
        b"us-west".ljust(32, b"\0"),
        240_000 * USD,
        acquired,
        "0x" + "5e" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator})
    s.registry.depositBond(node_id, 9_000 * USD, {"from": operator})
    wait_for(
        lambda: (
            (r := stack.get(f"/api/v1/nodes/{node_id}")).status_code == 200
            and r.json()["bonded"] == 9_000 * USD
        ),
        30,
        "the node and its bond to be indexed",
    )

    debt = {
        "drawn_assets": "170000",  # USD, a decimal string
        "tenor_months": 48,
        "rate_bps": 1_100,
        "months_since_draw": 3,
        "staked_bps": 6_000,
    }
    body = {
        "node_ids": [node_id],
        "overrides": [
            {
                "node_id": node_id,
                "debt": debt,
                "insurance": "1000.00",
                "trailing_revenue": "5600",
                "utilization_bps": 6_500,
            }
        ],
        "scenarios": ["base", "deflation_40", "refuted_productivity"],
        "start_time": START,
        "horizon_months": 48,
        "include_node_paths": True,
    }
    resp = stack.post("/api/v1/risk/scenarios", json=body)
    assert resp.status_code == 200, resp.text
    served = resp.json()

    h100 = DEFAULT_CLASSES[H100]
    fleet = Fleet.from_nodes(
        [
            NodeInput(
                node_id=node_id,
                class_name=H100,
                gpu_count=8,
                acquisition_cost=240_000 * USD,
                acquired_at=acquired,
                economic_life_months=h100.economic_life_months,
                residual_value_bps=h100.residual_value_bps,
                debt=Debt(**{**debt, "drawn_assets": 170_000 * USD}),
                bond=9_000 * USD,
                insurance=1_000 * USD,
                trailing_revenue=5_600 * USD,
                utilization_bps=6_500,
                operator=operator.address,
            )
        ]
    )
    scenarios = [NAMED[n] for n in body["scenarios"]]
    # The deployed terms, as indexed (the hub's epoch from a pool when one exists), and the
    # window as deployed: the stack's deployment is DeployConfig.for_tests()'s (short counts).
    deployed = DeployConfig.for_tests()
    params = Params(
        start_time=START,
        horizon_months=48,
        epoch_seconds=served["terms"]["epoch_seconds"],
        dscr_window_epochs=deployed.settlement_dscr_window_epochs,
        default_dscr_epochs=deployed.loan_default_dscr_epochs,
        cure_epochs=deployed.loan_cure_epochs,
    )
    assert served["terms"] == {name: getattr(params, param_name(name)) for name in RUN_TERMS}
    local = run_scenarios(fleet, scenarios, params, include_paths=True)
    expected = ScenarioRunPublic.model_validate(
        {
            "start_time": START,
            "horizon_months": 48,
            "node_count": 1,
            "terms": served["terms"],
            "terms_source": served["terms_source"],
            "results": local,
        }
    ).model_dump(mode="json")
    assert served == expected
    base, deflation = (r["nodes"][0] for r in served["results"][:2])
    assert len(base["paths"]["dscr_bps"]) == 48 or base["first_default_month"]
    # prices falling 40% a year break this pool's DSCR covenant, and the pledged half of
    # the bond goes first
    assert deflation["first_dscr_breach_month"] is not None
    assert deflation["first_default_month"] is not None
    assert deflation["waterfall"]["operator_bond"] == 4_500 * USD
    assert sum(deflation["waterfall"].values()) == deflation["total_loss"]


def test_inline_fleet_with_a_custom_scenario(stack: Stack) -> None:
    node = {
        "node_id": 7,
        "class_name": "A100-SXM-80GB",
        "gpu_count": 8,
        "acquisition_cost": "120000",
        "acquired_at": START - 86_400,
        "bond": "4000",
        "debt": {"drawn_assets": "80000", "tenor_months": 36, "rate_bps": 900},
    }
    custom = {
        "name": "a100-crash",
        "price_index_ppm": {"A100-SXM-80GB": [300_000] * 24},
        "economic_life_months": 18,
    }
    resp = stack.post(
        "/api/v1/risk/scenarios",
        json={
            "nodes": [node],
            "scenarios": [],
            "custom": [custom],
            "start_time": START,
            "horizon_months": 24,
        },
    )
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["results"]
    assert result["scenario"]["name"] == "a100-crash"
    assert result["platform"]["nodes_defaulting"] == 1
    assert result["by_class"]["A100-SXM-80GB"]["total_loss"] == result["platform"]["total_loss"]


def test_energy_terms_per_operator_and_node(stack: Stack) -> None:
    """An operator's declared power price (USD string) and a node's own PUE reach the
    engine: the served operator margins are the engine's with the same terms."""
    nodes = [
        {
            "node_id": i,
            "class_name": H100,
            "gpu_count": 8,
            "acquisition_cost": "240000",
            "acquired_at": START,
            "operator": "op-a",
            "utilization_bps": 8_000,
            **extra,
        }
        for i, extra in ((1, {}), (2, {"pue_bps": 15_000}))
    ]
    body = {
        "nodes": nodes,
        "operator_costs": {"op-a": {"electricity_price_per_kwh": "0.25"}},
        "scenarios": ["base"],
        "start_time": START,
        "horizon_months": 3,
        "include_node_paths": True,
    }
    resp = stack.post("/api/v1/risk/scenarios", json=body)
    assert resp.status_code == 200, resp.text
    served = [n["paths"]["operator_margin"] for n in resp.json()["results"][0]["nodes"]]
    fleet = Fleet.from_nodes(
        [
            NodeInput(
                node_id=i,
                class_name=H100,
                gpu_count=8,
                acquisition_cost=240_000 * USD,
                acquired_at=START,
                economic_life_months=DEFAULT_CLASSES[H100].economic_life_months,
                residual_value_bps=DEFAULT_CLASSES[H100].residual_value_bps,
                operator="op-a",
                utilization_bps=8_000,
                pue_bps=pue,
            )
            for i, pue in ((1, None), (2, 15_000))
        ],
        {"op-a": EnergyCosts(electricity_price_per_kwh=250_000)},
    )
    local = run_scenarios(
        fleet, [NAMED["base"]], Params(start_time=START, horizon_months=3), include_paths=True
    )
    assert served == [n["paths"]["operator_margin"] for n in local[0]["nodes"]]
    assert served[0][0] > served[1][0]  # the worse PUE pays more for the same hours


def test_bad_requests_are_422_with_a_reason(stack: Stack) -> None:
    node = {
        "node_id": 1,
        "class_name": H100,
        "gpu_count": 8,
        "acquisition_cost": "10",
        "acquired_at": START,
    }
    cases = [
        ({"node_ids": [1], "nodes": [node]}, "ValidationFailed", "exactly one of scope"),
        ({"scope": "pools", "node_ids": [1]}, "ValidationFailed", "exactly one of scope"),
        ({"scope": "everyone"}, "ValidationFailed", "scope"),
        ({"node_ids": [2**62]}, "NodeNotIndexed", "have not been indexed"),
        ({"nodes": [node], "scenarios": ["boom"]}, "ValidationFailed", "unknown scenarios"),
        ({"nodes": [dict(node, class_name="X9")]}, "ScenarioInputInvalid", "not a standard"),
        ({"nodes": [node, node]}, "ScenarioInputInvalid", "appears twice"),
        ({"nodes": [dict(node, gpu_count=0)]}, "ValidationFailed", "nodes.0.gpu_count"),
        ({"nodes": [node], "horizon_months": 601}, "ValidationFailed", "horizon_months"),
        (
            {"nodes": [node], "custom": [{"name": "short", "price_index_ppm": {H100: [1]}}]},
            "ScenarioInputInvalid",
            "has 1 months",
        ),
        (
            {"nodes": [node], "protocol_fee_bps": 2_000, "operator_bps": 8_000},
            "ValidationFailed",
            "protocol_fee_bps + reserve_bps + operator_bps = 10300 exceeds 10000",
        ),
        (
            {"nodes": [node], "operator_costs": {"op": {"electricity_price_per_kwh": 0.1}}},
            "ValidationFailed",
            "got the bare number 0.1",
        ),
        ({"nodes": [dict(node, pue_bps=9_000)]}, "ValidationFailed", "nodes.0.pue_bps"),
        ({"nodes": [node], "curve": "sum_of_years"}, "ValidationFailed", "curve"),
        # A price is a decimal string in USD: a bare number (2.0 read as 2 micro-USD) is refused.
        (
            {"nodes": [dict(node, price_per_gpu_hour=2.0)]},
            "ValidationFailed",
            'price_per_gpu_hour: Value error, a price is a decimal string in USD, e.g. "2.00"; '
            "got the bare number 2.0",
        ),
        (
            {"nodes": [dict(node, price_per_gpu_hour="2.0000001")]},
            "ValidationFailed",
            "at most 6 decimals",
        ),
        # So is an amount of money: 240000 read as micro-USD would be a 0.24 USD GPU.
        (
            {"nodes": [dict(node, acquisition_cost=240_000)]},
            "ValidationFailed",
            "acquisition_cost: Value error, an amount of money is a decimal string in USD, e.g. "
            '"240000.00"; got the bare number 240000',
        ),
        (
            {"nodes": [dict(node, debt={"drawn_assets": 5, "tenor_months": 3, "rate_bps": 0})]},
            "ValidationFailed",
            "nodes.0.debt.drawn_assets",
        ),
        ({"nodes": [dict(node, bond="1.0000001")]}, "ValidationFailed", "at most 6 decimals"),
        # A typo in a class of a scenario's prices is an error naming the known classes.
        (
            {"nodes": [node], "custom": [{"name": "typo", "price_index_ppm": {"H1OO": [1] * 60}}]},
            "ScenarioInputInvalid",
            "unknown GPU class 'H1OO'; known classes: A100-SXM-80GB, H100-SXM-80GB, L40S-48GB",
        ),
    ]
    for body, code, reason in cases:
        resp = stack.post("/api/v1/risk/scenarios", json={"start_time": START, **body})
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["code"] == code, (body, resp.text)
        assert reason in resp.json()["reason"], (body, resp.text)


def test_run_takes_the_chains_terms_where_the_request_leaves_them(stack: Stack, admin) -> None:
    """The admin changes the split, the covenant (and curve) and the loan terms on the
    chain; once indexed, a run that does not name them uses them (terms_source "chain"),
    a term the request names wins ("request"), and the answer is the engine's with
    exactly those terms. The deployment's terms are put back after."""
    s = stack.deployment.system
    node = {
        "node_id": 3,
        "class_name": H100,
        "gpu_count": 8,
        "acquisition_cost": "240000",
        "acquired_at": START - 86_400,
        "bond": "8000",
        "utilization_bps": 6_000,
        "debt": {"drawn_assets": "160000", "tenor_months": 36, "rate_bps": 1_100},
    }
    body = {"nodes": [node], "scenarios": ["deflation_40"], "start_time": START}
    before = stack.post("/api/v1/risk/scenarios", json=body)
    assert before.status_code == 200, before.text
    assert before.json()["terms"]["operator_bps"] == 3_000
    assert before.json()["terms_source"]["operator_bps"] == "chain"  # the deploy's SplitSet
    # The DSCR window (an immutable, no event) is the deployed settlement's, read from the
    # chain: the tests' deployment has 24 epochs, not the production default of 720.
    window = int(s.settlement.dscrWindowEpochs())
    assert window == 24 != T.DSCR_WINDOW_EPOCHS
    assert before.json()["terms"]["dscr_window_epochs"] == window
    assert before.json()["terms_source"]["dscr_window_epochs"] == "chain"
    deployed_loans = tuple(s.loans.loanParams())
    try:
        s.settlement.setSplit(400, 200, 2_500, {"from": admin})
        s.settlement.setRiskParams(13_000, 7_000, 1, {"from": admin})
        s.loans.setLoanParams((4_000, 800, 9_000, 4, 2), {"from": admin})
        wait_for(
            lambda: (
                (r := stack.post("/api/v1/risk/scenarios", json=body)).status_code == 200
                and r.json()["terms"]["cure_epochs"] == 2
            ),
            30,
            "the new terms to be indexed",
        )
        served = stack.post("/api/v1/risk/scenarios", json={**body, "max_ltv_bps": 9_000}).json()
        chain_terms = {
            "protocol_fee_bps": 400,
            "reserve_bps": 200,
            "operator_bps": 2_500,
            "covenant_dscr_bps": 13_000,
            "max_ltv_bps": 9_000,  # the request's
            "curve": "declining_balance",
            "pledge_bps": 4_000,
            "default_arrears_bps": 800,
            "default_dscr_bps": 9_000,
            "default_dscr_epochs": 4,
            "cure_epochs": 2,
        }
        assert {k: served["terms"][k] for k in chain_terms} == chain_terms
        source = served["terms_source"]
        assert source["max_ltv_bps"] == "request"
        assert {source[k] for k in chain_terms if k != "max_ltv_bps"} == {"chain"}
        assert source["dscr_window_epochs"] == "chain"  # the deployed immutable
        assert served["terms"]["dscr_window_epochs"] == window
        params = Params(
            start_time=START,
            dscr_window_epochs=served["terms"]["dscr_window_epochs"],
            epoch_seconds=served["terms"]["epoch_seconds"],
            reserve_held=served["terms"]["reserve_held_micro_usd"],
            **chain_terms,
        )
        fleet = Fleet.from_nodes(
            [
                NodeInput(
                    node_id=3,
                    class_name=H100,
                    gpu_count=8,
                    acquisition_cost=240_000 * USD,
                    acquired_at=START - 86_400,
                    economic_life_months=DEFAULT_CLASSES[H100].economic_life_months,
                    residual_value_bps=DEFAULT_CLASSES[H100].residual_value_bps,
                    bond=8_000 * USD,
                    utilization_bps=6_000,
                    debt=Debt(160_000 * USD, 36, 1_100),
                )
            ]
        )
        local = run_scenarios(fleet, [NAMED["deflation_40"]], params)
        assert (
            served["results"]
            == ScenarioRunPublic.model_validate({**served, "results": local}).model_dump(
                mode="json"
            )["results"]
        )
        assert served["results"] != before.json()["results"]
    finally:
        s.settlement.setSplit(500, 300, 3_000, {"from": admin})
        s.settlement.setRiskParams(12_500, 8_000, 0, {"from": admin})
        s.loans.setLoanParams(deployed_loans, {"from": admin})
