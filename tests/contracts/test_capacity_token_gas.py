"""Gas of the hot paths, with ceilings so a regression fails loudly.
Run with -s to see the figures."""

from brownie import chain

from tests.contracts.capacity_helpers import DAY, NODE_BOND, PRICE, token_id
from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, USD, b32

CEILINGS = {
    "registerNode": 200_000,
    "depositBond (first)": 90_000,
    "depositBond (top-up)": 60_000,
    "publishOffer": 200_000,
    # buy also opens the node's Obligation for the id (2 slots) that redemption draws on.
    "buy (first)": 205_000,
    "buy (repeat)": 110_000,
}


def test_gas(registry, capacity, h100, operator, buyer, fund):
    gas = {}
    tx = registry.registerNode(
        h100, 8, b32("eu-west"), ACQUISITION_COST, ACQUIRED_AT, "0x" + "ab" * 20, {"from": operator}
    )
    gas["registerNode"] = tx.gas_used
    node = tx.return_value
    fund(operator, NODE_BOND + USD, registry)
    gas["depositBond (first)"] = registry.depositBond(node, NODE_BOND, {"from": operator}).gas_used
    gas["depositBond (top-up)"] = registry.depositBond(node, USD, {"from": operator}).gas_used
    window = (chain.time() // DAY + 3) * DAY
    tx = capacity.publishOffer(node, token_id(h100, window), 100, PRICE, {"from": operator})
    gas["publishOffer"] = tx.gas_used
    fund(buyer, 1_000 * USD, capacity)
    gas["buy (first)"] = capacity.buy(tx.return_value, 10, {"from": buyer}).gas_used
    gas["buy (repeat)"] = capacity.buy(tx.return_value, 10, {"from": buyer}).gas_used
    print("\nGAS " + ", ".join(f"{k}={v}" for k, v in gas.items()))
    for name, used in gas.items():
        assert used <= CEILINGS[name], (name, used)
