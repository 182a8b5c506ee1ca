"""The fleet a stress run projects: nodes, their pools' debt, attested history, defaults.

Inputs are plain dataclasses (the API and the CLI build them from JSON or from the index)
turned into one struct-of-arrays :class:`Fleet` for the vectorised engine. Bounds are
checked here, once, with a reason naming the node and field: everything the engine then
computes fits int64 exactly (see ``backend.risk.vector``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import NDArray

from backend.risk.formulas import BPS
from gpucap.gpu_classes import STANDARD_CLASSES

USD = 10**6
HOURS_PER_MONTH = 720  # 30 days x 24 h: the formula sheet's month
MAX_AMOUNT = 10**15  # $1bn in base units, per node and per field
MAX_GPUS = 100_000
MAX_PRICE = 10**9  # $1,000 per GPU-hour
MAX_LIFE_MONTHS = 1_200
MAX_TENOR_MONTHS = 1_200
MAX_TIME = 2**40  # unix seconds (year ~36,800)


class FleetError(ValueError):
    """The fleet cannot be projected as given; the message names the node and the field."""


@dataclass(frozen=True)
class ClassDefaults:
    """Per GPU class: what to assume where a node has no attested history (base units)."""

    name: str
    economic_life_months: int
    residual_value_bps: int
    price_per_gpu_hour: int  # today's rental price, per GPU-hour
    energy_wh_per_gpu_hour: int  # board power (TDP) x 1 h: energy of a delivered GPU-hour


# Market rental prices (late 2025 spot, rounded). Life, residual and power come from the
# classes a deployment registers (gpucap/gpu_classes.py), so they agree on-chain.
_MARKET = {
    "H100-SXM-80GB": 2_000_000,
    "A100-SXM-80GB": 1_100_000,
    "L40S-48GB": 800_000,
    "RTX-4090-24GB": 350_000,
}
DEFAULT_CLASSES: dict[str, ClassDefaults] = {
    c.name: ClassDefaults(
        c.name, c.economic_life_months, c.residual_value_bps, _MARKET[c.name], c.reference_power_w
    )
    for c in STANDARD_CLASSES
}
MAX_ENERGY_WH = 10_000  # per GPU-hour (a 10 kW accelerator)
MAX_KWH_PRICE = 10 * USD
MAX_PUE_BPS = 30_000
USE_DEFAULT = -1  # energy price / PUE not given for the node or its operator: Params' default
NO_MARK = -1  # no market price to mark the node's collateral to


@dataclass(frozen=True)
class EnergyCosts:
    """An operator's declared power terms (either may be left to the run's default)."""

    electricity_price_per_kwh: int | None = None  # stablecoin base units per kWh
    pue_bps: int | None = None  # facility power / IT power (13_000 = 1.30)


DEFAULT_UTILIZATION_BPS = 7_000


@dataclass(frozen=True)
class Debt:
    """A RevenuePool's draw and schedule, in months (the engine services it monthly;
    backend/risk/indexed.py converts a real pool's epochs to months by its epoch length).

    ``months_since_draw``: months already elapsed when the projection starts (the
    projection's month m is loan month ``months_since_draw + m``, the draw at month 0).
    ``staked_bps``: share of the pool's shares staked (stakers absorb loss before the
    insurance reserve; the unstaked holders absorb what is left).
    """

    drawn_assets: int
    tenor_months: int
    rate_bps: int
    months_since_draw: int = 0
    staked_bps: int = 5_000


@dataclass(frozen=True)
class NodeInput:
    """One node. Price and utilization come from attested history, else class defaults.

    Operating cost: ``energy_wh_per_gpu_hour`` (attested energy / delivered GPU-hours; the
    class's board power when not given) x ``electricity_price_per_kwh`` x ``pue_bps``; the
    price and PUE default to the operator's declared ones, then to the run's (Params).

    ``trailing_revenue`` is gross rental revenue per month (base units) and
    ``utilization_bps`` the attested utilization over the same trailing window: together
    they give the node's realised price per GPU-hour. ``bond`` is the operator's bond in
    NodeRegistry (``Params.pledge_bps`` of it is pledged to the pool), ``insurance`` reserve
    brought in with this node: EpochSettlement keeps ONE reserve, so the engine pools the
    nodes' insurance with ``Params.reserve_held`` and every running node's
    ``Params.reserve_bps`` of gross, and the defaults draw on it in order.
    """

    node_id: int
    class_name: str
    gpu_count: int
    acquisition_cost: int
    acquired_at: int
    economic_life_months: int
    residual_value_bps: int
    debt: Debt | None = None
    bond: int = 0
    insurance: int = 0
    trailing_revenue: int | None = None
    utilization_bps: int | None = None
    price_per_gpu_hour: int | None = None
    energy_wh_per_gpu_hour: int | None = None
    electricity_price_per_kwh: int | None = None
    pue_bps: int | None = None
    operator: str = ""
    # The market price of the node's class per GPU-hour, where it traded enough to mark
    # collateral to (backend/risk/marking.py); None: no mark, book value only.
    mark_price_per_gpu_hour: int | None = None


def _check(node_id: int, name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FleetError(f"node {node_id}: {name}={value!r} must be an integer in [{lo}, {hi}]")


@dataclass
class Fleet:
    """Struct of arrays, one row per node (int64 unless stated)."""

    node_id: NDArray[np.int64]
    class_name: NDArray[np.str_]
    operator: NDArray[np.str_]
    gpu_count: NDArray[np.int64]
    acquisition_cost: NDArray[np.int64]
    acquired_at: NDArray[np.int64]
    economic_life_months: NDArray[np.int64]
    residual_value_bps: NDArray[np.int64]
    price0: NDArray[np.int64]  # realised price per GPU-hour today
    utilization0: NDArray[np.int64]  # bps
    energy_wh_per_gpu_hour: NDArray[np.int64]
    electricity_price_per_kwh: NDArray[np.int64]  # USE_DEFAULT: the run's
    pue_bps: NDArray[np.int64]  # USE_DEFAULT: the run's
    drawn: NDArray[np.int64]  # 0: no pool drawn against this node
    tenor: NDArray[np.int64]
    rate_bps: NDArray[np.int64]
    months_since_draw: NDArray[np.int64]
    staked_bps: NDArray[np.int64]
    bond: NDArray[np.int64]
    insurance: NDArray[np.int64]
    mark_price0: NDArray[np.int64]  # market price per GPU-hour today; NO_MARK: none
    inputs: list[NodeInput] = field(repr=False, default_factory=list)

    def __len__(self) -> int:
        return int(self.node_id.shape[0])

    @classmethod
    def from_nodes(
        cls, nodes: list[NodeInput], operator_costs: dict[str, EnergyCosts] | None = None
    ) -> Fleet:
        """Validate every node (reason names node and field) and stack them; a node's own
        energy terms win over its operator's (``operator_costs``), which win over the run's."""
        operator_costs = operator_costs or {}
        if not nodes:
            raise FleetError("the fleet is empty: give at least one node")
        seen: set[int] = set()
        cols: dict[str, list[object]] = {f.name: [] for f in fields(cls) if f.name != "inputs"}
        for n in nodes:
            _check(n.node_id, "node_id", n.node_id, 0, 2**63 - 1)
            if n.node_id in seen:
                raise FleetError(f"node {n.node_id} appears twice in the fleet")
            seen.add(n.node_id)
            defaults = DEFAULT_CLASSES.get(n.class_name)
            _check(n.node_id, "gpu_count", n.gpu_count, 1, MAX_GPUS)
            _check(n.node_id, "acquisition_cost", n.acquisition_cost, 0, MAX_AMOUNT)
            _check(n.node_id, "acquired_at", n.acquired_at, 0, MAX_TIME)
            _check(n.node_id, "economic_life_months", n.economic_life_months, 1, MAX_LIFE_MONTHS)
            _check(n.node_id, "residual_value_bps", n.residual_value_bps, 0, BPS)
            for name in ("bond", "insurance"):
                _check(n.node_id, name, getattr(n, name), 0, MAX_AMOUNT)
            util = n.utilization_bps
            if util is None:
                util = DEFAULT_UTILIZATION_BPS
            _check(n.node_id, "utilization_bps", util, 0, BPS)
            price = n.price_per_gpu_hour
            if price is None and n.trailing_revenue is not None:
                _check(n.node_id, "trailing_revenue", n.trailing_revenue, 0, MAX_AMOUNT)
                hours = n.gpu_count * HOURS_PER_MONTH * util
                price = n.trailing_revenue * BPS // hours if hours else None
            if price is None:
                if defaults is None:
                    raise FleetError(
                        f"node {n.node_id}: class {n.class_name!r} has no default price; "
                        "give price_per_gpu_hour or trailing_revenue with utilization_bps > 0"
                    )
                price = defaults.price_per_gpu_hour
            _check(n.node_id, "price_per_gpu_hour", price, 0, MAX_PRICE)
            energy = n.energy_wh_per_gpu_hour
            if energy is None:
                if defaults is None:
                    raise FleetError(
                        f"node {n.node_id}: class {n.class_name!r} has no default power; "
                        "give energy_wh_per_gpu_hour"
                    )
                energy = defaults.energy_wh_per_gpu_hour
            _check(n.node_id, "energy_wh_per_gpu_hour", energy, 0, MAX_ENERGY_WH)
            declared = operator_costs.get(n.operator, EnergyCosts())
            kwh = n.electricity_price_per_kwh
            kwh = declared.electricity_price_per_kwh if kwh is None else kwh
            pue = n.pue_bps if n.pue_bps is not None else declared.pue_bps
            if kwh is not None:
                _check(n.node_id, "electricity_price_per_kwh", kwh, 0, MAX_KWH_PRICE)
            if pue is not None:
                _check(n.node_id, "pue_bps", pue, BPS, MAX_PUE_BPS)
            mark = n.mark_price_per_gpu_hour
            if mark is not None:
                _check(n.node_id, "mark_price_per_gpu_hour", mark, 0, MAX_PRICE)
            d = n.debt or Debt(0, 1, 0, 0, 0)
            _check(n.node_id, "debt.drawn_assets", d.drawn_assets, 0, MAX_AMOUNT)
            _check(n.node_id, "debt.tenor_months", d.tenor_months, 1, MAX_TENOR_MONTHS)
            _check(n.node_id, "debt.rate_bps", d.rate_bps, 0, BPS)
            _check(n.node_id, "debt.months_since_draw", d.months_since_draw, 0, MAX_TENOR_MONTHS)
            _check(n.node_id, "debt.staked_bps", d.staked_bps, 0, BPS)
            row = {
                "node_id": n.node_id,
                "class_name": n.class_name,
                "operator": n.operator,
                "gpu_count": n.gpu_count,
                "acquisition_cost": n.acquisition_cost,
                "acquired_at": n.acquired_at,
                "economic_life_months": n.economic_life_months,
                "residual_value_bps": n.residual_value_bps,
                "price0": price,
                "utilization0": util,
                "energy_wh_per_gpu_hour": energy,
                "electricity_price_per_kwh": USE_DEFAULT if kwh is None else kwh,
                "pue_bps": USE_DEFAULT if pue is None else pue,
                "drawn": d.drawn_assets,
                "tenor": d.tenor_months,
                "rate_bps": d.rate_bps,
                "months_since_draw": d.months_since_draw,
                "staked_bps": d.staked_bps,
                "bond": n.bond,
                "insurance": n.insurance,
                "mark_price0": NO_MARK if mark is None else mark,
            }
            for k, v in row.items():
                cols[k].append(v)
        arrays = {
            k: np.array(v, dtype=str if k in ("class_name", "operator") else np.int64)
            for k, v in cols.items()
        }
        return cls(**arrays, inputs=list(nodes))  # type: ignore[arg-type]


def synthetic_fleet(count: int, seed: int, start_time: int, pool_share_bps: int = 8_000) -> Fleet:
    """A reproducible fleet: same (count, seed, start_time) → the same nodes, every run.

    Classes, sizes, ages (0-30 months before ``start_time``), utilization and debt terms
    are drawn from a seeded PCG64 generator; ``pool_share_bps`` of the nodes carry a pool
    drawn at 40-70% of cost with a 36-60 month tenor at 8-14% a year.
    """
    if not 1 <= count <= 1_000_000:
        raise FleetError(f"count={count} must be in [1, 1000000]")
    rng = np.random.Generator(np.random.PCG64(seed))
    classes = list(DEFAULT_CLASSES.values())
    unit_cost = {
        "H100-SXM-80GB": 30_000,
        "A100-SXM-80GB": 15_000,
        "L40S-48GB": 9_000,
        "RTX-4090-24GB": 2_000,
    }
    weights = np.array([0.45, 0.25, 0.2, 0.1])
    picks = rng.choice(len(classes), size=count, p=weights)
    gpus = rng.choice(np.array([4, 8, 8, 8, 16, 32]), size=count)
    age_months = rng.integers(0, 31, size=count)
    jitter = rng.integers(0, 86_400 * 30, size=count)
    util = rng.integers(5_500, 9_500, size=count)
    price_bps = rng.integers(8_500, 11_500, size=count)
    has_pool = rng.integers(0, BPS, size=count) < pool_share_bps
    ltv = rng.integers(4_000, 7_001, size=count)
    tenor = rng.choice(np.array([36, 48, 60]), size=count)
    rate = rng.integers(800, 1_401, size=count)
    staked = rng.integers(2_000, 9_001, size=count)
    nodes = []
    for i in range(count):
        c = classes[int(picks[i])]
        cost = int(gpus[i]) * unit_cost[c.name] * USD
        acquired = start_time - int(age_months[i]) * 2_592_000 - int(jitter[i])
        drawn = cost * int(ltv[i]) // BPS if has_pool[i] else 0
        since = min(int(age_months[i]), int(tenor[i]) - 1)
        nodes.append(
            NodeInput(
                node_id=i + 1,
                class_name=c.name,
                gpu_count=int(gpus[i]),
                acquisition_cost=cost,
                acquired_at=max(acquired, 0),
                economic_life_months=c.economic_life_months,
                residual_value_bps=c.residual_value_bps,
                debt=Debt(drawn, int(tenor[i]), int(rate[i]), since, int(staked[i]))
                if drawn
                else None,
                bond=cost // 20,  # a 5% operator bond
                insurance=0,
                utilization_bps=int(util[i]),
                price_per_gpu_hour=c.price_per_gpu_hour * int(price_bps[i]) // BPS,
                operator=f"operator-{int(i % 97)}",
            )
        )
    return Fleet.from_nodes(nodes)
