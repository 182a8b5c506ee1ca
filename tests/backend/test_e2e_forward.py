"""Gasless buying through the real parts: a wallet with tokens but no ETH signs an
EIP-2612 permit and an ERC-2771 forward request; the API validates both, the worker
relays execute() and the wallet holds the capacity (uvicorn + celery + Redis + anvil)."""

from __future__ import annotations

import pytest
from brownie import chain, web3
from eth_account import Account

from gpucap.signing import sign_permit, sign_request
from tests.backend.backend_helpers import Stack, wait_for

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


def buy_request(stack: Stack, market, amount: int, *, signer=None, deadline=None, nonce=None):
    s, wallet = market["system"], market["wallet"]
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
    data = s.capacity.buyWithPermit.encode_input(market["offer"], amount, deadline, v, r, sig_s)
    nonce = s.forwarder.nonces(wallet.address) if nonce is None else nonce
    req = sign_request(
        signer, s.forwarder.address, chain.id, s.capacity.address, data, nonce, deadline
    )
    return {
        "from": wallet.address,
        "to": req.to,
        "value": 0,
        "gas": req.gas,
        "deadline": req.deadline,
        "data": "0x" + req.data.hex(),
        "signature": "0x" + req.signature.hex(),
        "nonce": nonce,
    }


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
