"""Pools and settlements through the real parts: anvil, the deployed system, a pool bound
with setPool after its round filled, two settled epochs, a loss, a claim; the real
indexer fills the database and the real HTTP API answers from it. Every indexed figure
is compared with what the contracts report (stakeOf, totals, nodeRisk)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from brownie import chain, web3

from backend.db.session import get_sessionmaker
from backend.risk.formulas import MONTH_SECONDS
from backend.services.chain import Chain
from backend.services.indexing.indexer import Indexer
from gpucap import devchain
from tests.backend.backend_helpers import (
    ServiceProcess,
    assert_decoding_matches_web3,
    backend_env,
    http_up,
)
from tests.contracts.settlement_helpers import (
    DISTRIBUTOR_ROLE,
    POOL_TARGET,
    PRICE_PER_GPU_HOUR,
    attest,
    deploy_hub_pool,
    item,
)
from tests.oracle.hub_helpers import end_epoch
from tests.support.backends import Backend, migrated_database

USD = 10**6
SLASHER_ROLE = bytes(web3.keccak(text="SLASHER_ROLE"))
INFINITE = 2**256 - 1


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, buyer, staker):
    """Node + pool: buyer deposits 800, staker 400; operator draws; both stake; then the
    pool is bound (PoolSet after the round: the indexer must backfill), two epochs are
    settled with usage, a loss is booked, the staker claims, the buyer starts unstaking."""
    s = live_deployment.system
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (operator, buyer, staker, admin):
        s.stablecoin.drip(who, {"from": who})
    node = s.registry.registerNode(
        s.class_ids["H100-SXM-80GB"],
        8,
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 86_400,
        "0x" + "7e" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    # Terms bill from the epoch after the one they are set in: set before the draw's epoch.
    s.settlement.setUsageTerms(node, admin, PRICE_PER_GPU_HOUR, {"from": admin})
    s.settlement.approveUsage(node, PRICE_PER_GPU_HOUR, {"from": admin})
    s.stablecoin.approve(s.settlement, 2**256 - 1, {"from": admin})
    end_epoch(s.oracle_hub)
    pool = deploy_hub_pool(s.oracle_hub, s.stablecoin, operator, admin, node, gate=s.settlement)
    for who, amount in ((buyer, 800 * USD), (staker, POOL_TARGET - 800 * USD)):
        s.stablecoin.approve(pool, 2**256 - 1, {"from": who})
        pool.deposit(amount, who, {"from": who})
    pool.drawRaise({"from": operator})
    pool.stake(500 * 10**18, {"from": buyer})
    pool.stake(pool.balanceOf(staker), {"from": staker})
    pool.transfer(operator, 50 * 10**18, {"from": buyer})  # shares move between wallets
    pool.grantRole(DISTRIBUTOR_ROLE, s.settlement, {"from": admin})
    pool.grantRole(SLASHER_ROLE, admin, {"from": admin})
    s.settlement.setPool(node, pool, {"from": admin})
    epochs = []
    for milli in (1_000, 100):  # the second epoch's net does not cover the debt: arrears
        c = attest(s.oracle_hub, {node: milli})
        s.settlement.settle(c.report.epoch, [item(c, node)], {"from": admin})
        epochs.append(c.report.epoch)
    pool.bookLoss(30 * USD, admin, {"from": admin})
    pool.claim(staker, {"from": staker})
    pool.requestUnstake(100 * 10**18, {"from": buyer})
    return {"node": node, "pool": pool, "epochs": epochs, "system": s}


@pytest.fixture(scope="module")
def api(live_deployment, world, tmp_path_factory, backend: Backend) -> Iterator[dict[str, Any]]:
    """The index, caught up in this process; the API as its own process over the same DB."""
    tmp: Path = tmp_path_factory.mktemp("pools")
    with migrated_database(backend, tmp) as url:
        no_redis = f"redis://127.0.0.1:{devchain.free_port()}/0"
        env = backend_env(tmp, live_deployment, no_redis, url)
        sessions = get_sessionmaker(url)
        indexer = Indexer(
            Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0),
            sessions,
            batch_blocks=5,  # several batches: the pool's backfill spans earlier ones
            max_batches=10_000,
        )
        indexer.step()
        port = devchain.free_port()
        base = f"http://127.0.0.1:{port}"
        proc = ServiceProcess("api", ["api", "--port", str(port)], env, tmp / "api.log")
        proc.start(ready=lambda: http_up(base + "/docs"))
        try:
            yield {"url": base + "/api/v1", "indexer": indexer, "sessions": sessions}
        finally:
            proc.stop()


def _get(api, path: str, **params: Any) -> Any:
    resp = requests.get(api["url"] + path, params=params, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _position_matches_chain(api, pool, who) -> dict[str, Any]:
    body = _get(api, f"/pools/{pool.address}/positions/{who.address}")
    info = pool.stakeOf(who)
    assert int(body["shares"]) == pool.balanceOf(who)
    assert int(body["staked_earning"]) == info["earningShares"]
    assert int(body["staked_warming"]) == info["pendingShares"]
    assert int(body["staked"]) == info["earningShares"] + info["pendingShares"]
    assert int(body["cooling"]["amount"]) == info["coolingShares"]
    assert (body["cooling"]["unlock_epoch"] or 0) == info["unlockEpoch"]
    assert body["claimable"] == info["claimableAssets"]
    assert body["claimed"] == info["claimedAssets"]
    assert int(body["principal_shares"]) == info["principalShares"]
    assert int(body["loss_taken"]) == info["lossShares"]
    assert int(body["released"]) == info["releasedShares"]
    return body


def _totals_match_chain(api, pool) -> dict[str, Any]:
    body = _get(api, f"/pools/{pool.address}")
    totals = pool.totals()
    assert int(body["total_shares"]) == pool.totalSupply()
    assert int(body["total_staked"]) == totals["stakedShares"]
    assert int(body["released_shares"]) == totals["releasedShares"]
    assert int(body["loss_shares"]) == totals["lossShares"]
    assert body["losses_booked"] == totals["lossAssets"]
    assert body["revenue_distributed"] == totals["revenueInAssets"]
    assert body["revenue_claimed"] == totals["revenuePaidAssets"]
    return body


def test_pool_positions_and_totals_match_the_chain(api, world, buyer, staker, operator):
    pool, s, node = world["pool"], world["system"], world["node"]
    for who in (buyer, staker, operator):
        _position_matches_chain(api, pool, who)
    staker_pos = _position_matches_chain(api, pool, staker)
    assert staker_pos["claimed"] > 0  # revenue reached the stakers and was claimed
    buyer_pos = _position_matches_chain(api, pool, buyer)
    assert int(buyer_pos["loss_taken"]) > 0 and int(buyer_pos["cooling"]["amount"]) > 0
    assert _totals_match_chain(api, pool)["released_shares"] == "0"

    body = _get(api, f"/pools/{pool.address.lower()}")
    totals = pool.totals()
    assert (body["node_id"], body["operator"], body["name"]) == (
        node,
        operator.address,
        pool.name(),
    )
    assert body["round"]["state"] == "drawn"
    assert body["round"]["raised"] == totals["raisedAssets"] == POOL_TARGET
    assert int(body["total_shares"]) == pool.totalSupply()
    assert int(body["total_staked"]) == totals["stakedShares"]
    assert body["revenue_distributed"] == totals["revenueInAssets"]
    assert body["revenue_claimed"] == totals["revenuePaidAssets"]
    assert body["losses_booked"] == totals["lossAssets"] == 30 * USD
    assert int(body["loss_shares"]) == totals["lossShares"]
    current = s.oracle_hub.currentEpoch()
    assert body["current_epoch"] == current
    principal, interest = pool.debtServiceDue(current)
    assert body["debt"]["service_per_epoch"] == principal + interest
    assert body["debt"]["outstanding"] == pool.debtOutstanding(current)
    assert body["debt"]["principal"] == POOL_TARGET

    risk_now = s.settlement.nodeRisk(node)
    assert body["debt"]["arrears"] == risk_now["arrears"] > 0
    risk = body["risk"]
    assert risk["last_settled_epoch"] == world["epochs"][-1] == risk_now["lastSettledEpoch"]
    assert risk["dscr_bps"] == risk_now["dscrBps"]
    assert (risk["flagged"], risk["dscr_breach"], risk["ltv_breach"]) == (
        risk_now["flagged"],
        risk_now["dscrBreach"],
        risk_now["ltvBreach"],
    )
    assert risk["collateral_value"] > 0

    listed = _get(api, "/pools", operator=operator.address.lower())
    assert [p["address"] for p in listed] == [pool.address]
    assert _get(api, "/pools", node_id=node + 1000) == []

    portfolio = _get(api, f"/portfolio/{staker.address}")
    assert [p["pool"] for p in portfolio["pools"]] == [pool.address]
    assert "stablecoin" in portfolio and "capacity" in portfolio


def test_history_and_settlements_add_up(api, world):
    pool, node = world["pool"], world["node"]
    settled = _get(api, f"/nodes/{node}/settlements")
    assert [r["epoch"] for r in settled] == world["epochs"][::-1]
    for row in settled:
        split = row["split"]
        assert row["gross"] == row["usage"] + row["proceeds"] > 0
        assert row["gross"] == sum(split.values())
        assert row["net"] == split["debt_paid"] + split["stakers"]
    history = {h["epoch"]: h for h in _get(api, f"/pools/{pool.address}/history")}
    for row in settled:
        h = history[row["epoch"]]
        assert h["debt_paid"] == row["split"]["debt_paid"]
        assert h["stakers_share"] == row["split"]["stakers"]
        assert h["revenue_distributed"] == h["debt_paid"] + h["stakers_share"]
    assert sum(h["loss_assets"] for h in history.values()) == 30 * USD
    assert sum(h["revenue_distributed"] for h in history.values()) == pool.totals()[3]


def test_stress_over_the_pools_projects_each_loan_in_months(api, world):
    """scope=pools: the server finds every pool's node and its loan in the index, the
    tenor and time since the draw converted from the pool's epochs to 30-day months; the
    answer equals a node_ids request carrying that loan by hand."""
    pool, node = world["pool"], world["node"]
    detail = _get(api, f"/pools/{pool.address}")
    debt, epoch_s = detail["debt"], detail["epoch_length_seconds"]
    start = chain[-1].timestamp // 3600 * 3600 + 10 * MONTH_SECONDS  # ten months on
    drawn_at = detail["genesis_timestamp"] + debt["draw_epoch"] * epoch_s
    tenor = -(-debt["tenor_epochs"] * epoch_s // MONTH_SECONDS)
    loan = {
        "drawn_assets": str(Decimal(debt["principal"]) / 10**6),  # USD, a decimal string
        "tenor_months": tenor,
        "rate_bps": debt["rate_bps"],
        "months_since_draw": min((start - drawn_at) // MONTH_SECONDS, tenor),
        "staked_bps": int(detail["total_staked"]) * 10_000 // int(detail["total_shares"]),
    }
    assert loan["months_since_draw"] == min(10, tenor) or tenor > 10
    common = {"scenarios": ["base", "deflation_40"], "start_time": start, "horizon_months": 24}
    url = api["url"] + "/risk/scenarios"
    scoped = requests.post(url, json={"scope": "pools", **common}, timeout=30)
    assert scoped.status_code == 200, scoped.text
    by_hand = requests.post(
        url,
        json={"node_ids": [node], "overrides": [{"node_id": node, "debt": loan}], **common},
        timeout=30,
    )
    assert by_hand.status_code == 200, by_hand.text
    for mine, theirs in zip(scoped.json()["results"], by_hand.json()["results"], strict=True):
        rows = {r["node_id"]: r for r in mine["nodes"]}
        assert rows[node] == theirs["nodes"][0]
        assert rows[node]["has_pool"]
    pooled = {p["node_id"] for p in _get(api, "/pools", limit=1000)}
    assert {r["node_id"] for r in scoped.json()["results"][0]["nodes"]} == pooled

    # loans_from_draw: the same loan as on the day it was drawn (the dashboard's "from the
    # draw" option), equal to the hand-built loan at month 0.
    from_draw = requests.post(
        url, json={"scope": "pools", "loans_from_draw": True, **common}, timeout=30
    )
    at_draw = requests.post(
        url,
        json={
            "node_ids": [node],
            "overrides": [{"node_id": node, "debt": {**loan, "months_since_draw": 0}}],
            **common,
        },
        timeout=30,
    )
    assert from_draw.status_code == at_draw.status_code == 200, (from_draw.text, at_draw.text)
    for mine, theirs in zip(from_draw.json()["results"], at_draw.json()["results"], strict=True):
        assert {r["node_id"]: r for r in mine["nodes"]}[node] == theirs["nodes"][0]
    inline_node = {
        "node_id": 1,
        "class_name": "H100-SXM-80GB",
        "gpu_count": 8,
        "acquisition_cost": "240000",
        "acquired_at": start,
    }
    inline = requests.post(
        url, json={"nodes": [inline_node], "loans_from_draw": True, **common}, timeout=30
    )
    assert inline.status_code == 422 and "loans_from_draw" in inline.json()["reason"]


def test_fast_decoding_matches_web3_on_pool_and_settlement_logs(api, world):
    seen = assert_decoding_matches_web3(api["indexer"], [world["pool"].address])
    assert {
        ("RevenuePool", "Deposited"),
        ("RevenuePool", "Staked"),
        ("RevenuePool", "Transfer"),
        ("RevenuePool", "LossBooked"),
        ("EpochSettlement", "PoolSet"),
        ("EpochSettlement", "NodeSettled"),
    } <= seen


def test_errors_are_4xx_with_reasons(api, world):
    def get(path: str) -> requests.Response:
        return requests.get(api["url"] + path, timeout=10)

    unknown = get("/pools/0x" + "12" * 20)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "PoolNotFound")
    bad = get("/pools/0x1234")
    assert bad.status_code == 422 and "address" in bad.json()["reason"]
    bad_holder = get(f"/pools/{world['pool'].address}/positions/nope")
    assert bad_holder.status_code == 422 and "holder" in bad_holder.json()["reason"]
    no_node = get("/nodes/999999/settlements")
    assert (no_node.status_code, no_node.json()["code"]) == (404, "NodeNotFound")
    assert get("/pools?limit=0").status_code == 422


def test_reorg_undoes_pool_events_and_a_pool_binding(api, world, live_deployment, admin, buyer):
    """A claim and a second pool's PoolSet are undone by a reorg: the claim's effect and
    the second pool (with the events fetched because of it) leave the index."""
    s, pool, indexer = world["system"], world["pool"], api["indexer"]
    before = _get(api, f"/pools/{pool.address}/positions/{buyer.address}")
    assert before["claimable"] > 0
    chain.snapshot()
    try:
        node2 = s.registry.registerNode(
            s.class_ids["H100-SXM-80GB"],
            4,
            b"eu-west".ljust(32, b"\0"),
            100_000 * USD,
            chain[-1].timestamp - 86_400,
            "0x" + "7f" * 20,
            {"from": admin},
        ).events["NodeRegistered"]["nodeId"]
        pool2 = deploy_hub_pool(s.oracle_hub, s.stablecoin, admin, admin, node2, gate=s.settlement)
        s.stablecoin.approve(pool2, 2**256 - 1, {"from": buyer})
        pool2.deposit(10 * USD, buyer, {"from": buyer})
        s.settlement.setPool(node2, pool2, {"from": admin})
        pool2_address = pool2.address
        pool.claim(buyer, {"from": buyer})
        indexer.step()
        assert _get(api, f"/pools/{pool.address}/positions/{buyer.address}")["claimable"] == 0
        assert _get(api, f"/pools/{pool2.address}")["round"]["raised"] == 10 * USD
        chain.revert()
        for _ in range(3):
            chain.mine()
        report = indexer.step()
        assert report.reorged_to is not None
        assert _get(api, f"/pools/{pool.address}/positions/{buyer.address}") == before
        gone = requests.get(f"{api['url']}/pools/{pool2_address}", timeout=10)
        assert gone.status_code == 404
    finally:
        chain.revert()


def test_a_release_and_skipped_epochs_are_indexed_exactly(
    api, world, admin, buyer, staker, operator
):
    """Repeated ~99.99% losses, each restaked by the loss recipient (as the pool's unit
    test does), until one passes the unit bound and releases the stake (earning, warming
    and cooling positions alike); then a withdrawal of released stake, a fresh era's stake,
    and a settlement over skipped epochs. After each step every position and the totals
    match stakeOf / totals exactly."""
    s, pool, node, indexer = world["system"], world["pool"], world["node"], api["indexer"]
    holders = (buyer, staker, operator, admin)
    released = None
    for _ in range(6):
        staked = pool.totals()["stakedShares"]
        tx = pool.bookLoss(staked * 9_999 // 10_000 // 10**12, admin, {"from": admin})
        if "StakeReleased" in tx.events:
            released = tx.events["StakeReleased"]
            break
        pool.stake(tx.return_value, {"from": admin})  # warming when the release comes
    assert released is not None and released["shares"] > 0
    indexer.step()
    for who in holders:
        _position_matches_chain(api, pool, who)
    body = _totals_match_chain(api, pool)
    assert int(body["released_shares"]) == released["shares"] and body["total_staked"] == "0"
    buyer_pos = _position_matches_chain(api, pool, buyer)
    staker_pos = _position_matches_chain(api, pool, staker)
    assert int(buyer_pos["released"]) > 0 and int(staker_pos["released"]) > 0
    assert buyer_pos["cooling"]["amount"] == "0"  # its cooling stake was released too

    tx = pool.withdraw({"from": buyer})
    assert tx.events["ReleasedStakeWithdrawn"]["shares"] == int(buyer_pos["released"])
    pool.stake(10 * 10**18, {"from": operator})  # a fresh era
    first = attest(s.oracle_hub, {node: 500})
    attest(s.oracle_hub, {node: 500})
    last = attest(s.oracle_hub, {node: 500})
    tx = s.settlement.settle(last.report.epoch, [item(last, node)], {"from": admin})
    settled_range = tx.events["NodeSettled"]
    assert settled_range["fromEpoch"] == first.report.epoch  # one range: three epochs
    indexer.step()
    for who in holders:
        _position_matches_chain(api, pool, who)
    _totals_match_chain(api, pool)
    assert _get(api, f"/pools/{pool.address}/positions/{buyer.address}")["released"] == "0"
    want = {
        "from_epoch": first.report.epoch,
        "to_epoch": last.report.epoch - 1,
        "service": settled_range["serviceAssets"],
    }
    assert want["service"] > 0
    settled = _get(api, f"/nodes/{node}/settlements")
    assert settled[0]["epoch"] == last.report.epoch and settled[0]["skipped"] == want
    assert all(row["skipped"] is None for row in settled[1:])
    history = {h["epoch"]: h for h in _get(api, f"/pools/{pool.address}/history")}
    assert history[last.report.epoch]["skipped"] == want
