"""Figure 9: on-chain gas per node-epoch as settlement and delivery proofs cover ranges (#20).

Exact gas from receipts on the bench's anvil (the same brownie session as figures 1-2),
with the real contracts deployed by scripts/deploy.py:

- ``EpochSettlement.settle`` per settled node-epoch when one settlement covers 1, 24 and
  168 epochs, for one node alone and a batch of ten (nodes with usage terms and no pool:
  usage billed, split, credited). Each node's first settlement (it bills only its own
  epoch) comes first and is not counted.
- ``CapacityToken.proveDelivery`` leaf by leaf against ``proveDeliveryRange`` (first and
  last leaf) for 1, 24 and 168 proven epochs of one window (the cost depends on the
  epochs proven, not on how long the window is; each figure proves a fresh node's epochs).
- ``OracleHub.attest`` of one root for 1,000 and 10,000 nodes (as figure 2: the hub
  reads only MockNodeCount, so no 10,000 registrations).

Derived: the whole on-chain cost of one node-epoch = attest / nodes + a batched settlement
covering a day (24 epochs) / 24 + a day's delivery range proof / 24, and how many nodes a
chain of 30M-gas blocks every 12 s carries at hourly epochs (300 blocks an hour). Nothing
here asserts a number; the table says whether #20's goal (<= 2,000 gas at 1,000 nodes) is met.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account

from gpucap.attestation import Cumulative, NodeLeaf, build_commitment, sign_report

USD = 10**6
EPOCH = 60  # seconds: gas does not depend on the epoch's length, sleeping does
PRICE_PER_GPU_HOUR = 2 * USD
ACQUISITION_COST = 250_000 * USD
BLOCK_GAS = 30_000_000
BLOCKS_PER_HOUR = 3_600 // 12
GOAL_GAS_PER_NODE_EPOCH = 2_000
GOAL_NODES = 1_000
DAY_EPOCHS = 24  # the keeper's default cadence (GPUCAP_EPOCH_SETTLE_MIN_EPOCHS)


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def _leaf(node: int, epoch: int, base: Cumulative) -> NodeLeaf:
    util = 6_000
    milli = 7_500  # 7.5 GPU-hours an epoch
    return NodeLeaf.measured(
        node,
        epoch,
        uptime_bps=9_900,
        utilization_bps=util,
        sample_coverage_bps=10_000,
        utilization_coverage_bps=10_000,
        energy_coverage_bps=10_000,
        energy_joules=28_800_000,
        milli_gpu_hours=milli,
        busy_gpu_seconds=milli * 36 * util // 100_000,
        challenges_passed=1,
        base=base,
    )


def settlement(
    proj: Any, keys: list[str], *, ranges: list[int], batch: int, fleets: list[int]
) -> dict[str, Any]:
    """Figure 9's receipts: settlements covering each of ``ranges`` epochs (one node, and
    ``batch`` nodes in one call), delivery proofs of as many epochs, attestations of each
    of ``fleets`` nodes. ``keys``: the oracle keys sorted by address (figure 2's)."""
    from brownie import accounts, chain

    from scripts.deploy import DeployConfig, deploy_system

    admin, operator, payer, keeper = accounts[0], accounts[1], accounts[3], accounts[4]
    # Epochs needed: each settled node's anchor, then one settlement per range after it;
    # the delivery window covers the longest proof.
    epochs_needed = 1 + sum(ranges)
    # Whole hours (the contract's rule), at least the longest proof.
    window = -(-max(ranges) * EPOCH // 3_600) * 3_600
    # Genesis just ahead, aligned to a window so that the window starting at genesis is a
    # valid token id: the usage terms are set before epoch 1 (terms bill from the epoch after
    # the one they are set in), then time runs until every epoch needed has ended.
    behind = max(window, (epochs_needed + 2) * EPOCH)
    genesis = (chain[-1].timestamp // window + 1) * window
    config = DeployConfig(
        faucet_drip=10**9 * USD,
        faucet_cooldown_seconds=1,
        epoch_length_seconds=EPOCH,
        epoch_genesis_timestamp=genesis,
        capacity_window_seconds=window,
        capacity_settlement_grace_seconds=3_600,
        oracle_addresses=tuple(Account.from_key(k).address for k in keys),
    )
    s = deploy_system(admin, config)
    coin, reg, hub, settle = s.stablecoin, s.registry, s.oracle_hub, s.settlement
    h100 = s.class_ids["H100-SXM-80GB"]
    coin.drip(admin, {"from": admin})
    coin.transfer(payer, 10**8 * USD, {"from": admin})
    coin.approve(settle, 2**256 - 1, {"from": payer})
    settle.grantRole(settle.SETTLER_ROLE(), keeper, {"from": admin})

    # Settled nodes: one alone, `batch` together; proven nodes: two per proof length.
    settled = [
        reg.registerNode(
            h100,
            8,
            _b32("eu-west"),
            ACQUISITION_COST,
            genesis - 86_400,
            "0x" + f"{i + 1:040x}",
            {"from": operator},
        ).return_value
        for i in range(1 + batch + 2 * len(ranges))
    ]
    proven = settled[1 + batch :]
    settled = settled[: 1 + batch]
    for node in settled:
        settle.setUsageTerms(node, payer, PRICE_PER_GPU_HOUR, {"from": admin})
        settle.approveUsage(node, PRICE_PER_GPU_HOUR, {"from": payer})
    chain.sleep(genesis + behind - chain[-1].timestamp)
    chain.mine()

    # Attest every epoch needed, every node with a leaf whose counters run since epoch 1.
    nodes = settled + proven
    cums = {n: Cumulative() for n in nodes}
    commitments = {}
    for epoch in range(1, epochs_needed + 1):
        leaves = []
        for n in nodes:
            leaf = _leaf(n, epoch, cums[n])
            cums[n] = Cumulative.of(leaf)
            leaves.append(leaf)
        c = build_commitment(epoch, leaves, hub.configVersion())
        sigs = [x.signature for x in sign_report(c.report, keys[:2], chain.id, hub.address)]
        hub.attest(c.report.as_tuple(), sigs, {"from": accounts[6]})
        commitments[epoch] = c

    def item(node: int, epoch: int) -> tuple[Any, list[str]]:
        c = commitments[epoch]
        return (next(x for x in c.leaves if x.node_id == node).values(), c.proof(node))

    def settle_at(epoch: int, group: list[int], since: int) -> int:
        tx = settle.settle(epoch, [item(n, epoch) for n in group], {"from": keeper})
        settled = tx.events["NodeSettled"]
        # The figure is only what it says if every node settled the whole range (since, epoch].
        if (
            len(settled) != len(group)
            or {e["fromEpoch"] for e in settled} != {since + 1}
            or any(e["usage"] == 0 for e in settled)
        ):
            raise RuntimeError(f"settle({epoch}) did not settle {group} from {since + 1}")
        return tx.gas_used

    alone, together = settled[:1], settled[1:]
    settle_at(1, alone, 0)  # first settlements: the anchor, only its own epoch billed
    settle_at(1, together, 0)
    per_settlement: dict[str, Any] = {}
    last = 1
    for span in ranges:
        one, many = settle_at(last + span, alone, last), settle_at(last + span, together, last)
        last += span
        per_settlement[str(span)] = {
            "gas_1_node": one,
            "gas_per_node_epoch_1_node": round(one / span, 1),
            f"gas_{batch}_nodes": many,
            "gas_per_node_epoch_batch": round(many / (batch * span), 1),
        }

    # Delivery proofs over `span` epochs of the window that starts at genesis.
    token = (h100 << 64) | genesis
    cap = s.capacity
    proofs: dict[str, Any] = {}
    for i, span in enumerate(ranges):
        by_leaf, by_range = proven[2 * i], proven[2 * i + 1]
        epochs = range(1, span + 1)
        leaves = [item(by_leaf, e) for e in epochs]
        one_by_one = cap.proveDelivery(
            by_leaf, token, [x for x, _ in leaves], [p for _, p in leaves], {"from": keeper}
        ).gas_used
        (first, first_proof), (last_leaf, last_proof) = item(by_range, 1), item(by_range, span)
        ranged = cap.proveDeliveryRange(
            by_range, token, first, first_proof, last_leaf, last_proof, {"from": keeper}
        ).gas_used
        proofs[str(span)] = {
            "proveDelivery_gas": one_by_one,
            "proveDeliveryRange_gas": ranged,
            "range_gas_per_epoch": round(ranged / span, 1),
        }

    attest = _attest_fleet(proj, keys, fleets)
    day = str(DAY_EPOCHS) if str(DAY_EPOCHS) in per_settlement else str(max(ranges))
    settle_share = per_settlement[day]["gas_per_node_epoch_batch"]
    proof_share = proofs[day]["range_gas_per_epoch"]
    totals: dict[str, Any] = {}
    for n, gas in attest.items():
        total = gas / int(n) + settle_share + proof_share
        totals[n] = {
            "attest_gas": gas,
            "attest_per_node_epoch": round(gas / int(n), 1),
            "settle_per_node_epoch": settle_share,
            "delivery_proof_per_node_epoch": proof_share,
            "total_per_node_epoch": round(total, 1),
            "nodes_per_chain_hourly": int(BLOCKS_PER_HOUR * BLOCK_GAS / total),
        }
    # Beside it (not the goal's terms): the longest range measured, for settlement and the
    # delivery window alike, to show where the cost per node-epoch goes as ranges grow.
    longest = str(max(ranges))
    totals_longest = {
        n: round(
            gas / int(n)
            + per_settlement[longest]["gas_per_node_epoch_batch"]
            + proofs[longest]["range_gas_per_epoch"],
            1,
        )
        for n, gas in attest.items()
    }
    goal = totals.get(str(GOAL_NODES))
    return {
        "figure": 9,
        "epochs_per_day_settlement": int(day),
        "settle": per_settlement,
        "settle_batch_nodes": batch,
        "delivery_proof": proofs,
        "totals": totals,
        "longest_range": int(longest),
        "total_per_node_epoch_at_longest_range": totals_longest,
        "goal_gas_per_node_epoch": GOAL_GAS_PER_NODE_EPOCH,
        "goal_met": None
        if goal is None
        else goal["total_per_node_epoch"] <= GOAL_GAS_PER_NODE_EPOCH,
    }


def _attest_fleet(proj: Any, keys: list[str], fleets: list[int]) -> dict[str, int]:
    """OracleHub.attest gas for one root over each fleet size (figure 2's method)."""
    from brownie import accounts, chain

    admin = accounts[0]
    mock = proj.MockNodeCount.deploy(max(fleets), {"from": admin})
    genesis = chain[-1].timestamp - 100 * EPOCH
    oracles = [Account.from_key(k).address for k in keys]
    hub = proj.OracleHub.deploy(admin, mock, genesis, EPOCH, oracles, 2, {"from": admin})
    out: dict[str, int] = {}
    for epoch, n in enumerate(fleets, start=1):
        leaves = [_leaf(i + 1, epoch, Cumulative()) for i in range(n)]
        c = build_commitment(epoch, leaves, hub.configVersion())
        sigs = [x.signature for x in sign_report(c.report, keys[:2], chain.id, hub.address)]
        out[str(n)] = hub.attest(c.report.as_tuple(), sigs, {"from": accounts[6]}).gas_used
    return out


def lines(r: dict[str, Any] | None) -> list[str]:
    """Figure 9 in the printed table."""
    if not r:
        return []
    out = ["", "9. settlement and delivery proofs over ranges (exact gas, receipts; #20)"]
    if "error" in r:
        return [*out, f"   ERROR {r['error']}"]
    batch = r["settle_batch_nodes"]
    for span, g in r["settle"].items():
        out.append(
            f"   settle covering {int(span):>3} epochs: 1 node {g['gas_1_node']:>9,} "
            f"({g['gas_per_node_epoch_1_node']:>10,.1f}/node-epoch), {batch} nodes "
            f"{g[f'gas_{batch}_nodes']:>9,} ({g['gas_per_node_epoch_batch']:>10,.1f}/node-epoch)"
        )
    for span, p in r["delivery_proof"].items():
        out.append(
            f"   delivery proof of {int(span):>3} epochs: leaf by leaf "
            f"{p['proveDelivery_gas']:>10,}  range {p['proveDeliveryRange_gas']:>8,} "
            f"({p['range_gas_per_epoch']:>9,.1f}/epoch)"
        )
    day = r["epochs_per_day_settlement"]
    for n, t in r["totals"].items():
        out.append(
            f"   {int(n):>6,} nodes: {t['total_per_node_epoch']:>8,.1f} gas/node-epoch (attest "
            f"{t['attest_per_node_epoch']:,.1f} + settle/{day} {t['settle_per_node_epoch']:,.1f}"
            f" + proof/{day} {t['delivery_proof_per_node_epoch']:,.1f}); a 30M-gas/12 s chain "
            f"carries {t['nodes_per_chain_hourly']:,} nodes at hourly epochs"
        )
    longest = r["longest_range"]
    for n, total in r["total_per_node_epoch_at_longest_range"].items():
        out.append(
            f"   {int(n):>6,} nodes, settled and proven {longest} epochs at once: "
            f"{total:,.1f} gas/node-epoch"
        )
    goal = r["goal_met"]
    verdict = "not measured at 1,000 nodes" if goal is None else ("met" if goal else "NOT met")
    out.append(
        f"   goal <= {r['goal_gas_per_node_epoch']:,} gas/node-epoch at 1,000 nodes: {verdict}"
    )
    return out
