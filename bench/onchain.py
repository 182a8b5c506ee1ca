"""Figures 1 and 2: exact gas from receipts of a scripted scenario on a private anvil.

Runs in-process with brownie (the same deploy_system the demo and tests use),
attached to an anvil this module starts with a raised block gas limit so the
per-node baseline can batch large fleets. Nothing here asserts a number.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from eth_account import Account

from gpucap import devchain
from gpucap.attestation import NodeLeaf, build_commitment, sign_report

USD = 10**6
HOUR = 3_600
PRICE = 2_500_000
ACQUISITION_COST = 250_000 * USD
ACQUIRED_AT = 1_700_000_000
# High enough for a 1,000-node baseline batch in one transaction.
BLOCK_GAS_LIMIT = 1_000_000_000
BASELINE_BATCH = 100  # node reports per baseline transaction (~61 KB of calldata)


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def load_project() -> Any:
    """Load (and compile if needed) the project once per process, as `brownie run` does."""
    from brownie import project

    os.environ["PATH"] = devchain.env_with_toolchain()["PATH"]
    proj = project.load(devchain.REPO_ROOT, name="GpucapBench")
    proj.load_config()
    # `from brownie import CapacityToken` (scripts/deploy.py) as under `brownie run`.
    sys.modules["brownie"].__dict__.update(proj.dict())
    return proj


def connect(port: int) -> None:
    """Let brownie launch a fresh anvil on ``port`` and connect to it."""
    from brownie import network
    from brownie._config import CONFIG

    dev = CONFIG.networks["development"]
    dev["cmd"] = "anvil"  # brownie picks its node backend by this name
    dev["cmd_settings"] = {
        **(dev.get("cmd_settings") or {}),
        "port": port,
        "evm_version": devchain.HARDFORK,
        "chain_id": devchain.CHAIN_ID,
        "accounts": 20,
        "base_fee": 0,
        "gas_limit": BLOCK_GAS_LIMIT,
    }
    network.connect("development")
    # brownie's default for development is the whole block (1e9 here) per transaction;
    # a fixed limit every scenario call fits under keeps anvil's pool simple.
    network.gas_limit(25_000_000)


def disconnect() -> None:
    from brownie import network

    if network.is_connected():
        network.disconnect()


def oracle_keys() -> list[str]:
    keys = [devchain.dev_private_key(i) for i in (6, 7, 8)]
    return sorted(keys, key=lambda k: int(Account.from_key(k).address, 16))


def operations(proj: Any) -> dict[str, Any]:
    """Gas of each user/operator/keeper operation over one capacity lifecycle.

    Hourly delivery windows over a 30-minute-epoch OracleHub (as the demo's
    short schedule), so the lifecycle needs two attested epochs; every figure
    is the gasUsed of one receipt.
    """
    from brownie import accounts, chain

    from scripts.deploy import DeployConfig, deploy_system

    admin, operator, buyer, keeper = accounts[0], accounts[1], accounts[3], accounts[4]
    config = DeployConfig(
        faucet_drip=10**9 * USD,
        faucet_cooldown_seconds=1,
        epoch_length_seconds=1_800,
        capacity_window_seconds=HOUR,
        capacity_settlement_grace_seconds=HOUR,
        oracle_addresses=tuple(Account.from_key(k).address for k in oracle_keys()),
    )
    s = deploy_system(admin, config)
    coin, reg, cap, hub, fwd = s.stablecoin, s.registry, s.capacity, s.oracle_hub, s.forwarder
    h100 = s.class_ids["H100-SXM-80GB"]
    gas: dict[str, int] = {}
    coin.drip(admin, {"from": admin})
    for who in (operator, buyer):
        coin.transfer(who, 1_000_000 * USD, {"from": admin})

    # OpenZeppelin baselines: the stablecoin is an OZ ERC-20 (permit) as deployed.
    gas["erc20.transfer (OZ, stablecoin)"] = coin.transfer(keeper, USD, {"from": buyer}).gas_used
    gas["erc20.approve (OZ, stablecoin)"] = coin.approve(cap, 2**256 - 1, {"from": buyer}).gas_used
    coin.approve(reg, 2**256 - 1, {"from": operator})

    tx = reg.registerNode(
        h100,
        32,
        _b32("eu-west"),
        ACQUISITION_COST,
        ACQUIRED_AT,
        "0x" + "ab" * 20,
        {"from": operator},
    )
    gas["registerNode"] = tx.gas_used
    nodes = [tx.return_value]
    nodes.append(
        reg.registerNode(
            h100,
            32,
            _b32("eu-west"),
            ACQUISITION_COST,
            ACQUIRED_AT,
            "0x" + "cd" * 20,
            {"from": operator},
        ).return_value
    )
    gas["depositBond (first)"] = reg.depositBond(nodes[0], 1_000 * USD, {"from": operator}).gas_used
    gas["depositBond (top-up)"] = reg.depositBond(nodes[0], USD, {"from": operator}).gas_used
    reg.depositBond(nodes[1], 1_000 * USD, {"from": operator})

    tid = (h100 << 64) | ((chain.time() // HOUR + 2) * HOUR)
    tx = cap.publishOffer(nodes[0], tid, 20, PRICE, {"from": operator})
    gas["publishOffer"] = tx.gas_used
    offer_a = tx.return_value
    offer_b = cap.publishOffer(nodes[1], tid, 10, PRICE, {"from": operator}).return_value
    gas["buy (first of token)"] = cap.buy(offer_a, 10, {"from": buyer}).gas_used
    gas["buy (repeat)"] = cap.buy(offer_a, 5, {"from": buyer}).gas_used

    # Gasless paths: a wallet without ETH signs a permit (and a forward request).
    from gpucap.signing import sign_permit, sign_request

    holder = accounts[5]  # a buyer paying its own gas: the direct permit path
    wallet = Account.from_key(devchain.dev_private_key(5))
    coin.transfer(holder, 100 * USD, {"from": admin})
    deadline = chain.time() + HOUR

    def permit(signer: Any, amount: int) -> tuple[int, bytes, bytes]:
        return sign_permit(
            signer,
            token_name=coin.name(),
            token=coin.address,
            spender=cap.address,
            value=amount * PRICE,
            nonce=coin.nonces(signer.address),
            deadline=deadline,
            chain_id=chain.id,
        )

    tx = cap.buyWithPermit(offer_a, 1, deadline, *permit(wallet, 1), {"from": holder})
    gas["buyWithPermit (direct)"] = tx.gas_used
    wallet = Account.create()  # no ETH: the keeper relays through the forwarder
    coin.transfer(wallet.address, 100 * USD, {"from": admin})
    data = cap.buyWithPermit.encode_input(offer_a, 1, deadline, *permit(wallet, 1))
    req = sign_request(
        wallet, fwd.address, chain.id, cap.address, data, fwd.nonces(wallet.address), deadline
    )
    tx = fwd.execute(req.as_tuple(), {"from": keeper})
    gas["forwarder.execute(buyWithPermit)"] = tx.gas_used
    gas["forwarder overhead (execute - direct buyWithPermit)"] = (
        tx.gas_used - gas["buyWithPermit (direct)"]
    )

    # ERC-1155 baseline: the capacity token itself vs a plain OZ ERC-1155.
    gas["capacity.safeTransferFrom"] = cap.safeTransferFrom(
        buyer, keeper, tid, 1, b"", {"from": buyer}
    ).gas_used
    plain = proj.BaselineERC1155.deploy({"from": admin})
    plain.mint(buyer, 7, 10, {"from": admin})
    plain.mint(keeper, 7, 1, {"from": admin})
    gas["erc1155.safeTransferFrom (OZ)"] = plain.safeTransferFrom(
        buyer, keeper, 7, 1, b"", {"from": buyer}
    ).gas_used
    vault = proj.BaselineVault.deploy(coin, {"from": admin})
    coin.approve(vault, 2**256 - 1, {"from": operator})
    vault.deposit(USD, operator, {"from": operator})
    gas["erc4626.deposit (OZ, repeat depositor)"] = vault.deposit(
        USD, operator, {"from": operator}
    ).gas_used

    cap.buy(offer_b, 10, {"from": buyer})
    tx = cap.redeem(tid, 8, nodes[0], {"from": buyer})
    gas["redeem (partial)"] = tx.gas_used
    rid_a = tx.return_value
    rid_b = cap.redeem(tid, 10, nodes[1], {"from": buyer}).return_value

    # Attest the window's two epochs, then prove and settle.
    window_end = (tid & (2**64 - 1)) + HOUR
    chain.sleep(max(0, window_end - chain[-1].timestamp) + 1)
    chain.mine()
    first, last = cap.windowEpochs(tid)
    commitments = {}
    for i, epoch in enumerate(range(first, last + 1)):
        delivered = {nodes[0]: [3_000, 4_000][i], nodes[1]: 6_000}
        leaves = [_leaf(n, epoch, 10_000, 5_000, 3_600_000, m) for n, m in delivered.items()]
        c = build_commitment(epoch, leaves, hub.configVersion())
        sigs = [
            x.signature for x in sign_report(c.report, oracle_keys()[:2], chain.id, hub.address)
        ]
        tx = hub.attest(c.report.as_tuple(), sigs, {"from": accounts[6]})
        gas["OracleHub.attest (2 of 3 oracles)"] = tx.gas_used
        commitments[epoch] = c

    def prove(node: int, epochs: list[int]) -> Any:
        leaves = [
            next(x for x in commitments[e].leaves if x.node_id == node).values() for e in epochs
        ]
        return cap.proveDelivery(
            node, tid, leaves, [commitments[e].proof(node) for e in epochs], {"from": keeper}
        )

    gas["proveDelivery (1 epoch)"] = prove(nodes[1], [first]).gas_used
    prove(nodes[1], [last])
    tx = prove(nodes[0], [first, last])
    gas["proveDelivery (2 epochs)"] = tx.gas_used
    gas["proveDelivery per epoch (marginal)"] = tx.gas_used - gas["proveDelivery (1 epoch)"]
    chain.sleep(HOUR + 1)
    chain.mine()
    gas["settleReservation (no shortfall)"] = cap.settleReservation(
        rid_b, {"from": keeper}
    ).gas_used
    gas["settleReservation (shortfall, slashes)"] = cap.settleReservation(
        rid_a, {"from": keeper}
    ).gas_used
    gas["releaseExpired"] = cap.releaseExpired(nodes[0], tid, {"from": keeper}).gas_used
    cap.grantRole(cap.PROCEEDS_ROLE(), keeper, {"from": admin})
    gas["collectProceeds"] = cap.collectProceeds(
        nodes[0], 5 * PRICE, operator, {"from": keeper}
    ).gas_used

    ratios = {
        "buy (repeat) / erc20.transfer": gas["buy (repeat)"]
        / gas["erc20.transfer (OZ, stablecoin)"],
        "capacity.safeTransferFrom / OZ erc1155": gas["capacity.safeTransferFrom"]
        / gas["erc1155.safeTransferFrom (OZ)"],
        "depositBond (top-up) / OZ erc4626.deposit": gas["depositBond (top-up)"]
        / gas["erc4626.deposit (OZ, repeat depositor)"],
        "collectProceeds / erc20.transfer": gas["collectProceeds"]
        / gas["erc20.transfer (OZ, stablecoin)"],
    }
    return {"gas": gas, "ratios": {k: round(v, 2) for k, v in ratios.items()}}


def attestation(proj: Any, sizes: list[int]) -> dict[str, Any]:
    """Gas per attested node-epoch: OracleHub (one Merkle root) vs per-node reports.

    The hub reads only NodeRegistry.nodeCount(), so it is pointed at MockNodeCount
    (one storage read, as the registry's view) instead of registering 10,000 nodes.
    The baseline verifies 2 oracle signatures on every node's own report and
    stores every node's metrics; it is sent in batches of BASELINE_BATCH reports.
    """
    from brownie import accounts, chain

    keys = oracle_keys()
    oracles = [Account.from_key(k).address for k in keys]
    admin = accounts[0]
    mock = proj.MockNodeCount.deploy(max(sizes), {"from": admin})
    genesis = chain[-1].timestamp - 1_000 * HOUR  # many ended epochs to attest
    hub = proj.OracleHub.deploy(admin, mock, genesis, HOUR, oracles, 2, {"from": admin})
    baseline = proj.PerNodeAttestationBaseline.deploy(oracles, 2, {"from": admin})
    out: dict[str, Any] = {}
    for epoch, n in enumerate(sizes, start=1):
        leaves = [_leaf(i + 1, epoch, 9_900, 6_000, 28_800_000, 7_500) for i in range(n)]
        c = build_commitment(epoch, leaves, hub.configVersion())
        sigs = [x.signature for x in sign_report(c.report, keys[:2], chain.id, hub.address)]
        merkle_gas = hub.attest(c.report.as_tuple(), sigs, {"from": accounts[6]}).gas_used
        baseline_gas = 0
        for start in range(0, n, BASELINE_BATCH):
            batch = leaves[start : start + BASELINE_BATCH]
            reports = [_baseline_report(leaf) for leaf in batch]
            signatures = [_baseline_sigs(baseline, leaf, keys[:2], chain.id) for leaf in batch]
            baseline_gas += _send_raw_call(
                accounts[6].address,
                baseline.address,
                baseline.attestBatch.encode_input(reports, signatures),
            )
        out[str(n)] = {
            "merkle_attest_gas": merkle_gas,
            "merkle_gas_per_node_epoch": round(merkle_gas / n, 1),
            "baseline_gas_total": baseline_gas,
            "baseline_gas_per_node_epoch": round(baseline_gas / n, 1),
            "ratio_merkle_to_baseline": round(merkle_gas / baseline_gas, 6),
            "baseline_transactions": -(-n // BASELINE_BATCH),
        }
    return out


def _send_raw_call(sender: str, to: str, data: str) -> int:
    """Send through web3 with an explicit gas limit; return the receipt's gasUsed.

    (brownie's own send of these large batches was reported dropped by its
    confirmation watcher, although the same call succeeds sent directly.)
    """
    from brownie import web3

    tx_hash = web3.eth.send_transaction(
        {"from": sender, "to": to, "data": data, "gas": BLOCK_GAS_LIMIT // 2}
    )
    receipt = web3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise RuntimeError(f"baseline batch reverted: {tx_hash.hex()}")
    return int(receipt["gasUsed"])


_NODE_REPORT_TYPES = {
    "NodeReport": [
        {"name": "nodeId", "type": "uint256"},
        {"name": "epoch", "type": "uint64"},
        {"name": "uptimeBps", "type": "uint16"},
        {"name": "utilizationBps", "type": "uint16"},
        {"name": "sampleCoverageBps", "type": "uint16"},
        {"name": "energyWh", "type": "uint64"},
        {"name": "milliGpuHours", "type": "uint64"},
    ]
}


def _leaf(node: int, epoch: int, uptime: int, util: int, joules: int, milli: int) -> NodeLeaf:
    """A fully observed leaf v2 (first of its node: cum* = this epoch's figures)."""
    return NodeLeaf.measured(
        node,
        epoch,
        uptime_bps=uptime,
        utilization_bps=util,
        sample_coverage_bps=10_000,
        utilization_coverage_bps=10_000,
        energy_coverage_bps=10_000,
        energy_joules=joules,
        milli_gpu_hours=milli,
        busy_gpu_seconds=milli * 36 * util // 100_000,
        challenges_passed=1,
    )


def _baseline_report(leaf: NodeLeaf) -> tuple[int, ...]:
    """The per-node baseline's report (its own v1-shaped struct: the figures a per-node
    post would carry; contracts/test/PerNodeAttestationBaseline.sol)."""
    return (
        leaf.node_id,
        leaf.epoch,
        leaf.uptime_bps,
        leaf.utilization_bps,
        leaf.sample_coverage_bps,
        leaf.energy_wh,
        leaf.milli_gpu_hours,
    )


def _baseline_sigs(baseline: Any, leaf: NodeLeaf, keys: list[str], chain_id: int) -> list[bytes]:
    """Quorum signatures (ascending signer, as the baseline requires) over one node's report."""
    message = dict(
        zip(
            [f["name"] for f in _NODE_REPORT_TYPES["NodeReport"]],
            _baseline_report(leaf),
            strict=True,
        )
    )
    domain = {
        "name": "gpucap PerNodeBaseline",
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": baseline.address,
    }
    return [
        bytes(
            Account.sign_typed_data(
                k, domain_data=domain, message_types=_NODE_REPORT_TYPES, message_data=message
            ).signature
        )
        for k in keys  # already sorted by signer address
    ]
