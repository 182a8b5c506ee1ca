"""gpucap/bulk.py, the demo seeder's transport: many pre-signed transactions per phase,
each sender's in order, receipts in bulk, and a revert named by its custom error."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from web3 import Web3

from gpucap import devchain
from gpucap.bulk import BulkSender, BulkTxFailed, Calldata, PlannedTx, event_topic

USD = 10**6


@pytest.fixture(scope="module")
def coin():
    anvil = devchain.Anvil(port=devchain.free_port(), block_time=1).start()
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    artifact = json.loads((devchain.REPO_ROOT / "build/contracts/TestStablecoin.json").read_text())
    admin = Account.from_key(devchain.dev_private_key(0))
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    deploy = factory.constructor(admin.address, 100 * USD, 3_600).data_in_transaction
    sender = BulkSender(w3, abis=[artifact["abi"]])
    [mined] = sender.send([PlannedTx("deploy", admin, None, deploy, 3_000_000)])
    yield w3, artifact["abi"], Web3.to_checksum_address(mined.receipt["contractAddress"]), sender
    anvil.stop()


def test_a_phase_lands_in_order_with_progress_and_events(coin):
    w3, abi, address, sender = coin
    encode = Calldata(abi)
    people = [Account.from_key(devchain.dev_private_key(i)) for i in range(1, 6)]
    admin = Account.from_key(devchain.dev_private_key(0))
    # The admin drips to everyone (its nonces in order), everyone approves at once.
    txs = [PlannedTx("drip", admin, address, encode("drip", p.address), 120_000) for p in people]
    txs += [
        PlannedTx("approve", p, address, encode("approve", admin.address, 7), 80_000)
        for p in people
    ]
    seen: list[tuple[int, int]] = []
    mined = sender.send(txs, lambda done, total: seen.append((done, total)))
    token = w3.eth.contract(address=address, abi=abi)
    assert [token.functions.balanceOf(p.address).call() for p in people] == [100 * USD] * 5
    assert seen[-1] == (10, 10)
    dripped = event_topic(abi, "Dripped")
    assert [m.topics(address, dripped)[0][0] for m in mined[:5]] == [
        int(p.address, 16) for p in people
    ]


def test_a_revert_fails_the_phase_with_the_contract_error(coin):
    w3, abi, address, sender = coin
    encode = Calldata(abi)
    admin = Account.from_key(devchain.dev_private_key(0))
    drip = PlannedTx("drip", admin, address, encode("drip", "0x" + "42" * 20), 120_000)
    sender.send([drip])
    with pytest.raises(BulkTxFailed, match=r"1 of 1 transactions reverted.*FaucetCooldown"):
        sender.send([drip])
