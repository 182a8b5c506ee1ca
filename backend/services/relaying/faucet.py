"""The test stablecoin's faucet: cooldown pre-check, default idempotency key, the drip call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from backend.services.chain import Chain
from backend.services.errors import ServiceError
from backend.services.relaying.relayer import TxRequest

STABLECOIN = "TestStablecoin"


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


class FaucetUnavailable(ServiceError):
    """This chain's stablecoin has no faucet: the test token, and its faucet, are deployed
    on the dev chain only (scripts/deploy.py); elsewhere the chain's own stablecoin is."""

    code = "FaucetUnavailable"
    status = 404


def faucet_state(chain: Chain, address: str) -> FaucetState:
    """What drip() would see now; raises ChainUnavailable if the node is down and
    FaucetUnavailable on a chain whose stablecoin has none."""
    coin = chain.stablecoin
    if not any(item.get("name") == "drip" for item in coin.abi):
        raise FaucetUnavailable(
            f"the stablecoin {coin.address} on chain {chain.deployment.chain_id} has no "
            "faucet: the test token is on the dev chain only"
        )
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
