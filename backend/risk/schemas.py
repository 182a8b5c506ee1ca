"""Pydantic shapes of a stress run (the API's request/response, the CLI's JSON fleet).

Field bounds here give a 422 with the field's name before any work is done; the engine
re-checks what depends on several fields (``FleetError``/``ScenarioError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from backend.risk import terms as T
from backend.risk.engine import Params
from backend.risk.fleet import (
    DEFAULT_CLASSES,
    MAX_AMOUNT,
    MAX_ENERGY_WH,
    MAX_GPUS,
    MAX_KWH_PRICE,
    MAX_LIFE_MONTHS,
    MAX_PRICE,
    MAX_PUE_BPS,
    MAX_TENOR_MONTHS,
    MAX_TIME,
    Debt,
    EnergyCosts,
    FleetError,
    NodeInput,
)
from backend.risk.formulas import MONTH_SECONDS
from backend.risk.scenarios import MAX_HORIZON_MONTHS, NAMED, PPM, Scenario, UtilizationPath

INT64_MAX = 2**63 - 1
MAX_NODES = 10_000
# nodes x months per request: 10,000 nodes over 10 years; bounds memory and time.
MAX_CELLS = 1_200_000
MAX_SCENARIOS = 16

MICRO = 10**6  # stablecoin units per USD


# Validation context of a node built by the backend itself from the index (prices already
# in micro-USD, as the chain holds them): ``model_validate(..., context=MICRO_USD_CONTEXT)``.
MICRO_USD_CONTEXT = {"micro_usd": True}


def _to_micro(value: object, info: ValidationInfo, what: str, example: str) -> object:
    """USD as a decimal string (at most 6 decimals) → micro-USD. A bare JSON number is
    refused: 2.0 read as micro-units would price a GPU-hour at 0.000002 USD, 240000 as a
    GPU's cost would be 0.24 USD. Only the backend's own index rows (MICRO_USD_CONTEXT)
    pass integers in micro-USD."""
    if isinstance(value, int) and not isinstance(value, bool) and info.context == MICRO_USD_CONTEXT:
        return value
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError(
            f'{what} is a decimal string in USD, e.g. "{example}"; got the bare number {value!r}'
        )
    if not isinstance(value, str):
        return value  # pydantic reports the type
    try:
        usd = Decimal(value)
    except InvalidOperation:
        raise ValueError(
            f'{what} is a decimal string in USD, e.g. "{example}"; got {value!r}'
        ) from None
    micro = usd * MICRO
    if not usd.is_finite() or micro != micro.to_integral_value():
        raise ValueError(f"{what} in USD has at most 6 decimals; got {value!r}")
    return int(micro)


def usd_to_micro(value: object, info: ValidationInfo) -> object:
    """A price in USD ("2.00") → micro-USD (``_to_micro``)."""
    return _to_micro(value, info, "a price", "2.00")


def usd_amount_to_micro(value: object, info: ValidationInfo) -> object:
    """An amount of money in USD ("240000.00") → micro-USD (``_to_micro``)."""
    return _to_micro(value, info, "an amount of money", "240000.00")


# What the OpenAPI schema says of both: a string, never a JSON number.
_USD_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$", "description": "USD"}
)
# A price field: "2.00" (USD) in JSON, micro-USD inside.
UsdPrice = Annotated[int, BeforeValidator(usd_to_micro), Field(ge=0, le=MAX_PRICE), _USD_SCHEMA]
# An amount of money (cost, bond, debt, reserves): "240000.00" (USD) in JSON, micro-USD inside.
UsdAmount = Annotated[
    int, BeforeValidator(usd_amount_to_micro), Field(ge=0, le=MAX_AMOUNT), _USD_SCHEMA
]
Bps = Annotated[int, Field(ge=0, le=10_000)]
NodeId = Annotated[int, Field(ge=0, le=INT64_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DebtIn(_Strict):
    """A RevenuePool's draw and schedule in 30-day months (backend/risk/indexed.py converts a
    pool's epochs by its epoch length)."""

    drawn_assets: UsdAmount
    tenor_months: int = Field(ge=1, le=MAX_TENOR_MONTHS)
    rate_bps: Bps
    months_since_draw: int = Field(0, ge=0, le=MAX_TENOR_MONTHS)
    staked_bps: Bps = 5_000

    def to_debt(self) -> Debt:
        return Debt(**self.model_dump())


