"""scripts/receipt_race.py: a mined transaction whose receipt anvil serves a moment late
(foundry-rs/foundry#10944) is confirmed, not failed as dropped; a lost one still fails.

The window is reproduced on the real anvil by hiding the receipt from the first
receipt reads, as anvil does between advancing the nonce and storing the receipt.
"""

from __future__ import annotations

import time

import pytest
from brownie import web3
from brownie.exceptions import TransactionError

from scripts import receipt_race


def _hide_receipts(monkeypatch, reads: int | None) -> list[str]:
    """The node answers the next ``reads`` receipt reads (None: all) with null, as anvil
    does in the window; returns the hashes asked for meanwhile.

    The window is: the nonce has advanced, the receipt is not served yet. So once a
    transaction is sent, a nonce read waits until the node has really mined it (on a
    loaded machine brownie's first nonce read could otherwise come before the block,
    and then no window is reproduced at all)."""
    provider = web3.provider
    real = provider.make_request
    hidden: list[str] = []
    sent: list[str] = []

    def make_request(method, params):
        if method == "eth_getTransactionReceipt" and (reads is None or len(hidden) < reads):
            hidden.append(str(params[0]))
            return {"jsonrpc": "2.0", "id": 0, "result": None}
        if method == "eth_getTransactionCount" and sent:
            deadline = time.monotonic() + 30
            while real("eth_getTransactionReceipt", [sent[-1]]).get("result") is None:
                assert time.monotonic() < deadline, f"{sent[-1]} was never mined"
                time.sleep(0.02)
        response = real(method, params)
        if method in ("eth_sendRawTransaction", "eth_sendTransaction") and "result" in response:
            sent.append(response["result"])
        return response

    monkeypatch.setattr(provider, "make_request", make_request)
    # web3 caches the middleware-wrapped make_request; rebuild it now, restore it after.
    monkeypatch.setattr(provider, "_request_func_cache", (None, None))
    return hidden


def test_receipt_served_late_is_confirmed(monkeypatch, stablecoin, buyer):
    hidden = _hide_receipts(monkeypatch, reads=1)
    tx = stablecoin.drip(buyer, {"from": buyer})
    assert hidden, "the receipt was never hidden: the window was not reproduced"
    assert tx.status == 1
    assert tx.events["Dripped"]["recipient"] == buyer
    assert stablecoin.balanceOf(buyer) == 1_000 * 10**6


def test_without_the_fix_brownie_calls_it_dropped(monkeypatch, stablecoin, buyer):
    """The race is real for brownie as shipped: the wrapper is what makes the test above pass."""
    from brownie.network.account import _PrivateKeyAccount

    monkeypatch.setattr(
        _PrivateKeyAccount,
        "_await_confirmation",
        _PrivateKeyAccount._await_confirmation.__wrapped__,
    )
    _hide_receipts(monkeypatch, reads=1)
    with pytest.raises(TransactionError, match="dropped without known replacement"):
        stablecoin.drip(buyer, {"from": buyer})


def test_receipt_never_served_still_fails(monkeypatch, stablecoin, buyer):
    monkeypatch.setattr(receipt_race, "RECEIPT_GRACE_SECONDS", 0.3)
    _hide_receipts(monkeypatch, reads=None)
    with pytest.raises(TransactionError, match="dropped without known replacement"):
        stablecoin.drip(buyer, {"from": buyer})
