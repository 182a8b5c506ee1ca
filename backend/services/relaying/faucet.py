"""The test stablecoin's faucet: cooldown pre-check, default idempotency key, the drip call."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from backend.services.chain import Chain
from backend.services.relaying.relayer import TxRequest

STABLECOIN = "TestStablecoin"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaucetState:
    next_drip_at: int  # unix seconds, 0 if never dripped
    chain_time: int  # latest block's timestamp: the clock drip() compares against
    cooldown_seconds: int

    @property
    def in_cooldown(self) -> bool:
        return self.chain_time < self.next_drip_at

    @property
    def next_drip_at_iso(self) -> str:
        return datetime.fromtimestamp(self.next_drip_at, UTC).isoformat()


def faucet_state(chain: Chain, address: str) -> FaucetState:
    """What drip() would see now; raises ChainUnavailable if the node is down."""
    coin = chain.stablecoin
    return chain.call(
        "reading faucet state",
        lambda: FaucetState(
            next_drip_at=int(coin.functions.nextDripAt(address).call()),
            chain_time=int(chain.w3.eth.get_block("latest")["timestamp"]),
            cooldown_seconds=int(coin.functions.cooldownSeconds().call()),
        ),
    )


def default_idempotency_key(address: str, state: FaucetState) -> str:
    """Same address within one cooldown window → same key, so a double click drips once."""
    window = state.chain_time // max(state.cooldown_seconds, 1)
    return f"faucet:{address}:{window}"


def drip_request(chain: Chain, recipient: str) -> TxRequest:
    coin = chain.stablecoin
    return TxRequest(to=coin.address, data=coin.encode_abi("drip", args=[recipient]))


@dataclass(frozen=True)
class ClientLimit:
    """At most ``limit`` new drips per client (IP address) per ``window_seconds``.

    The faucet's own cooldown is per recipient: one client naming many fresh addresses
    drained it. Counted in Redis (shared by every API process) in fixed windows. With
    Redis down the limit is not enforced (logged): the faucet is the dev chain's, and a
    down Redis already delays every drip."""

    client: redis.Redis
    limit: int
    window_seconds: int

    def take(self, who: str) -> int | None:
        """Count one drip for ``who``; None if allowed, else seconds until the next window."""
        now = int(time.time())
        window = now // self.window_seconds
        key = self._key(who, window)
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, self.window_seconds)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("faucet client limit not enforced: redis unreachable (%s)", exc)
            return None
        if int(count) <= self.limit:
            return None
        return (window + 1) * self.window_seconds - now

    def give_back(self, who: str) -> None:
        """Undo a ``take`` that created nothing (a double click found its action)."""
        with contextlib.suppress(redis.RedisError):  # then it counts once too many: harmless
            self.client.decr(self._key(who, int(time.time()) // self.window_seconds))

    def _key(self, who: str, window: int) -> str:
        return f"gpucap:faucet:client:{who}:{self.window_seconds}:{window}"
