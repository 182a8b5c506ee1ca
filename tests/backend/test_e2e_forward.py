"""Gasless buying through the real parts: a wallet with tokens but no ETH signs an
EIP-2612 permit and an ERC-2771 forward request; the API validates both, the worker
relays execute() and the wallet holds the capacity (uvicorn + celery + Redis + anvil)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from brownie import chain, web3
from eth_account import Account

from backend.services.relaying.nonce import NonceManager
from gpucap import devchain
from gpucap.signing import SignedRequest, sign_permit, sign_request
from tests.backend.backend_helpers import Stack, malleable_copies, wait_for

USD = 10**6
PRICE = 2 * USD


@pytest.fixture(scope="module")
def market(stack: Stack, admin, operator2):
    """An operator's offer of 100 GPU-hours of a future window, and a funded gasless wallet."""
    s = stack.deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    s.stablecoin.drip(operator2, {"from": operator2})
    s.stablecoin.drip(admin, {"from": admin})
    node = s.registry.registerNode(
        h100,
        8,
        b"eu-west".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 3_600,
        "0x" + "42" * 20,
        {"from": operator2},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator2})
    s.registry.depositBond(node, 5_000 * USD, {"from": operator2})
    window = s.capacity.windowSeconds()
    token = s.capacity.tokenIdFor(h100, (chain[-1].timestamp // window + 2) * window)
    offer = s.capacity.publishOffer(node, token, 100, PRICE, {"from": operator2}).return_value
    wallet = Account.create()
    s.stablecoin.transfer(wallet.address, 100 * USD, {"from": admin})
    return {"system": s, "offer": offer, "token": token, "wallet": wallet, "node": node}


def buy_request(
    stack: Stack,
    market,
    amount: int,
    *,
    signer=None,
    deadline=None,
    nonce=None,
    wallet=None,
    offer=None,
):
    s, wallet = market["system"], wallet or market["wallet"]
    signer = signer or wallet
    deadline = deadline or chain[-1].timestamp + 3_600
    v, r, sig_s = sign_permit(
        wallet,
        token_name=s.stablecoin.name(),
        token=s.stablecoin.address,
        spender=s.capacity.address,
        value=amount * PRICE,
        nonce=s.stablecoin.nonces(wallet.address),
        deadline=deadline,
        chain_id=chain.id,
    )
    offer = market["offer"] if offer is None else offer
    data = s.capacity.buyWithPermit.encode_input(offer, amount, deadline, v, r, sig_s)
    return signed_body(
        s, wallet, s.capacity.address, data, signer=signer, deadline=deadline, nonce=nonce
    )


def signed_body(s, wallet, to, data, *, signer=None, deadline=None, nonce=None) -> dict:
    """The /api/v1/forward body for ``wallet``'s request to call ``to`` with ``data``."""
    signer = signer or wallet
    deadline = deadline or chain[-1].timestamp + 3_600
    nonce = s.forwarder.nonces(wallet.address) if nonce is None else nonce
    req = sign_request(signer, s.forwarder.address, chain.id, to, data, nonce, deadline)
    return req.api_body(sender=wallet.address)


def test_gasless_buy_with_permit_confirms(stack: Stack, market) -> None:
    s, wallet = market["system"], market["wallet"]
    assert web3.eth.get_balance(wallet.address) == 0  # no ETH: the relayer pays
    body = buy_request(stack, market, 5)
    resp = stack.post("/api/v1/forward", json=body)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert (accepted["contract"], accepted["function"]) == ("CapacityToken", "buyWithPermit")
    # Replaying the same signed request (a double click) is the same action.
    again = stack.post("/api/v1/forward", json=body)
    assert (again.status_code, again.json()["action_id"]) == (200, accepted["action_id"])
    final = stack.wait_final(accepted["action_id"])
    assert final["status"] == "confirmed", final
    assert s.capacity.balanceOf(wallet.address, market["token"]) == 5
    assert s.stablecoin.balanceOf(wallet.address) == 100 * USD - 5 * PRICE
    # The index follows: the wallet's portfolio shows what it bought.
    holding = wait_for(
        lambda: stack.get(f"/api/v1/portfolio/{wallet.address}").json()["capacity"],
        30,
        "the purchase to be indexed",
    )
    assert [(h["token_id"], h["amount"]) for h in holding] == [(str(market["token"]), 5)]


def test_forwarder_info_says_what_to_sign(stack: Stack, market) -> None:
    info = stack.get("/api/v1/forwarder").json()
    assert info["domain"]["verifyingContract"] == market["system"].forwarder.address
    assert info["domain"]["chainId"] == chain.id
    assert "buyWithPermit" in info["allowed_calls"]["CapacityToken"]


def _rejected(stack: Stack, body: dict) -> tuple[int, str]:
    resp = stack.post("/api/v1/forward", json=body)
    return resp.status_code, resp.json().get("code", "")


def test_rejections_say_why(stack: Stack, market) -> None:
    s = market["system"]
    stranger = Account.create()
    assert _rejected(stack, buy_request(stack, market, 1, signer=stranger)) == (
        422,
        "InvalidSignature",
    )
    assert _rejected(stack, buy_request(stack, market, 1, deadline=chain[-1].timestamp + 5)) == (
        422,
        "RequestExpired",
    )
    assert _rejected(stack, buy_request(stack, market, 1, nonce=99)) == (422, "InvalidNonce")
    # More than the wallet can pay: the contract's own error, before anything is sent.
    code = _rejected(stack, buy_request(stack, market, 90))
    assert code == (422, "ERC20InsufficientBalance"), code

    body = buy_request(stack, market, 1)
    admin_call = s.capacity.setCommitRatio.encode_input(5_000)
    assert _rejected(stack, {**body, "data": admin_call}) == (422, "FunctionNotAllowed")
    assert _rejected(stack, {**body, "to": s.stablecoin.address}) == (422, "TargetNotAllowed")
    assert _rejected(stack, {**body, "signature": "0x12"})[0] == 422


def test_node_refusals_and_malleable_signatures_get_4xx(stack: Stack, market) -> None:
    s, wallet = market["system"], market["wallet"]
    data = s.capacity.setApprovalForAll.encode_input(wallet.address, True)
    nonce, deadline = s.forwarder.nonces(wallet.address), chain[-1].timestamp + 3_600

    def signed(**kw) -> dict:
        req = sign_request(
            wallet, s.forwarder.address, chain.id, s.capacity.address, data, nonce, deadline, **kw
        )
        return req.api_body()

    # The node's own refusals of the simulated call: a 4xx with the node's reason.
    for body, says in (
        (signed(value=10**18), "insufficient funds"),
        (signed(gas=21_000), "intrinsic gas too high"),
    ):
        resp = stack.post("/api/v1/forward", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == "RejectedByNode"
        assert says in resp.json()["reason"].lower(), resp.text

    valid = buy_request(stack, market, 1)
    for copy in malleable_copies(valid["signature"]):
        assert _rejected(stack, {**valid, "signature": copy}) == (422, "NonCanonicalSignature")
    # Nothing was accepted for the wallet meanwhile: its valid request still goes through.
    resp = stack.post("/api/v1/forward", json=valid)
    assert resp.status_code == 202, resp.text
    assert stack.wait_final(resp.json()["action_id"])["status"] == "confirmed"


def _approval(s, wallet, operator) -> dict:
    data = s.capacity.setApprovalForAll.encode_input(operator, True)
    return signed_body(s, wallet, s.capacity.address, data)


def test_pending_requests_go_out_as_one_batch_with_outcomes_each(
    stack: Stack, market, admin, operator2
) -> None:
    """Requests that wait while the relayer is busy go out in ONE executeBatch; a request
    whose call now reverts, or whose nonce someone else used, fails alone with the reason."""
    s = market["system"]
    buyer, loser, approver, sidestepped = (Account.create() for _ in range(4))
    for w in (buyer, loser):
        s.stablecoin.transfer(w.address, 10 * USD, {"from": admin})
    doomed = s.capacity.publishOffer(
        market["node"], market["token"], 5, PRICE, {"from": operator2}
    ).return_value
    bodies = {
        "buyer": buy_request(stack, market, 2, wallet=buyer),
        "loser": buy_request(stack, market, 1, wallet=loser, offer=doomed),
        "approver": _approval(s, approver, operator2.address),
        "sidestepped": _approval(s, sidestepped, admin.address),
    }
    relayer = Account.from_key(devchain.dev_private_key(9)).address
    client = redis.Redis.from_url(stack.redis.url)
    # The relayer is busy (its nonce lock held): every request is accepted and waits.
    with NonceManager(client, relayer, lock_seconds=30).locked():
        ids = {}
        for name, body in bodies.items():
            resp = stack.post("/api/v1/forward", json=body)
            assert resp.status_code == 202, resp.text
            ids[name] = resp.json()["action_id"]
        # Meanwhile the doomed offer closes, and someone else relays one request directly.
        s.capacity.cancelOffer(doomed, {"from": operator2})
        b = bodies["sidestepped"]
        req = SignedRequest(
            sender=b["from"],
            to=b["to"],
            value=0,
            gas=b["gas"],
            nonce=0,
            deadline=b["deadline"],
            data=bytes.fromhex(b["data"][2:]),
            signature=bytes.fromhex(b["signature"][2:]),
        )
        s.forwarder.execute(req.as_tuple(), {"from": admin})
    client.close()
    final = {name: stack.wait_final(action_id) for name, action_id in ids.items()}
    assert len({a["tx_hash"] for a in final.values()}) == 1, final  # one transaction
    tx = web3.eth.get_transaction(final["buyer"]["tx_hash"])
    assert tx["to"] == s.forwarder.address
    assert "0x" + bytes(tx["input"])[:4].hex() == s.forwarder.executeBatch.signature
    assert web3.eth.get_transaction_receipt(tx["hash"])["status"] == 1

    assert final["buyer"]["status"] == "confirmed", final["buyer"]
    assert s.capacity.balanceOf(buyer.address, market["token"]) == 2
    assert final["approver"]["status"] == "confirmed", final["approver"]
    assert s.capacity.isApprovedForAll(approver.address, operator2.address)
    # The call reverted inside the batch: its own error, decoded; nothing moved.
    assert (final["loser"]["status"], final["loser"]["error_code"]) == (
        "failed",
        "CapacityOfferClosed",
    ), final["loser"]
    assert s.stablecoin.balanceOf(loser.address) == 10 * USD
    assert s.forwarder.nonces(loser.address) == 1  # the batch used its nonce
    # Skipped by the forwarder (its nonce was used): says so, and it ran once only.
    assert (final["sidestepped"]["status"], final["sidestepped"]["error_code"]) == (
        "failed",
        "InvalidNonce",
    ), final["sidestepped"]
    assert s.forwarder.nonces(sidestepped.address) == 1


def _node_pool(s, market, admin, operator2, *, bind: bool):
    """A RevenuePool for the market's node that trusts the forwarder; bound to the node in
    EpochSettlement if ``bind``."""
    from brownie import RevenuePool

    hub, node = s.oracle_hub, market["node"]
    config = (
        f"gpucap node {node} share",
        f"gN{node}",
        s.stablecoin.address,
        operator2.address,
        admin.address,
        s.forwarder.address,
        node,
        1_000 * USD,
        chain[-1].timestamp + 86_400,
        USD,
        hub.genesisTimestamp(),
        hub.epochLengthSeconds(),
        1,
        12,
        1_200,
        s.settlement.address,  # risk gate
    )
    pool = RevenuePool.deploy(config, {"from": admin})
    if bind:
        s.settlement.setPool(node, pool, {"from": admin})
    return pool


def test_wallet_deposits_into_its_nodes_pool_gaslessly(
    stack: Stack, market, admin, operator2
) -> None:
    """A node's RevenuePool is a target once EpochSettlement binds it to the node; an
    unbound pool (same code, same node) is refused."""
    s = market["system"]
    stray = _node_pool(s, market, admin, operator2, bind=False)
    pool = _node_pool(s, market, admin, operator2, bind=True)
    investor = Account.create()
    s.stablecoin.transfer(investor.address, 50 * USD, {"from": admin})
    deadline = chain[-1].timestamp + 3_600
    # The wallet's permit lets the pool pull its deposit; anyone may submit a permit.
    v, r, sig_s = sign_permit(
        investor,
        token_name=s.stablecoin.name(),
        token=s.stablecoin.address,
        spender=pool.address,
        value=50 * USD,
        nonce=0,
        deadline=deadline,
        chain_id=chain.id,
    )
    s.stablecoin.permit(investor.address, pool, 50 * USD, deadline, v, r, sig_s, {"from": admin})
    deposit = pool.deposit.encode_input(40 * USD, investor.address)

    refused = stack.post("/api/v1/forward", json=signed_body(s, investor, stray.address, deposit))
    assert (refused.status_code, refused.json()["code"]) == (422, "TargetNotAllowed")
    too_much = pool.deposit.encode_input(60 * USD, investor.address)
    rejected = stack.post("/api/v1/forward", json=signed_body(s, investor, pool.address, too_much))
    assert (rejected.status_code, rejected.json()["code"]) == (422, "ERC20InsufficientAllowance")

    resp = stack.post("/api/v1/forward", json=signed_body(s, investor, pool.address, deposit))
    assert resp.status_code == 202, resp.text
    assert (resp.json()["contract"], resp.json()["function"]) == ("RevenuePool", "deposit")
    final = stack.wait_final(resp.json()["action_id"])
    assert final["status"] == "confirmed", final
    assert pool.balanceOf(investor.address) == 40 * USD * 10**18 // USD
    assert s.stablecoin.balanceOf(investor.address) == 10 * USD
    info = stack.get("/api/v1/forwarder").json()
    assert "requestUnstake" in info["allowed_calls"]["RevenuePool"]


def test_a_burst_of_requests_wakes_the_worker_once_not_per_request(stack: Stack, market) -> None:
    """Requests arriving together share one relay task (services/relaying/relay_kick.py): the
    worker receives far fewer relay messages than requests, and every request still
    ends confirmed in a shared executeBatch; the batch's driver then asks for an index
    run at once (worker/tasks.py index_soon)."""
    s = market["system"]
    bodies = [_approval(s, Account.create(), s.registry.address) for _ in range(10)]

    def log() -> str:
        return stack.worker.log_path.read_text(errors="replace")

    def received(task: str = "relay_action") -> int:  # messages the worker took
        return len(re.findall(rf"gpucap\.{task}\[[^\]]+\] received", log()))

    def beat_index_runs() -> int:
        return log().count("Sending due task index-chain")

    before, index_before, beat_before = received(), received("index_chain"), beat_index_runs()
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: stack.post("/api/v1/forward", json=b), bodies))
    assert [a.status_code for a in answers] == [202] * len(bodies), [a.text for a in answers]
    final = [stack.wait_final(a.json()["action_id"]) for a in answers]
    assert {a["status"] for a in final} == {"confirmed"}, final
    assert len({a["tx_hash"] for a in final}) < len(bodies)
    for body in bodies:
        assert s.capacity.isApprovedForAll(body["from"], s.registry.address)
    tasks = received() - before
    assert 1 <= tasks < len(bodies), f"{tasks} relay tasks for {len(bodies)} requests"
    # The task that saw a batch mined asked for an index run then, not at the next beat.
    wait_for(
        lambda: received("index_chain") - index_before > beat_index_runs() - beat_before,
        10,
        "an index run besides the beat's",
    )
