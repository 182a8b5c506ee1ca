"""Stuck transactions: a relayed transaction (a single one, or a batch of forward
requests) the chain does not mine in time is replaced (same nonce, higher fees), and
the action ends confirmed exactly once whichever of its transactions the chain takes.
Real anvil (mining paused) and real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis as redis_lib
from brownie import web3
from eth_account import Account
from sqlalchemy.orm import Session, sessionmaker

from backend.redis_embedded import EmbeddedRedis
from backend.services.chain import Chain
from backend.services.errors import ChainUnavailable, TransactionDropped
from backend.services.relaying import actions, batching
from backend.services.relaying import relayer as relayer_module
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.relay import relay_action
from backend.services.relaying.relayer import Fees, Relayer, TxRequest
from backend.worker.kinds import REQUEST_BUILDERS
from gpucap import devchain
from tests.backend.backend_helpers import (
    new_faucet_action,
    new_forward_action,
    service_relayer,
    wait_for,
)

DRIP = 1_000 * 10**6


@pytest.fixture(scope="module")
def relayer(live_deployment: Any, redis_server: EmbeddedRedis) -> Iterator[Relayer]:
    chain = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 3)
    client = redis_lib.Redis.from_url(redis_server.url)
    yield Relayer(
        chain,
        devchain.dev_private_key(9),
        client,
        receipt_timeout=0.5,
        lock_seconds=10,
        replace_after_seconds=0.2,
        fee_bump_percent=25,
    )
    client.close()


@pytest.fixture
def paused_mining() -> Iterator[None]:
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        web3.provider.make_request("evm_setAutomine", [True])


def _row(sessions: sessionmaker[Session], action_id: str) -> Any:
    with sessions() as session:
        return actions.get_action(session, action_id)


def test_fee_bump_is_at_least_the_percentage_and_one_wei() -> None:
    assert Fees(100, 10).bumped(25) == Fees(125, 12)
    assert Fees(1, 1).bumped(25) == Fees(2, 2)


def test_stuck_transaction_is_replaced_and_confirmed_once(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any, paused_mining: None
) -> None:
    address = Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    with pytest.raises(ChainUnavailable):  # sent, not mined (mining is paused)
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    first = _row(sessions, action_id)
    assert first.status == "submitted" and first.replaced_tx_hashes is None

    time.sleep(0.3)  # older than replace_after_seconds
    with pytest.raises(ChainUnavailable):
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    second = _row(sessions, action_id)
    assert second.tx_hash != first.tx_hash
    assert second.nonce == first.nonce
    assert second.replaced_tx_hashes == [first.tx_hash]
    assert second.max_fee_per_gas >= first.max_fee_per_gas * 125 // 100
    assert second.max_priority_fee_per_gas >= first.max_priority_fee_per_gas * 125 // 100

    web3.provider.make_request("evm_mine", [])  # the pool holds only the replacement now
    assert relay_action(
        sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
    ) == ("confirmed")
    done = _row(sessions, action_id)
    assert done.tx_hash == second.tx_hash
    assert relayer.receipt(first.tx_hash) is None
    assert live_deployment.system.stablecoin.balanceOf(address) == DRIP  # dripped once


def test_original_mined_after_replacement_still_counts_once(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any, paused_mining: None
) -> None:
    """If the chain takes the original (sent back by someone who saw it), the action is
    confirmed with the original's hash and the replacement is never re-sent."""
    address = Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    with pytest.raises(ChainUnavailable):
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    original = _row(sessions, action_id)
    time.sleep(0.3)
    with pytest.raises(ChainUnavailable):
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    replacement = _row(sessions, action_id)
    # The replacement vanishes from the pool and the original is mined instead.
    web3.provider.make_request("anvil_dropTransaction", [replacement.tx_hash])
    web3.provider.make_request("eth_sendRawTransaction", [original.raw_tx])
    web3.provider.make_request("evm_mine", [])
    assert relay_action(
        sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
    ) == ("confirmed")
    done = _row(sessions, action_id)
    assert done.tx_hash == original.tx_hash
    assert live_deployment.system.stablecoin.balanceOf(address) == DRIP


def test_stuck_batch_is_replaced_whole_and_each_request_confirmed_once(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any, paused_mining: None
) -> None:
    s = live_deployment.system
    ids = [new_forward_action(relayer, sessions, s) for _ in range(3)]
    limits = BatchLimits()
    with pytest.raises(ChainUnavailable):  # one executeBatch for all three; not mined
        batching.relay_forward(sessions=sessions, relayer=relayer, action_id=ids[0], limits=limits)
    first = [_row(sessions, i) for i in ids]
    assert {r.status for r in first} == {"submitted"}
    assert len({(r.tx_hash, r.nonce) for r in first}) == 1

    time.sleep(0.3)  # older than replace_after_seconds; any row's task drives its batch
    with pytest.raises(ChainUnavailable):
        batching.relay_forward(sessions=sessions, relayer=relayer, action_id=ids[1], limits=limits)
    second = [_row(sessions, i) for i in ids]
    assert len({r.tx_hash for r in second}) == 1
    assert second[0].tx_hash != first[0].tx_hash
    assert {r.nonce for r in second} == {first[0].nonce}
    assert all(r.replaced_tx_hashes == [first[0].tx_hash] for r in second)
    assert second[0].max_fee_per_gas >= first[0].max_fee_per_gas * 125 // 100

    web3.provider.make_request("evm_mine", [])
    assert (
        batching.relay_forward(sessions=sessions, relayer=relayer, action_id=ids[2], limits=limits)
        == "confirmed"
    )
    done = [_row(sessions, i) for i in ids]
    assert {(r.status, r.tx_hash) for r in done} == {("confirmed", second[0].tx_hash)}
    assert relayer.receipt(first[0].tx_hash) is None
    for row in done:  # each ran exactly once
        sender = row.params["sender"]
        assert s.forwarder.nonces(sender) == 1
        assert s.capacity.isApprovedForAll(sender, s.registry.address)


