"""Revert data → (custom error name, human reason), against the compiled ABIs."""

from __future__ import annotations

import json

from eth_abi import encode

from backend.services.revert import RpcRevert, decode_revert, error_selector, rpc_revert
from gpucap.devchain import REPO_ROOT

ABI = json.loads((REPO_ROOT / "build/contracts/TestStablecoin.json").read_text())["abi"]
ERRORS = [item for item in ABI if item["type"] == "error"]
RECIPIENT = "0x000000000000000000000000000000000000dEaD"


def _error(name: str) -> dict:
    return next(e for e in ERRORS if e["name"] == name)


def test_custom_error_with_arguments() -> None:
    data = error_selector(_error("FaucetCooldown")) + encode(
        ["address", "uint64"], [RECIPIENT, 1_700_000_000]
    )
    decoded = decode_revert("0x" + data.hex(), ERRORS)
    assert decoded.code == "FaucetCooldown"
    assert decoded.args == {"recipient": RECIPIENT, "nextDripAt": 1_700_000_000}
    assert RECIPIENT in decoded.reason and "2023-11-14T22:13:20+00:00" in decoded.reason


def test_error_without_humanizer_is_rendered_generically() -> None:
    data = error_selector(_error("ERC20InsufficientBalance")) + encode(
        ["address", "uint256", "uint256"], [RECIPIENT, 5, 7]
    )
    decoded = decode_revert(data, ERRORS)
    assert decoded.code == "ERC20InsufficientBalance"
    assert decoded.reason == f"ERC20InsufficientBalance(sender={RECIPIENT}, balance=5, needed=7)"


def test_error_string_and_panic() -> None:
    text = bytes.fromhex("08c379a0") + encode(["string"], ["nope"])
    assert decode_revert(text, ERRORS).code == "Error"
    assert "nope" in decode_revert(text, ERRORS).reason
    panic = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])
    assert decode_revert(panic, ERRORS).code == "Panic"


def test_unknown_and_empty_data() -> None:
    assert decode_revert("0xdeadbeef", ERRORS).code == "UnknownRevert"
    assert decode_revert(None, ERRORS).code == "Reverted"
    assert decode_revert("0x", ERRORS).code == "Reverted"
    truncated = error_selector(_error("FaucetCooldown")) + b"\x01"
    assert decode_revert(truncated, ERRORS).code == "UnknownRevert"


def test_rpc_error_objects_that_are_reverts_and_that_are_not() -> None:
    cooldown = (
        "0x"
        + (
            error_selector(_error("FaucetCooldown"))
            + encode(["address", "uint64"], [RECIPIENT, 1_700_000_000])
        ).hex()
    )
    reason = "0x08c379a0" + encode(["string"], ["nope"]).hex()
    # anvil: a custom error's data, code 3
    anvil = {"code": 3, "message": "execution reverted: custom error", "data": cooldown}
    assert rpc_revert(anvil) == RpcRevert(cooldown)
    assert decode_revert(rpc_revert(anvil).data, ERRORS).code == "FaucetCooldown"
    # Error(string): its data is a revert only with a revert's code or message
    assert rpc_revert({"code": 3, "message": "execution reverted: nope", "data": reason}) == (
        RpcRevert(reason)
    )
    assert rpc_revert({"code": -32000, "message": "odd", "data": reason}) is None
    # no data, or data null: a revert without data
    assert rpc_revert({"code": -32000, "message": "execution reverted"}) == RpcRevert(None)
    assert rpc_revert({"code": -32000, "message": "x", "data": None}) == RpcRevert(None)
    # Hardhat nests every error's data: revert data inside is the revert's, else the
    # message says whether it reverted
    vm = "Error: VM Exception while processing transaction: reverted with an unrecognized"
    hardhat = {"code": -32603, "message": vm, "data": {"message": vm, "data": cooldown}}
    assert rpc_revert(hardhat) == RpcRevert(cooldown)
    assert rpc_revert({**hardhat, "data": {"message": vm, "data": reason}}) == RpcRevert(reason)
    no_reason = "Error: Transaction reverted without a reason string"
    assert rpc_revert(
        {"code": -32603, "message": no_reason, "data": {"message": no_reason, "data": "0x"}}
    ) == RpcRevert(None)
    for refusal, data in (
        ("Transaction requires at least 21380 gas but got 21000", None),
        ("Transaction ran out of gas", "0x"),
    ):
        nested = {"message": refusal, "data": data}
        assert rpc_revert({"code": -32000, "message": refusal, "data": nested}) is None
    # the node's own errors are not reverts
    assert rpc_revert({"code": -32000, "message": "insufficient funds for gas"}) is None
    assert rpc_revert({"code": -32601, "message": "method not found"}) is None
    assert rpc_revert("a plain string") is None
