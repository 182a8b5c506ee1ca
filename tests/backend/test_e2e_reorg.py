"""Reorgs against the real stack (anvil, Redis, API and worker processes): an action
whose transaction a reorg (``anvil_reorg``) takes away is re-opened and executed again,
exactly once, and ends as if the reorg had not happened.
"""

from __future__ import annotations

from typing import Any

from brownie import web3

from tests.backend.backend_helpers import Stack, reorg_away, wait_for
from tests.backend.test_e2e_forward import PRICE, USD, buy_request
from tests.backend.test_e2e_forward import market as forward_market

market = forward_market  # the forward tests' node, offer and wallet, as a fixture here


def mine(blocks: int) -> None:
    for _ in range(blocks):
        web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def test_a_relayed_buy_a_reorg_removed_is_bought_again_once(stack: Stack, market: Any) -> None:
    s, wallet, token = market["system"], market["wallet"], market["token"]
    resp = stack.post("/api/v1/forward", json=buy_request(stack, market, 3))
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    first = stack.wait_final(action_id)
    assert first["status"] == "confirmed" and first["final"] is False  # 2 confirmations to go
    assert first["genesis_hash"] == web3.eth.get_block(0)["hash"].to_0x_hex()
    assert s.capacity.balanceOf(wallet.address, token) == 3

    head = reorg_away(first["block_number"])
    # The reorg took the buy away (read at the reorged head: the worker may have sent it
    # again already, on a block after it).
    assert s.capacity.balanceOf(wallet.address, token, block_identifier=head) == 0
    assert s.forwarder.nonces(wallet.address, block_identifier=head) == 0

    # The worker's next index run finds the transaction gone and sends it again.
    again = wait_for(
        lambda: (
            (a := stack.get(f"/actions/{action_id}").json())["status"] == "confirmed"
            and a["block_number"] is not None
            and s.capacity.balanceOf(wallet.address, token) == 3
            and a
        ),
        60,
        "the buy to be re-sent and mined again",
    )
    assert again["error_code"] is None
    # /health counts the re-opened action; once mined again, none is left open.
    reorgs = wait_for(
        lambda: (c := stack.get("/health").json()["checks"]["reorgs"])["reopened_open"] == 0 and c,
        30,
        "/health to count the re-opened buy",
    )
    assert reorgs["ok"] and reorgs["reopened_last_hour"] == 1, reorgs
    # Exactly once on the surviving chain: one forwarder nonce used, paid once.
    assert s.forwarder.nonces(wallet.address) == 1
    assert s.stablecoin.balanceOf(wallet.address) == 100 * USD - 3 * PRICE

    mine(2)  # buried under action_final_confirmations (2): final
    final = wait_for(
        lambda: (a := stack.get(f"/actions/{action_id}").json())["final"] and a,
        30,
        "the action to be final",
    )
    assert final["status"] == "confirmed" and final["block_number"] == again["block_number"]


def test_a_faucet_drip_a_reorg_removed_pays_once(stack: Stack) -> None:
    """A relayed action of the relayer's own key (no forwarder nonce to guard it)."""
    address = web3.eth.account.create().address
    resp = stack.post("/faucet", json={"address": address})
    assert resp.status_code == 202, resp.text
    action_id = resp.json()["action_id"]
    first = stack.wait_final(action_id)
    assert first["status"] == "confirmed"
    coin = stack.deployment.system.stablecoin
    drip = coin.balanceOf(address)
    assert drip > 0

    head = reorg_away(first["block_number"])
    assert coin.balanceOf(address, block_identifier=head) == 0
    wait_for(lambda: coin.balanceOf(address) == drip, 60, "the drip to be sent again")
    mine(2)
    final = wait_for(
        lambda: (a := stack.get(f"/actions/{action_id}").json())["final"] and a,
        30,
        "the drip to be final",
    )
    assert final["status"] == "confirmed"
    assert coin.balanceOf(address) == drip  # once: a second drip would also be in cooldown