def test_batch_the_node_dropped_is_resent_instead_of_waited_out(
    sessions: sessionmaker[Session],
    live_deployment: Any,
    redis_server: EmbeddedRedis,
    paused_mining: None,
) -> None:
    """A node may forget a pending transaction (anvil_dropTransaction here; anvil also
    does it under load). The batch's driver notices within seconds instead of waiting
    out its receipt timeout, and the retry re-sends the same transaction."""
    s = live_deployment.system
    with service_relayer(live_deployment, redis_server.url) as relayer:  # 10 s receipts
        ids = [new_forward_action(relayer, sessions, s) for _ in range(2)]
        limits = BatchLimits()
        with ThreadPoolExecutor(1) as pool:
            driving = pool.submit(
                batching.relay_forward,
                sessions=sessions,
                relayer=relayer,
                action_id=ids[0],
                limits=limits,
            )
            sent = wait_for(lambda: _row(sessions, ids[0]).tx_hash, 10, "the batch to be sent")
            assert web3.provider.make_request("anvil_dropTransaction", [sent])["result"] == sent
            with pytest.raises(TransactionDropped, match=sent):
                driving.result()
        assert not relayer.is_known(sent)
        web3.provider.make_request("evm_setAutomine", [True])
        status = batching.relay_forward(
            sessions=sessions, relayer=relayer, action_id=ids[1], limits=limits
        )
        assert status == "confirmed"
        rows = [_row(sessions, i) for i in ids]
        assert {(r.status, r.tx_hash) for r in rows} == {("confirmed", sent)}  # the same tx
        for row in rows:
            assert s.forwarder.nonces(row.params["sender"]) == 1


def test_mined_transaction_whose_receipt_lags_is_not_taken_for_dropped(
    sessions: sessionmaker[Session],
    live_deployment: Any,
    redis_server: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """anvil's receipt race (foundry-rs/foundry#10944), stretched: the batch is mined (its
    nonce used) but the node serves no receipt and no pending transaction for longer
    than the drop checks take. That is not a dropped transaction: the wait goes on,
    finds the receipt, and every request is confirmed once (in a benchmark run, taking
    it for dropped re-batched 76 requests that had run, and failed them as InvalidNonce)."""
    s = live_deployment.system
    with service_relayer(live_deployment, redis_server.url) as relayer:
        ids = [new_forward_action(relayer, sessions, s) for _ in range(2)]
        real_receipt = relayer.raw_receipt
        served_from = time.monotonic() + 3 * relayer_module.DROP_CHECK_SECONDS + 0.5

        def lagging(tx_hash: str) -> Any:
            return real_receipt(tx_hash) if time.monotonic() >= served_from else None

        real_in_mempool = relayer._in_mempool

        def forgotten_once_mined(tx_hash: str) -> bool:
            """The race as anvil has it: the pool holds the transaction until it is mined,
            then forgets it while the receipt is not served yet. (Answering "not in the
            pool" before it is mined would be a dropped transaction, which it re-sends: on
            a loaded machine a block can take longer than the drop checks.)"""
            return real_receipt(tx_hash) is None and real_in_mempool(tx_hash)

        monkeypatch.setattr(relayer, "raw_receipt", lagging)
        monkeypatch.setattr(relayer, "_in_mempool", forgotten_once_mined)
        status = batching.relay_forward(
            sessions=sessions, relayer=relayer, action_id=ids[0], limits=BatchLimits()
        )
        assert time.monotonic() >= served_from  # it did wait through the lag
        assert status == "confirmed"
        rows = [_row(sessions, i) for i in ids]
        assert {r.status for r in rows} == {"confirmed"} and len({r.tx_hash for r in rows}) == 1
        for row in rows:
            assert s.forwarder.nonces(row.params["sender"]) == 1


def test_wait_mined_does_not_call_a_mined_transaction_with_a_lagging_receipt_dropped(
    live_deployment: Any, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop check itself: out of the pool and no receipt, but the nonce is used."""
    with service_relayer(live_deployment, redis_server.url) as relayer:
        with relayer.nonces.locked():
            signed = relayer.sign(TxRequest(to=relayer.sender, data="0x", gas=21_000))
            relayer.broadcast(signed)
        assert relayer.mined_within([signed.tx_hash], 5)  # automine
        real_receipt = relayer.raw_receipt
        served_from = time.monotonic() + 3 * relayer_module.DROP_CHECK_SECONDS + 0.5
        monkeypatch.setattr(
            relayer,
            "raw_receipt",
            lambda h: real_receipt(h) if time.monotonic() >= served_from else None,
        )
        monkeypatch.setattr(relayer, "_in_mempool", lambda _h: False)
        mined = relayer.wait_mined(signed.tx_hash, nonce=signed.nonce)
        assert mined.tx_hash == signed.tx_hash and time.monotonic() >= served_from