class NodeOverride(_Strict):
    """What the index does not hold for a node: its pool's debt, reserves, history, power."""

    node_id: NodeId
    debt: DebtIn | None = None
    insurance: UsdAmount = 0
    trailing_revenue: UsdAmount | None = None
    utilization_bps: Bps | None = None
    price_per_gpu_hour: UsdPrice | None = None
    energy_wh_per_gpu_hour: int | None = Field(None, ge=0, le=MAX_ENERGY_WH)
    electricity_price_per_kwh: UsdPrice | None = Field(None, le=MAX_KWH_PRICE)
    pue_bps: int | None = Field(None, ge=10_000, le=MAX_PUE_BPS)
    mark_price_per_gpu_hour: UsdPrice | None = Field(
        None,
        description="the market price of the node's class per GPU-hour its collateral is "
        "marked to with collateral=marked (from the index: its class's VWAP when it traded "
        "enough); none: book value",
    )


class NodeIn(NodeOverride):
    """A node given inline; life and residual default to its class's when omitted."""

    class_name: str = Field(min_length=1, max_length=64)
    gpu_count: int = Field(ge=1, le=MAX_GPUS)
    acquisition_cost: UsdAmount
    acquired_at: int = Field(ge=0, le=MAX_TIME)
    economic_life_months: int | None = Field(None, ge=1, le=MAX_LIFE_MONTHS)
    residual_value_bps: Bps | None = None
    bond: UsdAmount = 0
    operator: str = Field("", max_length=64)

    def to_input(self) -> NodeInput:
        cls = DEFAULT_CLASSES.get(self.class_name)
        life, residual = self.economic_life_months, self.residual_value_bps
        if cls is None and (life is None or residual is None):
            raise FleetError(
                f"node {self.node_id}: class {self.class_name!r} is not a standard class; "
                "give economic_life_months and residual_value_bps"
            )
        return NodeInput(
            node_id=self.node_id,
            class_name=self.class_name,
            gpu_count=self.gpu_count,
            acquisition_cost=self.acquisition_cost,
            acquired_at=self.acquired_at,
            economic_life_months=life if life is not None else cls.economic_life_months,  # type: ignore[union-attr]
            residual_value_bps=residual if residual is not None else cls.residual_value_bps,  # type: ignore[union-attr]
            debt=self.debt.to_debt() if self.debt else None,
            bond=self.bond,
            insurance=self.insurance,
            trailing_revenue=self.trailing_revenue,
            utilization_bps=self.utilization_bps,
            price_per_gpu_hour=self.price_per_gpu_hour,
            energy_wh_per_gpu_hour=self.energy_wh_per_gpu_hour,
            electricity_price_per_kwh=self.electricity_price_per_kwh,
            pue_bps=self.pue_bps,
            operator=self.operator,
            mark_price_per_gpu_hour=self.mark_price_per_gpu_hour,
        )


class OperatorCostsIn(_Strict):
    """An operator's declared power terms; its nodes' own fields win over these."""

    electricity_price_per_kwh: UsdPrice | None = Field(None, le=MAX_KWH_PRICE)
    pue_bps: int | None = Field(None, ge=10_000, le=MAX_PUE_BPS)

    def to_costs(self) -> EnergyCosts:
        return EnergyCosts(self.electricity_price_per_kwh, self.pue_bps)


class UtilizationIn(_Strict):
    start_bps: int = Field(10_000, ge=0, le=100_000)
    end_bps: int = Field(10_000, ge=0, le=100_000)
    over_months: int = Field(1, ge=1, le=MAX_HORIZON_MONTHS)


