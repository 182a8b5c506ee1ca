"""CapacityToken settlement under attack (re-entrant stablecoin), and the gas of the
redemption path (run with -s to see the figures)."""

import brownie
from brownie import ZERO_ADDRESS, NodeRegistry, OracleHub, ReentrantToken, chain

from tests.contracts.capacity_helpers import (
    GRACE,
    HOUR,
    PRICE,
    attest_window,
    deploy_capacity_token,
    prove_args,
    token_id,
)
from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, USD, b32
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of
from tests.support.errors import err

CEILINGS = {"redeem": 170_000, "proveDelivery (2 epochs)": 110_000, "settle (shortfall)": 110_000}


def _market(admin, forwarder, token):
    registry = NodeRegistry.deploy(admin, token, forwarder, 3600, {"from": admin})
    class_id = registry.registerGpuClass(
        b32("H100-SXM-80GB"), 700, 1_000, 48, 2_000, {"from": admin}
    ).return_value
    oracles = [address_of(key) for key in ORACLE_KEYS]
    hub = OracleHub.deploy(admin, registry, chain[-1].timestamp, 1_800, oracles, 2, {"from": admin})
    cap = deploy_capacity_token(admin, registry, hub, token, forwarder, HOUR)
    registry.grantRole(registry.BOND_LOCKER_ROLE(), cap, {"from": admin})
    registry.grantRole(registry.SLASHER_ROLE(), cap, {"from": admin})
    return registry, hub, cap, class_id


def test_reentrant_stablecoin_cannot_reenter_from_the_refund(admin, forwarder, operator, buyer):
    token = ReentrantToken.deploy({"from": admin})
    registry, hub, cap, class_id = _market(admin, forwarder, token)
    node = registry.registerNode(
        class_id,
        32,
        b32("eu-west"),
        ACQUISITION_COST,
        ACQUIRED_AT,
        "0x" + "cd" * 20,
        {"from": operator},
    ).return_value
    for who, spender in ((operator, registry), (buyer, cap)):
        token.mint(who, 1_000 * USD, {"from": admin})
        token.approve(spender, 2**256 - 1, {"from": who})
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(class_id, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 10, PRICE, {"from": operator}).return_value
    cap.buy(offer, 10, {"from": buyer})
    rid = cap.redeem(tid, 5, node, {"from": buyer}).return_value
    attest_window(hub, cap, tid, {node: [0, 0]})
    chain.sleep(GRACE)

    # The refund transfer (registry.slash → token → holder) calls back into the market,
    # trying a state change that would otherwise succeed (5 unredeemed hours can expire).
    token.arm(cap, cap.releaseExpired.encode_input(node, tid), {"from": admin})
    with brownie.reverts(err("ReentrancyGuardReentrantCall")):
        cap.settleReservation(rid, {"from": buyer})

    token.arm(ZERO_ADDRESS, b"", {"from": admin})
    before = token.balanceOf(buyer)
    tx = cap.settleReservation(rid, {"from": buyer})
    assert token.balanceOf(buyer) - before == tx.events["ReservationSettled"]["refund"] == 15 * USD
    cap.releaseExpired(node, tid, {"from": buyer})


def test_gas(hourly_capacity, hourly_hub, registry, register_node, h100, operator, buyer, fund):
    cap, hub = hourly_capacity, hourly_hub
    node = register_node(gpu_count=32)
    fund(operator, 1_000 * USD, registry)
    registry.depositBond(node, 1_000 * USD, {"from": operator})
    tid = token_id(h100, (chain.time() // HOUR + 2) * HOUR)
    offer = cap.publishOffer(node, tid, 20, PRICE, {"from": operator}).return_value
    fund(buyer, 1_000 * USD, cap)
    cap.buy(offer, 20, {"from": buyer})
    gas = {}
    tx = cap.redeem(tid, 10, node, {"from": buyer})
    gas["redeem"] = tx.gas_used
    gas["redeem (repeat)"] = cap.redeem(tid, 10, node, {"from": buyer}).gas_used
    commitments = attest_window(hub, cap, tid, {node: [3_000, 4_000]})
    proof = cap.proveDelivery(node, tid, *prove_args(commitments, node), {"from": operator})
    gas["proveDelivery (2 epochs)"] = proof.gas_used
    gas["settle (shortfall, first: finalizes)"] = cap.settleReservation(tx.return_value).gas_used
    gas["settle (shortfall)"] = cap.settleReservation(tx.return_value + 1).gas_used
    print("\nGAS " + ", ".join(f"{k}={v}" for k, v in gas.items()))
    for name, ceiling in CEILINGS.items():
        assert gas[name] <= ceiling, (name, gas[name])
