"""A node whose pool loan is due for default, on the module's live deployment: bond
deposited, pool drawn with 300 USD of 1_200 staked, and three settled epochs of 100, 0 and
0 USD of usage (arrears pass 10% of the drawn principal)."""

from __future__ import annotations

from typing import Any

from brownie import chain

from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TARGET,
    PRICE_PER_GPU_HOUR,
    SLASHER_ROLE,
    attest,
    deploy_hub_pool,
    item,
)
from tests.oracle.hub_helpers import end_epoch

USD = 10**6
BOND = 400 * USD
DEFAULTED = 2


def defaulting_pool(
    system: Any, admin: Any, operator: Any, staker: Any, key: str
) -> dict[str, Any]:
    """Builds the world above for a fresh node (``key``: one hex byte for its node key);
    returns the node id, the pool and the insurance reserve before any default."""
    s = system
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (operator, staker, admin):
        s.stablecoin.drip(who, {"from": who})
    node = s.registry.registerNode(
        s.class_ids["H100-SXM-80GB"],
        8,
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 86_400,
        "0x" + key * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, BOND, {"from": operator})
    s.registry.depositBond(node, BOND, {"from": operator})
    # Terms bill from the epoch after the one they are set in: set before the draw's epoch.
    s.settlement.setUsageTerms(node, admin, PRICE_PER_GPU_HOUR, {"from": admin})
    s.settlement.approveUsage(node, PRICE_PER_GPU_HOUR, {"from": admin})
    s.stablecoin.approve(s.settlement, 2**256 - 1, {"from": admin})
    end_epoch(s.oracle_hub)
    pool = deploy_hub_pool(s.oracle_hub, s.stablecoin, operator, admin, node, gate=s.settlement)
    s.stablecoin.approve(pool, 2**256 - 1, {"from": staker})
    pool.deposit(POOL_TARGET, staker, {"from": staker})
    pool.drawRaise({"from": operator})
    pool.stake(300 * 10**18, {"from": staker})
    pool.grantRole(DISTRIBUTOR_ROLE, s.settlement, {"from": admin})
    pool.grantRole(SLASHER_ROLE, s.loans, {"from": admin})
    s.settlement.setPool(node, pool, {"from": admin})
    for milli in (100, 0, 0):  # revenue falls short: arrears pass 10% of the principal
        c = attest(s.oracle_hub, {node: milli})
        s.settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
    assert s.loans.defaultDue(node)
    # Read before any keeper runs (a stack may declare the default at once).
    return {"system": s, "node": node, "pool": pool, "reserve": s.settlement.reserveHeld()}