class ScenarioIn(_Strict):
    """A custom world (see backend/risk/scenarios.py Scenario for the semantics)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = Field("", max_length=500)
    annual_price_decline_bps: int = Field(0, ge=0, le=9_999)
    price_index_ppm: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[list[Annotated[int, Field(ge=0, le=100 * PPM)]], Field(max_length=600)],
    ] = Field(default_factory=dict, max_length=32)
    utilization: UtilizationIn = UtilizationIn()
    economic_life_months: int | None = Field(None, ge=1, le=MAX_LIFE_MONTHS)
    tenor_months: int | None = Field(None, ge=1, le=MAX_TENOR_MONTHS)

    def to_scenario(self) -> Scenario:
        u = self.utilization
        return Scenario(
            name=self.name,
            description=self.description or "custom scenario",
            annual_price_decline_bps=self.annual_price_decline_bps,
            price_index_ppm={k: tuple(v) for k, v in self.price_index_ppm.items()},
            utilization=UtilizationPath(u.start_bps, u.end_bps, u.over_months),
            economic_life_months=self.economic_life_months,
            tenor_months=self.tenor_months,
        )


# The Params fields the chain sets (EpochSettlement, PoolLoans, the hub): a request that
# leaves one out gets the chain's value where the index has it.
RUN_TERMS = (
    "protocol_fee_bps",
    "reserve_bps",
    "operator_bps",
    "covenant_dscr_bps",
    "max_ltv_bps",
    "curve",
    "dscr_window_epochs",
    "pledge_bps",
    "default_arrears_bps",
    "default_dscr_bps",
    "default_dscr_epochs",
    "cure_epochs",
    "epoch_seconds",
    "reserve_held_micro_usd",
)
# Request and answer names that differ from the engine's (money says its unit here).
_PARAM_NAMES = {"reserve_held_micro_usd": "reserve_held"}


def param_name(name: str) -> str:
    return _PARAM_NAMES.get(name, name)


class ScenarioRunRequest(_Strict):
    """Named and/or custom scenarios over a fleet from the index (``scope`` or
    ``node_ids``; each node's pool debt, trailing utilization and ask come from the index,
    ``overrides`` win field by field) or given inline (``nodes``) — exactly one."""

    scenarios: list[str] | None = Field(
        None, max_length=MAX_SCENARIOS, description="named scenarios; default all"
    )
    custom: list[ScenarioIn] = Field(default_factory=list, max_length=MAX_SCENARIOS)
    scope: Literal["pools", "platform"] | None = Field(
        None, description="pools: every node a pool is bound to; platform: every live node"
    )
    node_ids: list[NodeId] | None = Field(None, min_length=1, max_length=MAX_NODES)
    overrides: list[NodeOverride] = Field(default_factory=list, max_length=MAX_NODES)
    loans_from_draw: bool = Field(
        False,
        description="project each indexed pool loan from its draw (month 0, the whole "
        "tenor) instead of from where its schedule stands now",
    )
    nodes: list[NodeIn] | None = Field(None, min_length=1, max_length=MAX_NODES)
    start_time: int | None = Field(
        None, ge=0, le=MAX_TIME, description="unix seconds; default: now, floored to the hour"
    )
    horizon_months: int = Field(60, ge=1, le=MAX_HORIZON_MONTHS)
    # Left out: the chain's terms as indexed (RUN_TERMS), else the deployed protocol's
    # (backend/risk/terms.py).
    covenant_dscr_bps: int = Field(T.COVENANT_DSCR_BPS, ge=0, le=1_000_000)
    max_ltv_bps: int = Field(T.MAX_LTV_BPS, ge=0, le=1_000_000)
    dscr_window_epochs: int = Field(T.DSCR_WINDOW_EPOCHS, ge=1, le=720)
    protocol_fee_bps: Bps = T.PROTOCOL_FEE_BPS
    reserve_bps: Bps = T.RESERVE_BPS
    operator_bps: Bps = T.OPERATOR_BPS
    pledge_bps: Bps = T.PLEDGE_BPS
    default_arrears_bps: Bps = T.DEFAULT_ARREARS_BPS
    default_dscr_bps: int = Field(T.DEFAULT_DSCR_BPS, ge=0, le=1_000_000)
    default_dscr_epochs: int = Field(T.DEFAULT_DSCR_EPOCHS, ge=1, le=720)
    cure_epochs: int = Field(T.CURE_EPOCHS, ge=1, le=720)
    epoch_seconds: int = Field(
        T.EPOCH_SECONDS,
        ge=1,
        le=MONTH_SECONDS,
        description="the chain's epoch: the DSCR window and the loan's runs count epochs, "
        "and a projection month holds 30 days of them",
    )
    curve: Literal["straight_line", "declining_balance"] = "straight_line"
    electricity_price_per_kwh: UsdPrice = Field(T.ELECTRICITY_PRICE_PER_KWH, le=MAX_KWH_PRICE)
    pue_bps: int = Field(T.PUE_BPS, ge=10_000, le=MAX_PUE_BPS)
    reserve_held_micro_usd: int = Field(
        0,
        ge=0,
        le=2**62,
        description="EpochSettlement's insurance reserve at the start, in micro-USD (the "
        "chain's as indexed when left out): one reserve behind every node, beside the "
        "nodes' insurance",
    )
    operator_costs: dict[Annotated[str, Field(max_length=64)], OperatorCostsIn] = Field(
        default_factory=dict, max_length=1_000
    )
    recovery_bps: Bps = 6_000
    collateral: Literal["book", "marked"] = Field(
        "book",
        description="book: collateral at its depreciated value; marked: the lower of that "
        "and its market-implied value, for nodes whose class traded enough (the pool "
        "view's rule, GET /api/v1/pools: collateral.rule), at the market price moved by "
        "each scenario's price index (backend/risk/marking.py)",
    )
    include_nodes: bool = True
    include_node_paths: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioRunRequest:
        given = [self.scope is not None, self.node_ids is not None, self.nodes is not None]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of scope or node_ids (from the index) or nodes (inline)"
            )
        if self.nodes is not None and self.overrides:
            raise ValueError("overrides apply to node_ids; put the fields in nodes instead")
        if self.nodes is not None and self.loans_from_draw:
            raise ValueError("loans_from_draw applies to indexed loans (scope or node_ids)")
        unknown = [n for n in self.scenarios or [] if n not in NAMED]
        if unknown:
            raise ValueError(f"unknown scenarios {unknown}; named ones: {sorted(NAMED)}")
        names = [*(self.scenarios or []), *(c.name for c in self.custom)]
        if len(set(names)) != len(names):
            raise ValueError("scenario names must be unique (custom ones may not reuse a named)")
        split = self.protocol_fee_bps + self.reserve_bps + self.operator_bps
        if split > 10_000:
            raise ValueError(
                f"protocol_fee_bps + reserve_bps + operator_bps = {split} exceeds 10000"
            )
        if self.scope is None:
            self.check_size(len(self.node_ids or self.nodes or []))
        return self

    def check_size(self, count: int) -> None:
        """Refuses a run too large for one request (``count`` nodes)."""
        if count * self.horizon_months > MAX_CELLS:
            raise ValueError(
                f"{count} nodes x {self.horizon_months} months exceeds {MAX_CELLS} per request"
            )
        runs = max(len(self.selected()), 1)
        if count * self.horizon_months * runs > MAX_CELLS * len(NAMED):
            raise ValueError(
                f"{count} nodes x {self.horizon_months} months x {runs} scenarios exceeds "
                f"{MAX_CELLS * len(NAMED)} per request"
            )
        if self.include_node_paths and count > 1_000:
            raise ValueError("include_node_paths is limited to 1000 nodes per request")

    def selected(self) -> list[Scenario]:
        named = [NAMED[n] for n in self.scenarios] if self.scenarios is not None else []
        if self.scenarios is None and not self.custom:
            named = list(NAMED.values())
        return [*named, *(c.to_scenario() for c in self.custom)]

    def params(self, start_time: int, chain: Mapping[str, int | str] | None = None) -> Params:
        """The run's terms: what the request set, else the chain's (``chain``: the terms
        the index knows, ``backend.risk.indexed.chain_terms``), else the deployment's."""
        given = {name: getattr(self, name) for name in RUN_TERMS}
        for name, value in (chain or {}).items():
            if name in given and name not in self.model_fields_set:
                given[name] = value
        given = {param_name(name): value for name, value in given.items()}
        return Params(
            start_time=start_time,
            horizon_months=self.horizon_months,
            electricity_price_per_kwh=self.electricity_price_per_kwh,
            pue_bps=self.pue_bps,
            recovery_bps=self.recovery_bps,
            collateral=self.collateral,
            **given,
        )

    def terms_source(self, chain: Mapping[str, int | str]) -> dict[str, str]:
        """Where each chain term of the run came from: request, chain or deploy_default."""
        return {
            name: "request"
            if name in self.model_fields_set
            else "chain"
            if name in chain
            else "deploy_default"
            for name in RUN_TERMS
        }

    def energy_costs(self) -> dict[str, EnergyCosts]:
        return {name: c.to_costs() for name, c in self.operator_costs.items()}


