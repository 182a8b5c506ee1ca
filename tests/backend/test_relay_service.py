"""The relay service in-process on the real chain and Redis: reverts, crashes, retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ActionKind
from backend.redis_embedded import EmbeddedRedis
from backend.services.chain import Chain
from backend.services.errors import ChainUnavailable, TransactionReverted
from backend.services.market.permits import Permit, permit_tx
from backend.services.relaying import actions
from backend.services.relaying.faucet import drip_request
from backend.services.relaying.relay import relay_action
from backend.services.relaying.relayer import NonceConsumed, Relayer, TxRequest
from backend.services.relaying.sweep import sweep_stale_actions
from backend.worker.kinds import IN_EFFECT_CHECKS, REQUEST_BUILDERS
from gpucap import devchain
from gpucap.signing import sign_permit
from tests.backend.backend_helpers import new_faucet_action, service_relayer

DRIP = 1_000 * 10**6


@pytest.fixture(scope="module")
def relayer(live_deployment: Any, redis_server: EmbeddedRedis) -> Iterator[Relayer]:
    with service_relayer(live_deployment, redis_server.url) as r:
        yield r


def read(sessions: sessionmaker[Session], action_id: str) -> Any:
    with sessions() as session:
        return actions.get_action(session, action_id)


def test_mined_revert_is_decoded_from_a_replay(
    relayer: Relayer, live_deployment: Any, stranger: Any
) -> None:
    address = Account.create().address
    live_deployment.system.stablecoin.drip(address, {"from": stranger})
    request = drip_request(relayer.chain, address)
    with pytest.raises(TransactionReverted) as at_estimate:  # no gas spent
        relayer.sign(request)
    assert at_estimate.value.code == "FaucetCooldown" and at_estimate.value.tx_hash is None

    with relayer.nonces.locked():  # fixed gas: skip estimation so it is mined and reverts
        signed = relayer.sign(TxRequest(to=request.to, data=request.data, gas=120_000))
        relayer.broadcast(signed)
    with pytest.raises(TransactionReverted) as mined:
        relayer.wait_mined(signed.tx_hash)
    assert mined.value.code == "FaucetCooldown"
    assert address in mined.value.reason
    assert mined.value.tx_hash == signed.tx_hash and mined.value.block_number
    assert relayer.receipt(signed.tx_hash)["status"] == 0


def test_relay_twice_drips_once(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    address = Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    assert (
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
        == "confirmed"
    )
    first = read(sessions, action_id)
    assert (
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
        == "confirmed"
    )
    again = read(sessions, action_id)
    assert (again.tx_hash, again.attempts) == (first.tx_hash, 1)
    assert live_deployment.system.stablecoin.balanceOf(address) == DRIP


def test_crash_between_record_and_broadcast_resends_the_same_tx(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    address = Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    with relayer.nonces.locked():
        signed = relayer.sign(drip_request(relayer.chain, address))
        actions.record_sent(sessions, [action_id], signed)  # … and the worker dies here
    assert not relayer.is_known(signed.tx_hash)

    assert (
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
        == "confirmed"
    )
    row = read(sessions, action_id)
    assert row.tx_hash == signed.tx_hash and row.status == "confirmed"
    assert live_deployment.system.stablecoin.balanceOf(address) == DRIP


def test_nonce_held_by_another_pending_tx_is_retried_not_failed(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    """The node refuses the recorded transaction ("replacement transaction underpriced")
    while another one holds its nonce in the pool: a retry, never a failed action; once that
    one is mined the nonce is consumed and the action is signed anew."""
    w3 = relayer.chain.w3
    address, other = Account.create().address, Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        with relayer.nonces.locked():
            lost = relayer.sign(drip_request(relayer.chain, address))
            actions.record_sent(sessions, [action_id], lost)
            taker = relayer.sign(drip_request(relayer.chain, other))
            relayer.broadcast(taker)  # pending: it holds the nonce
        with pytest.raises(ChainUnavailable, match="held by another pending transaction"):
            relay_action(
                sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
            )
        assert read(sessions, action_id).status == "submitted"  # not failed: retried later
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    w3.eth.wait_for_transaction_receipt(taker.tx_hash, timeout=60)
    with pytest.raises(NonceConsumed):
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    assert (
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
        == "confirmed"
    )


def test_recorded_tx_whose_nonce_was_taken_is_resigned(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    address, other = Account.create().address, Account.create().address
    action_id = new_faucet_action(relayer.chain, sessions, address)
    with relayer.nonces.locked():
        lost = relayer.sign(drip_request(relayer.chain, address))
        actions.record_sent(sessions, [action_id], lost)
        # Another transaction takes the same nonce before the recorded one is sent.
        taker = relayer.sign(drip_request(relayer.chain, other))
        relayer.broadcast(taker)
    relayer.chain.w3.eth.wait_for_transaction_receipt(taker.tx_hash, timeout=60)

    with pytest.raises(NonceConsumed):
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
    row = read(sessions, action_id)
    assert row.status == "pending" and row.tx_hash is None  # the retry signs anew
    assert (
        relay_action(
            sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
        )
        == "confirmed"
    )
    assert read(sessions, action_id).tx_hash != lost.tx_hash
    assert live_deployment.system.stablecoin.balanceOf(address) == DRIP


def test_chain_down_keeps_the_row_open_with_a_reason(
    relayer: Relayer,
    sessions: sessionmaker[Session],
    redis_server: EmbeddedRedis,
    live_deployment: Any,
) -> None:
    dead = Chain.connect(
        f"http://127.0.0.1:{devchain.free_port()}", str(live_deployment.manifest_path), 1
    )
    offline = Relayer(
        dead, devchain.dev_private_key(9), relayer.nonces._client, receipt_timeout=1, lock_seconds=5
    )
    action_id = new_faucet_action(relayer.chain, sessions, Account.create().address)
    with pytest.raises(ChainUnavailable):
        relay_action(
            sessions=sessions, relayer=offline, builders=REQUEST_BUILDERS, action_id=action_id
        )
    row = read(sessions, action_id)
    assert row.status == "pending" and row.error_code == "ChainUnavailable"
    assert "unreachable" in row.error


def test_sweep_enqueues_stale_rows_once(relayer: Relayer, sessions: sessionmaker[Session]) -> None:
    a = new_faucet_action(relayer.chain, sessions, Account.create().address)
    enqueued: list[str] = []
    assert (
        sweep_stale_actions(sessions=sessions, enqueue=enqueued.append, older_than_seconds=60) == []
    )
    assert sweep_stale_actions(
        sessions=sessions, enqueue=enqueued.append, older_than_seconds=0
    ) == [a]
    # Claimed a moment ago: a concurrent or immediate second sweep leaves it alone.
    assert (
        sweep_stale_actions(sessions=sessions, enqueue=enqueued.append, older_than_seconds=30) == []
    )
    assert enqueued == [a]


# ---------------------------------------------------------------------------
# Permits for the Market (ActionKind.PERMIT): anyone may submit a permit, so one sent
# by someone else first is done, not failed.
# ---------------------------------------------------------------------------


def _permit_action(
    relayer: Relayer, sessions: sessionmaker[Session], owner: Any, *, value: int, nonce: int = 0
) -> tuple[str, Permit]:
    """A pending permit action: ``owner``'s permit of the stablecoin to the Market."""
    s = relayer.chain
    coin, market = s.stablecoin, s.contract("Market")
    deadline = s.latest_block()["timestamp"] + 3_600
    v, r, sig_s = sign_permit(
        owner,
        token_name=coin.functions.name().call(),
        token=coin.address,
        spender=market.address,
        value=value,
        nonce=nonce,
        deadline=deadline,
        chain_id=s.deployment.chain_id,
    )
    permit = Permit(
        token=coin.address,
        owner=owner.address,
        spender=market.address,
        value=value,
        nonce=nonce,
        deadline=deadline,
        signature=r + sig_s + bytes([v]),
    )
    with sessions() as session:
        action, _ = actions.create_action(
            session,
            kind=ActionKind.PERMIT,
            idempotency_key=permit.idempotency_key,
            params=permit.as_params(),
            chain=s.identity(),
        )
    return action.id, permit


