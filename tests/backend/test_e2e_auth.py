"""Sign-In with Ethereum through the real HTTP server, signed by eth-account wallets."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest
from brownie import chain
from eth_account import Account
from eth_account.messages import encode_defunct

from gpucap import devchain
from tests.backend.backend_helpers import Stack, malleable_copies, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import siwe

OPERATOR_KEY = devchain.dev_private_key(1)  # tests/conftest.py `operator`
USD = 10**6


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def siwe_message(stack: Stack, key: str, **overrides) -> str:
    info = stack.post("/api/v1/auth/nonce").json()
    fields = {
        "domain": info["domain"],
        "address": Account.from_key(key).address,
        "statement": "Sign in to gpucap.",
        "uri": f"http://{info['domain']}",
        "version": "1",
        "chain_id": info["chain_id"],
        "nonce": info["nonce"],
        "issued_at": _iso(datetime.now(UTC)),
    }
    fields.update(overrides)
    return siwe.SiweMessage(**fields).prepare_message()


def sign(message: str, key: str) -> str:
    return "0x" + Account.sign_message(
        encode_defunct(text=message), key
    ).signature.hex().removeprefix("0x")


def login(stack: Stack, key: str, **overrides):
    message = siwe_message(stack, key, **overrides)
    return stack.post(
        "/api/v1/auth/login", json={"message": message, "signature": sign(message, key)}
    )


def test_sign_in_me_and_sign_out(stack: Stack) -> None:
    key = Account.create().key.hex()
    resp = login(stack, key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["address"] == Account.from_key(key).address
    assert body["roles"] == ["user"]
    auth = {"Authorization": f"Bearer {body['token']}"}
    me = stack.get("/api/v1/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["address"] == body["address"]
    assert stack.post("/api/v1/auth/logout", headers=auth).status_code == 204
    after = stack.get("/api/v1/auth/me", headers=auth)
    assert (after.status_code, after.json()["code"]) == (401, "InvalidSession")


def test_operator_role_follows_the_chain(stack: Stack, operator) -> None:
    system = stack.deployment.system
    tx = system.registry.registerNode(
        system.class_ids["H100-SXM-80GB"],
        8,
        b"eu-north".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 3_600,
        "0x" + "ef" * 20,
        {"from": operator},
    )
    node_id = tx.events["NodeRegistered"]["nodeId"]
    wait_for(lambda: stack.get(f"/api/v1/nodes/{node_id}").status_code == 200, 30, "node indexed")
    body = login(stack, OPERATOR_KEY).json()
    assert body["roles"] == ["operator", "user"]


def test_nonce_is_single_use(stack: Stack) -> None:
    key = Account.create().key.hex()
    message = siwe_message(stack, key)
    payload = {"message": message, "signature": sign(message, key)}
    assert stack.post("/api/v1/auth/login", json=payload).status_code == 200
    replay = stack.post("/api/v1/auth/login", json=payload)
    assert (replay.status_code, replay.json()["code"]) == (401, "InvalidNonce")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"domain": "evil.example"}, "DomainMismatch"),
        ({"chain_id": 1}, "ChainMismatch"),
        ({"nonce": "neverissued123"}, "InvalidNonce"),
        ({"expiration_time": _iso(datetime.now(UTC) - timedelta(minutes=1))}, "MessageExpired"),
        ({"not_before": _iso(datetime.now(UTC) + timedelta(hours=1))}, "MessageNotYetValid"),
    ],
)
def test_rejected_sign_ins_are_401_with_a_code(stack: Stack, overrides, code) -> None:
    resp = login(stack, Account.create().key.hex(), **overrides)
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] == code
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_signature_by_another_key_is_rejected(stack: Stack) -> None:
    key, other = Account.create().key.hex(), Account.create().key.hex()
    message = siwe_message(stack, key)
    resp = stack.post(
        "/api/v1/auth/login", json={"message": message, "signature": sign(message, other)}
    )
    assert (resp.status_code, resp.json()["code"]) == (401, "InvalidSignature")


def test_malleable_copies_of_a_valid_signature_are_refused(stack: Stack) -> None:
    key = Account.create().key.hex()
    message = siwe_message(stack, key)
    signature = sign(message, key)
    for copy in malleable_copies(signature):
        resp = stack.post("/api/v1/auth/login", json={"message": message, "signature": copy})
        assert (resp.status_code, resp.json()["code"]) == (401, "NonCanonicalSignature")
    # Refused before the nonce was spent: the canonical signature still signs in.
    resp = stack.post("/api/v1/auth/login", json={"message": message, "signature": signature})
    assert resp.status_code == 200, resp.text


def test_malformed_input_is_422(stack: Stack) -> None:
    bad_message = stack.post(
        "/api/v1/auth/login", json={"message": "hello", "signature": "0x" + "11" * 65}
    )
    assert (bad_message.status_code, bad_message.json()["code"]) == (422, "MalformedMessage")
    bad_signature = stack.post("/api/v1/auth/login", json={"message": "x", "signature": "0x12"})
    assert (bad_signature.status_code, bad_signature.json()["code"]) == (422, "ValidationFailed")


def test_missing_or_unknown_token_is_401(stack: Stack) -> None:
    missing = stack.get("/api/v1/auth/me")
    assert (missing.status_code, missing.json()["code"]) == (401, "Unauthorized")
    unknown = stack.get("/api/v1/auth/me", headers={"Authorization": "Bearer nope"})
    assert (unknown.status_code, unknown.json()["code"]) == (401, "InvalidSession")