# -- responses ------------------------------------------------------------------------


class UtilizationPublic(BaseModel):
    start_bps: int
    end_bps: int
    over_months: int


class ScenarioInfoPublic(BaseModel):
    name: str
    description: str
    annual_price_decline_bps: int
    price_index_classes: list[str]
    utilization: UtilizationPublic
    economic_life_months: int | None
    tenor_months: int | None


class WaterfallPublic(BaseModel):
    """Loss absorbed per tier, in order; the four sum to the total loss exactly."""

    operator_bond: int
    stakers: int
    insurance_reserve: int
    holders: int


class AggregatePublic(BaseModel):
    """Month paths (index 0 = month 1) over the nodes still running; ratio None = infinite."""

    nodes: int
    net_revenue: list[int]
    debt_service: list[int]
    outstanding: list[int]
    value: list[int]
    dscr_bps: list[int | None]
    ltv_bps: list[int | None]
    breaching: list[int]
    defaults_cumulative: list[int]
    first_breach_month: int | None
    first_default_month: int | None
    nodes_breaching: int
    nodes_breaching_dscr: int
    nodes_defaulting: int
    nodes_cured: int
    operator_margin: list[int]
    waterfall: WaterfallPublic
    total_loss: int


class NodePathsPublic(BaseModel):
    dscr_bps: list[int | None]
    ltv_bps: list[int | None]
    value: list[int]
    outstanding: list[int]
    net_revenue: list[int]
    debt_service: list[int]
    utilization_bps: list[int]
    price_per_gpu_hour: list[int]
    operator_margin: list[int]