def _submit_directly(live_deployment: Any, permit: Permit, sender: Any) -> None:
    """Someone else (``sender``, paying its own gas) submits the permit first."""
    sig = permit.signature
    live_deployment.system.stablecoin.permit(
        permit.owner,
        permit.spender,
        permit.value,
        permit.deadline,
        sig[64],
        sig[:32],
        sig[32:64],
        {"from": sender},
    )


def _relay_permit(relayer: Relayer, sessions: sessionmaker[Session], action_id: str) -> str:
    return relay_action(
        sessions=sessions,
        relayer=relayer,
        builders=REQUEST_BUILDERS,
        in_effect=IN_EFFECT_CHECKS,
        action_id=action_id,
    )


def test_a_permit_is_sent_once_and_one_front_run_is_in_effect(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any, stranger: Any
) -> None:
    coin = live_deployment.system.stablecoin
    market = live_deployment.system.market
    # Relayed: the relayer sends permit() as itself; the owner never had gas.
    owner = Account.create()
    sent, _ = _permit_action(relayer, sessions, owner, value=7 * 10**6)
    assert _relay_permit(relayer, sessions, sent) == "confirmed"
    row = read(sessions, sent)
    assert row.tx_hash is not None and row.error_code is None
    assert relayer.receipt(row.tx_hash)["from"].lower() == relayer.sender.lower()
    assert coin.allowance(owner.address, market) == 7 * 10**6 and coin.nonces(owner.address) == 1

    # Front-run before the relayer sent it: confirmed with nothing sent.
    early = Account.create()
    action_id, permit = _permit_action(relayer, sessions, early, value=5 * 10**6)
    _submit_directly(live_deployment, permit, stranger)
    assert _relay_permit(relayer, sessions, action_id) == "confirmed"
    row = read(sessions, action_id)
    assert (row.tx_hash, row.error_code) == (None, "PermitInEffect")
    assert coin.allowance(early.address, market) == 5 * 10**6

    # Front-run after the relayer signed and recorded its transaction (it was not yet
    # broadcast): the recorded one is sent, mined and reverts (the nonce is used), and the
    # action is confirmed all the same, on that transaction.
    late = Account.create()
    action_id, permit = _permit_action(relayer, sessions, late, value=3 * 10**6)
    with relayer.nonces.locked():  # fixed gas: no estimate, so it is mined and reverts
        request = permit_tx(relayer.chain, permit.as_params())
        signed = relayer.sign(TxRequest(to=request.to, data=request.data, gas=120_000))
        actions.record_sent(sessions, [action_id], signed)
    _submit_directly(live_deployment, permit, stranger)
    assert _relay_permit(relayer, sessions, action_id) == "confirmed"
    row = read(sessions, action_id)
    assert (row.tx_hash, row.error_code) == (signed.tx_hash, "PermitInEffect")
    assert relayer.receipt(signed.tx_hash)["status"] == 0
    assert coin.allowance(late.address, market) == 3 * 10**6


def test_a_permit_whose_nonce_another_permit_used_fails_with_the_reason(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any, stranger: Any
) -> None:
    """The owner's nonce went to a smaller permit: the allowance does not cover this one,
    so it is not in effect and can never run; it fails, nothing sent."""
    owner = Account.create()
    action_id, _ = _permit_action(relayer, sessions, owner, value=9 * 10**6)
    _, smaller = _permit_action(relayer, sessions, owner, value=10**6)
    _submit_directly(live_deployment, smaller, stranger)
    assert _relay_permit(relayer, sessions, action_id) == "failed"
    row = read(sessions, action_id)
    assert (row.tx_hash, row.error_code) == (None, "PermitNonceUsed")
    assert "sign a new permit" in row.error
