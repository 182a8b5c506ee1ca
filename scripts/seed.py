"""Seed a small demo world on a freshly deployed system.

    brownie run scripts/seed.py --network <network>

Reads the manifest written by scripts/deploy.py ($GPUCAP_MANIFEST or
deployments/<network>.json). Uses anvil's development keys: it is for local
chains only and refuses to run on a chain whose id is not anvil's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from brownie import CapacityToken, Contract, NodeRegistry, TestStablecoin, accounts, chain, network

from gpucap import devchain

REPO_ROOT = Path(__file__).resolve().parent.parent
USD = 10**6


def _manifest() -> dict:
    path = (
        os.environ.get("GPUCAP_MANIFEST")
        or REPO_ROOT / "deployments" / f"{network.show_active()}.json"
    )
    return json.loads(Path(path).read_text())


def main() -> None:
    if chain.id != devchain.CHAIN_ID:
        raise SystemExit(f"seed.py uses development keys; refusing chain id {chain.id}")
    manifest = _manifest()
    addresses = {name: c["address"] for name, c in manifest["contracts"].items()}
    # Contract.from_abi, not ContainerType.at: brownie 1.22's .at() fails on
    # live networks while recording the deployment (TypeError in _add_deployment).
    stablecoin = Contract.from_abi(
        "TestStablecoin", addresses["TestStablecoin"], TestStablecoin.abi
    )
    registry = Contract.from_abi("NodeRegistry", addresses["NodeRegistry"], NodeRegistry.abi)
    capacity = Contract.from_abi("CapacityToken", addresses["CapacityToken"], CapacityToken.abi)

    operator = accounts.add(devchain.dev_private_key(1))
    buyer = accounts.add(devchain.dev_private_key(3))
    node_key = accounts.add(devchain.dev_private_key(10))
    h100 = manifest["gpu_classes"]["H100-SXM-80GB"]

    stablecoin.drip(operator, {"from": operator})
    acquisition_cost = 8 * 30_000 * USD  # 8 GPUs at ~$30k each
    acquired_at = chain.time() - 90 * 24 * 3600  # commissioned a quarter ago
    tx = registry.registerNode(
        h100,
        8,
        b"eu-west".ljust(32, b"\0"),
        acquisition_cost,
        acquired_at,
        node_key,
        {"from": operator},
    )
    node_id = tx.events["NodeRegistered"]["nodeId"]

    bond = 5_000 * USD
    stablecoin.approve(registry, bond, {"from": operator})
    registry.depositBond(node_id, bond, {"from": operator})

    # Tomorrow's delivery window: 100 GPU-hours at 2.00 tUSD per GPU-hour.
    window = capacity.windowSeconds()
    window_start = (chain.time() // window + 1) * window
    token_id = capacity.tokenIdFor(h100, window_start)
    offer_tx = capacity.publishOffer(node_id, token_id, 100, 2 * USD, {"from": operator})
    offer_id = offer_tx.events["OfferPublished"]["offerId"]

    stablecoin.drip(buyer, {"from": buyer})
    stablecoin.approve(capacity, 20 * USD, {"from": buyer})
    capacity.buy(offer_id, 10, {"from": buyer})

    print(
        f"operator {operator.address}: node {node_id} (8 x H100-SXM-80GB, eu-west), "
        f"bond {bond / USD:,.0f} tUSD; offer {offer_id}: 100 GPU-hours of token {token_id} "
        f"at 2.00 tUSD; buyer {buyer.address} bought 10"
    )
