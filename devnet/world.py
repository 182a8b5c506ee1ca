"""The demo world's plan: who operates which nodes, what they offer, which nodes raise funds.

Pure and deterministic (same size and seed → same world), so the seeder
(scripts/seed.py), the activity process and a person reading ``world.json``
agree on who is who. Everyone is one of anvil's dev accounts (the demo chain
starts with ``ACCOUNTS`` of them), so any role can be played from the CLI with
``python -m gpucap … --dev-account N``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_utils import keccak, to_checksum_address

from backend.risk.formulas import depreciated_value
from gpucap.gpu_classes import STANDARD_CLASSES

USD = 10**6
ACCOUNTS = 50  # anvil --accounts for the demo chain

# Dev account indices by role. 0 deploys (admin), 2 rents the pools' nodes (their usage
# payer), 6-8 are the oracles, 9 the backend's relayer; 10-19 are left for the CLI.
FIRST_OPERATOR = 1  # the original demo operator, then 20, 21, …
OPERATOR_RANGE = range(20, 40)
INVESTORS = tuple(range(40, 46))
USERS = (3, 4, 5, 46, 47)
USAGE_PAYER = 2

DEFAULT_NODES = 1_000
WINDOW_SECONDS = 3_600
COMMIT_RATIO_BPS = 9_000  # scripts/deploy.py DeployConfig.capacity_commit_ratio_bps

REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-northeast")
OPERATOR_NAMES = (
    "Lumen Compute",
    "Fjord GPU",
    "Northwind AI Cloud",
    "Basalt Labs",
    "Cirrus Racks",
    "Helio Datacenters",
    "Kestrel Compute",
    "Orbital Silicon",
    "Tidewater HPC",
    "Quarry Cloud",
    "Meridian GPU",
    "Aster Compute",
    "Granite AI",
    "Nimbus Forge",
    "Vantage Racks",
    "Saltmarsh Compute",
    "Polar Tensor",
    "Redwood GPU",
    "Summit Silicon",
    "Drift Compute",
    "Copper Cloud",
)


@dataclass(frozen=True)
class ClassMix:
    name: str  # gpucap.gpu_classes name
    weight: float
    gpu_counts: tuple[int, ...]
    cost_per_gpu: int  # tUSD
    price_per_gpu_hour: float  # tUSD, centre of the operators' asks


CLASS_MIX = (
    ClassMix("H100-SXM-80GB", 0.40, (8, 8, 8, 4), 30_000, 2.50),
    ClassMix("A100-SXM-80GB", 0.30, (8, 8, 4), 15_000, 1.40),
    ClassMix("L40S-48GB", 0.20, (8, 4, 4, 2), 9_000, 0.90),
    ClassMix("RTX-4090-24GB", 0.10, (8, 4, 2), 2_000, 0.45),
)


@dataclass(frozen=True)
class PlannedNode:
    index: int  # 0-based position in the plan (node ids are assigned by the chain)
    operator: int  # dev account index
    class_name: str
    gpu_count: int
    region: str
    acquisition_cost: int  # stablecoin units
    age_days: int
    price_per_gpu_hour: int  # stablecoin units
    bond: int  # stablecoin units

    @property
    def node_key(self) -> str:
        """The node agent's key address: unique and deterministic (nobody signs with it here)."""
        return to_checksum_address(keccak(text=f"gpucap demo node key {self.index}")[12:])

    def offer_amount(self, window_seconds: int = WINDOW_SECONDS) -> int:
        """GPU-hours it offers per window: its whole committable capacity,
        gpus × window hours × commit ratio (8 GPUs × 1 h × 0.9 → 7)."""
        return self.gpu_count * window_seconds * COMMIT_RATIO_BPS // (3_600 * 10_000)


@dataclass(frozen=True)
class PlannedPool:
    node_index: int
    target_assets: int
    investors: tuple[int, ...]
    deposits: tuple[int, ...]  # per investor; summing to the target means a funded round
    stake_share_bps: int  # of each investor's shares, staked once the round succeeded
    # Debt terms in real time (the pool's tenor in epochs is tenor_months of them): what
    # the risk view projects, and what EpochSettlement charges every 30-s epoch.
    tenor_months: int = 48
    rate_bps: int = 1_000

    @property
    def funded(self) -> bool:
        return sum(self.deposits) == self.target_assets


@dataclass(frozen=True)
class WorldPlan:
    seed: int
    nodes: tuple[PlannedNode, ...]
    operators: tuple[int, ...]
    pools: tuple[PlannedPool, ...]
    investors: tuple[int, ...] = INVESTORS
    users: tuple[int, ...] = USERS
    offer_windows: int = 3
    operator_names: dict[int, str] = field(default_factory=dict)

    def operator_funding(self, operator: int) -> int:
        return sum(n.bond for n in self.nodes if n.operator == operator)