class NodeOutcomePublic(BaseModel):
    node_id: int
    class_name: str
    operator: str
    has_pool: bool
    first_breach_month: int | None
    first_dscr_breach_month: int | None
    first_default_month: int | None
    min_dscr_bps: int | None
    max_ltv_bps: int | None
    sweep_months: int
    cures: int
    swept: int
    arrears: int
    claim_at_default: int
    recovery_at_default: int
    waterfall: WaterfallPublic
    total_loss: int
    mark_price_per_gpu_hour: int | None = Field(
        None, description="market price its collateral was marked to (collateral=marked)"
    )
    paths: NodePathsPublic | None = None


class ScenarioResultPublic(BaseModel):
    scenario: ScenarioInfoPublic
    platform: AggregatePublic
    by_class: dict[str, AggregatePublic]
    nodes: list[NodeOutcomePublic] | None = None


class ScenarioRunPublic(BaseModel):
    start_time: int
    horizon_months: int
    node_count: int
    collateral: Literal["book", "marked"] = "book"
    terms: dict[str, int | str] = Field(
        default_factory=dict, description="the split, covenant and loan terms the run used"
    )
    terms_source: dict[str, Literal["request", "chain", "deploy_default"]] = Field(
        default_factory=dict,
        description="per term: sent in the request, indexed from the chain, or the "
        "deployment's default (the index has not seen it set)",
    )
    results: list[ScenarioResultPublic]


def run_body(
    start_time: int,
    horizon: int,
    count: int,
    results: list[dict[str, Any]],
    collateral: str = "book",
    params: Params | None = None,
    terms_source: dict[str, str] | None = None,
) -> dict:
    return {
        "start_time": start_time,
        "horizon_months": horizon,
        "node_count": count,
        "collateral": collateral,
        "terms": {name: getattr(params, param_name(name)) for name in RUN_TERMS} if params else {},
        "terms_source": terms_source or {},
        "results": results,
    }
