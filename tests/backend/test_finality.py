"""``finality.review_mined`` in-process on the real chain (anvil's ``evm_snapshot`` and
``evm_revert``) and Redis: a mined action becomes final under enough blocks, is
re-opened when its transaction leaves the chain (and /health counts it) and then runs
once more; open actions
of another chain fail instead of being sent to this one."""

from __future__ import annotations

import uuid
from typing import Any

import redis
from brownie import web3
from eth_account import Account
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ActionKind
from backend.redis_embedded import EmbeddedRedis
from backend.services.chain import ChainIdentity
from backend.services.health import check_reopened, record_reopened
from backend.services.relaying import actions
from backend.services.relaying.finality import review_mined
from backend.services.relaying.relay import relay_action
from backend.services.relaying.relayer import Relayer
from backend.worker.kinds import REQUEST_BUILDERS
from tests.backend.backend_helpers import new_faucet_action
from tests.backend.test_relay_service import read
from tests.backend.test_relay_service import relayer as relay_service_relayer

relayer = relay_service_relayer  # the relay service tests' in-process relayer, here too


def relay(relayer: Relayer, sessions: sessionmaker[Session], action_id: str) -> str:
    return relay_action(
        sessions=sessions, relayer=relayer, builders=REQUEST_BUILDERS, action_id=action_id
    )


def rpc(method: str, *params: Any) -> Any:
    return web3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def test_final_under_enough_blocks_reopened_when_reverted_away_then_once_more(
    relayer: Relayer,
    sessions: sessionmaker[Session],
    live_deployment: Any,
    redis_server: EmbeddedRedis,
) -> None:
    coin = live_deployment.system.stablecoin
    address = Account.create().address
    identity = relayer.chain.identity()
    before = rpc("evm_snapshot")
    action_id = new_faucet_action(relayer.chain, sessions, address)
    assert relay(relayer, sessions, action_id) == "confirmed"
    mined = read(sessions, action_id)
    drip = coin.balanceOf(address)
    assert drip > 0 and not mined.final

    review = review_mined(sessions, relayer.chain, identity, confirmations=2)
    assert (review.reopened, review.finalized) == ([], 0)  # 0 blocks on top yet
    rpc("evm_mine")
    rpc("evm_mine")
    assert review_mined(sessions, relayer.chain, identity, confirmations=2).finalized == 1
    assert read(sessions, action_id).final

    # Back to before the drip (the chain as a deep reorg leaves it): final or not, the
    # row is re-opened with the transaction it had, and the next relay re-sends it.
    rpc("evm_revert", before)
    assert coin.balanceOf(address) == 0
    review = review_mined(
        sessions, relayer.chain, identity, confirmations=2, reorged_to=mined.block_number - 1
    )
    assert review.reopened == [action_id]
    reopened = read(sessions, action_id)
    assert (reopened.status, reopened.final, reopened.block_number) == ("submitted", False, None)
    assert reopened.tx_hash == mined.tx_hash
    # /health counts it (what the index task records): re-opened, still open.
    client = redis.Redis.from_url(redis_server.url)
    record_reopened(client, review.reopened)
    client.close()
    health = check_reopened(sessions, redis_server.url, 1.0, max_open_age_s=300)
    assert (health["ok"], health["reopened_last_hour"], health["reopened_open"]) == (True, 1, 1)
    stale = check_reopened(sessions, redis_server.url, 1.0, max_open_age_s=0)
    assert stale["ok"] is False and "stale" in stale["detail"], stale
    assert relay(relayer, sessions, action_id) == "confirmed"
    assert coin.balanceOf(address) == drip  # once on the surviving chain
    health = check_reopened(sessions, redis_server.url, 1.0, max_open_age_s=0)
    assert (health["ok"], health["reopened_last_hour"], health["reopened_open"]) == (True, 1, 0)
    assert "1 action(s) re-opened after a reorg in the last hour; 0 still open" in health["detail"]
    again = review_mined(sessions, relayer.chain, identity, confirmations=0)
    assert again.reopened == [] and read(sessions, action_id).final


def test_open_actions_of_another_chain_fail_and_others_are_left_alone(
    relayer: Relayer, sessions: sessionmaker[Session]
) -> None:
    here = relayer.chain.identity()
    gone = ChainIdentity(here.chain_id, "0x" + "ee" * 32, here.deployment)
    with sessions() as session:
        old, _ = actions.create_action(
            session,
            kind=ActionKind.FAUCET,
            idempotency_key=str(uuid.uuid4()),
            params={"address": Account.create().address},
            chain=gone,
        )
    current = new_faucet_action(relayer.chain, sessions, Account.create().address)
    review = review_mined(sessions, relayer.chain, here, confirmations=2)
    assert review.abandoned == [old.id]
    failed = read(sessions, old.id)
    assert (failed.status, failed.error_code) == ("failed", "ChainChanged")
    assert read(sessions, current).status == "pending"