# Pools borrow like the field does: 36-60 month tenors at 8-14 % a year, drawn at 55-95 %
# of what the LTV cap allows on the node's depreciated value (so at 45-75 % of cost for a
# new node, less for an older one). Some then breach when prices fall; some do not.
TENORS_MONTHS = (36, 48, 60)
LEVERAGE_OF_CAP = (0.55, 0.95)
MAX_LTV_BPS = 8_000  # scripts/deploy.py DeployConfig.settlement_max_ltv_bps
RAISE_MARGIN_DAYS = 7  # the cap is computed a week older than the node: the round stays open


def pool_target(node: PlannedNode, leverage: float) -> int:
    """A round's target: ``leverage`` x the LTV cap on the node's value a week from now
    (RiskModel's straight-line value; EpochSettlement refuses deposits past the cap),
    in whole thousands."""
    spec = next(c for c in STANDARD_CLASSES if c.name == node.class_name)
    age = (node.age_days + RAISE_MARGIN_DAYS) * 86_400
    value = depreciated_value(
        node.acquisition_cost, spec.residual_value_bps, spec.economic_life_months, 0, age
    )
    cap = value * MAX_LTV_BPS // 10_000
    return int(cap * leverage) // (1_000 * USD) * (1_000 * USD)


def plan_world(nodes: int = DEFAULT_NODES, seed: int = 0, offer_windows: int = 3) -> WorldPlan:
    """A fleet of ``nodes`` nodes over ~1 operator per 80 nodes (2..21) and the standard
    GPU classes; a RevenuePool for ~1 node in 50 (at least 2) among 8-GPU H100/A100 nodes,
    most funded and staked, about one in four left raising."""
    if nodes < 2:
        raise ValueError("a demo world needs at least 2 nodes")
    rng = random.Random(f"gpucap-demo-world:{seed}")
    n_operators = max(2, min(len(OPERATOR_NAMES), nodes // 80))
    operators = (FIRST_OPERATOR, *OPERATOR_RANGE[: n_operators - 1])
    # Operators differ in size: a few large fleets and a long tail.
    weights = [1.0 / (rank + 1) ** 0.7 for rank in range(n_operators)]
    planned: list[PlannedNode] = []
    for index in range(nodes):
        mix = rng.choices(CLASS_MIX, weights=[m.weight for m in CLASS_MIX])[0]
        gpus = rng.choice(mix.gpu_counts)
        ask = mix.price_per_gpu_hour * rng.uniform(0.85, 1.15)
        planned.append(
            PlannedNode(
                index=index,
                operator=operators[0] if index == 0 else rng.choices(operators, weights)[0],
                class_name=mix.name,
                gpu_count=gpus,
                region=rng.choice(REGIONS),
                acquisition_cost=gpus * mix.cost_per_gpu * USD,
                age_days=rng.randint(30, 720),
                price_per_gpu_hour=round(ask * 100) * USD // 100,
                bond=gpus * 250 * USD,
            )
        )
    eligible = [
        n
        for n in planned
        if n.gpu_count == 8 and n.class_name in ("H100-SXM-80GB", "A100-SXM-80GB")
    ]
    n_pools = max(2, min(20, nodes // 50))
    pools: list[PlannedPool] = []
    for k, node in enumerate(rng.sample(eligible, min(n_pools, len(eligible)))):
        target = pool_target(node, rng.uniform(*LEVERAGE_OF_CAP))
        investors = tuple(rng.sample(INVESTORS, 3))
        funded = k % 4 != 1  # from the second pool on, one in four still raising
        if funded:
            first, second = target * 5 // 10, target * 3 // 10
            deposits = (first, second, target - first - second)
        else:
            deposits = (target * 3 // 10, target * 2 // 10, 0)
        pools.append(
            PlannedPool(
                node.index,
                target,
                investors,
                deposits,
                rng.choice((10_000, 7_500, 5_000)),
                tenor_months=rng.choice(TENORS_MONTHS),
                rate_bps=rng.randrange(800, 1_401, 100),
            )
        )
    names = {op: OPERATOR_NAMES[i] for i, op in enumerate(operators)}
    return WorldPlan(
        seed,
        tuple(planned),
        operators,
        tuple(pools),
        offer_windows=offer_windows,
        operator_names=names,
    )


def write_world(path: Path, plan: WorldPlan, node_ids: list[int], pools: dict[int, str]) -> None:
    """world.json: the plan with the chain's node ids and pool addresses (read by the
    activity process, the CLI user and anyone curious)."""
    body = {
        "seed": plan.seed,
        "operators": [
            {
                "dev_account": op,
                "name": plan.operator_names[op],
                "nodes": [node_ids[n.index] for n in plan.nodes if n.operator == op],
            }
            for op in plan.operators
        ],
        "nodes": [
            {**asdict(n), "node_id": node_ids[n.index], "node_key": n.node_key} for n in plan.nodes
        ],
        "pools": [
            {**asdict(p), "node_id": node_ids[p.node_index], "address": pools[p.node_index]}
            for p in plan.pools
        ],
        "investors": list(plan.investors),
        "users": list(plan.users),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    tmp.replace(path)


def read_world(path: Path) -> dict:
    return json.loads(path.read_text())
