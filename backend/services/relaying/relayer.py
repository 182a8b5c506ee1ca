"""Send transactions from the relayer key: sign locally, one nonce manager per sender,
EIP-1559 fees from the node, wait for the receipt, decode reverts.

Reusable by every kind of relayed action (faucet today; forwarder requests,
settlement batches later). It knows nothing about the database: callers record
the ``SignedTx`` before calling ``broadcast`` (write-ahead), so after a crash
the same transaction is re-sent instead of a second one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from backend.services.chain import Chain, JsonRpc, chain_errors
from backend.services.claims import LEASE_SECONDS
from backend.services.errors import (
    ChainUnavailable,
    ServiceError,
    TransactionDropped,
    TransactionReverted,
)
from backend.services.relaying.nonce import NonceManager
from backend.services.revert import decode_revert, revert_data, rpc_revert
from backend.services.rpc_endpoints import method_missing

log = logging.getLogger(__name__)
GAS_HEADROOM_NUM, GAS_HEADROOM_DEN = 6, 5  # estimate × 1.2
# A searched lowest gas limit is within 1/SEARCH_PRECISION_DEN of the gas used above
# the true one; a transaction is sent with GAS_MARGIN more, for state that changes
# before it is mined (another transaction first turning a slot it writes to zero).
SEARCH_PRECISION_DEN = 100
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 103, 100


class RelayRejected(ServiceError):
    """The node refused the transaction for a non-revert reason (funds, fees, …). Retry later."""

    code = "RelayRejected"


class NonceConsumed(ServiceError):
    """A recorded transaction can never be mined: its nonce was used by another one."""

    code = "NonceConsumed"


@dataclass(frozen=True)
class TxRequest:
    to: str
    data: str
    value: int = 0
    gas: int | None = None  # None: estimate (which also catches reverts before paying gas)


# How a kind of single action turns its row's params into its transaction. Builders
# may simulate and raise TransactionReverted (decoded) themselves.
RequestBuilder = Callable[[Chain, dict[str, Any]], TxRequest]
# Whether what a row asks already holds on the chain, done by someone else (a permit
# anyone may submit): (code, reason) to confirm it with, or None to send it.
InEffectCheck = Callable[[Chain, dict[str, Any]], tuple[str, str] | None]


@dataclass(frozen=True)
class GasNeed:
    """What simulating a transaction found (Relayer.gas_need)."""

    used: int  # after refunds: what it takes of a block's gas
    lowest_limit: int  # the lowest gas limit it ran with (searched)

    @property
    def limit(self) -> int:
        """The gas limit to send it with: the lowest, plus GAS_MARGIN."""
        return self.lowest_limit * GAS_MARGIN_NUM // GAS_MARGIN_DEN

    @property
    def ratio(self) -> float:
        """Lowest limit / gas used: a like transaction's search hint."""
        return self.lowest_limit / self.used


@dataclass(frozen=True)
class _Simulated:
    succeeded: bool
    gas_used: int
    revert_data: str | None

    def out_of_gas(self, gas: int) -> bool:
        """Failed with no revert data having used (nearly) all of ``gas``."""
        return not self.succeeded and self.revert_data is None and self.gas_used >= gas * 63 // 64


def _out_of_gas(error: Any) -> bool:
    """An eth_estimateGas error that says the call needs more gas than its cap (geth,
    anvil, reth: "gas required exceeds allowance"; Hardhat: "out of gas")."""
    message = str(error.get("message", "")).lower() if isinstance(error, dict) else ""
    return "gas required exceeds" in message or "out of gas" in message


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee caps (wei)."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def bumped(self, percent: int) -> Fees:
        """At least ``percent`` higher, and at least 1 wei higher, on both caps."""

        def up(value: int) -> int:
            return max(value + 1, value * (100 + percent) // 100)

        return Fees(up(self.max_fee_per_gas), up(self.max_priority_fee_per_gas))

    def at_least(self, other: Fees) -> Fees:
        return Fees(
            max(self.max_fee_per_gas, other.max_fee_per_gas),
            max(self.max_priority_fee_per_gas, other.max_priority_fee_per_gas),
        )


@dataclass(frozen=True)
class SignedTx:
    sender: str
    nonce: int
    tx_hash: str
    raw_tx: str
    fees: Fees | None = None


@dataclass(frozen=True)
class Mined:
    tx_hash: str
    block_number: int
    # The node's raw JSON-RPC receipt (hex strings, no web3 formatting) when wait_mined
    # read it: whoever finishes the batch decodes it instead of fetching it again.
    receipt: dict[str, Any] | None = field(default=None, compare=False, repr=False)


# How often wait_mined asks whether the node still holds the transaction it waits for.
DROP_CHECK_SECONDS = 0.5
# How long a mined transaction's receipt may lag its nonce on the node before a used
# nonce is taken to be another transaction's.
RECEIPT_RACE_SECONDS = 5.0


class Relayer:
    def __init__(
        self,
        chain: Chain,
        private_key: str,
        nonces_client: Any,
        *,
        receipt_timeout: float,
        lock_seconds: float,
        replace_after_seconds: float = 60.0,
        fee_bump_percent: int = 25,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.chain = chain
        self.account: LocalAccount = Account.from_key(private_key)
        self.nonces = NonceManager(
            nonces_client,
            self.account.address,
            lock_seconds=lock_seconds,
            lease_seconds=lease_seconds,
        )
        self.receipt_timeout = receipt_timeout
        # How long a claim this relayer's waits hold outlives a dead holder (claims.py).
        self.lease_seconds = lease_seconds
        # Estimating or simulating a large batch: allow it more than the node timeout
        # meant for quick reads (a slow answer is not a dead node). Raw JSON-RPC, as
        # Chain.raw: a batch's call carries every request's calldata (tens of kB), and
        # a batch is simulated a few times (gas_need).
        self._estimator = JsonRpc(chain.endpoints, max(receipt_timeout, 10.0))
        self.replace_after_seconds = replace_after_seconds
        self.fee_bump_percent = fee_bump_percent

    @property
    def sender(self) -> str:
        return self.account.address

    # -- before sending -----------------------------------------------------

    def sign(
        self, request: TxRequest, *, nonce: int | None = None, min_fees: Fees | None = None
    ) -> SignedTx:
        """Build and sign; call inside ``self.nonces.locked()`` and broadcast before leaving it.

        ``nonce`` and ``min_fees`` re-sign a pending transaction as its replacement
        (same nonce, fees at least ``min_fees``). Raises TransactionReverted if the
        call would revert now (no gas spent).
        """
        w3 = self.chain.w3
        call = {"from": self.sender, "to": request.to, "data": request.data, "value": request.value}
        with chain_errors("preparing transaction"):
            self.chain.check_chain_id()
            gas = request.gas if request.gas is not None else self.estimate_gas(request)
            if nonce is None:
                nonce = w3.eth.get_transaction_count(self.sender, "pending")
            fees = self._fees()
        if min_fees is not None:
            fees = fees.at_least(min_fees)
        tx = {
            **call,
            "gas": gas,
            "nonce": nonce,
            "chainId": self.chain.deployment.chain_id,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
        signed = self.account.sign_transaction(tx)
        return SignedTx(
            sender=self.sender,
            nonce=nonce,
            tx_hash="0x" + signed.hash.hex().removeprefix("0x"),
            raw_tx="0x" + signed.raw_transaction.hex().removeprefix("0x"),
            fees=fees,
        )

    def estimate_gas(self, request: TxRequest) -> int:
        """The gas limit to send ``request`` with (the node's estimate plus headroom).
        Raises TransactionReverted (decoded) if the call would revert now."""
        call = {
            "from": self.sender,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
        }
        with chain_errors("estimating gas"):
            resp = self._estimator.request(
                # "latest" as web3 sends it: without a block a node may estimate on its
                # pending state, where a stuck transaction's replacement would revert.
                "eth_estimateGas",
                [call, "latest"],
            )
        if "error" in resp:
            if (revert := rpc_revert(resp["error"])) is not None:
                decoded = decode_revert(revert.data, self.chain.error_abis)
                raise TransactionReverted(decoded.reason, code=decoded.code)
            raise Web3RPCError(f"estimating gas: {resp['error']}", rpc_response=resp)
        estimate = int(resp["result"], 16)
        return estimate * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN

    def gas_need(
        self,
        request: TxRequest,
        *,
        forwarded_gas: int,
        simulate_gas: int,
        hint: float | None = None,
    ) -> GasNeed:
        """The gas ``request`` uses and the lowest gas limit it runs with, from simulated
        runs (eth_simulateV1), for calls that forward at most ``forwarded_gas`` to one
        callee (a forwarder batch: its largest request's signed gas).

        Why search: a node packs a block by the gas its transactions use plus the
        gas LIMIT of the next one, so a limit above what the transaction needs
        leaves block space empty. And the gas used is no bound on the limit: it is
        what is left after refunds (a relayed permit buy sets an allowance and
        spends it back to zero, refunding 19,900 gas of its 141k), while the limit
        must cover the run before them. One run at ``simulate_gas`` gives the gas
        used; then the lowest limit that runs the same way (success, same gas used)
        is searched between it and ``simulate_gas``, to within 1/SEARCH_PRECISION_DEN
        of the gas used: first at ``hint`` × gas used (what a like transaction
        needed; else the most EIP-3529 refunds allow, used × 5/4, plus 64/63 of
        ``forwarded_gas``, which an ERC-2771 forwarder must hold when it calls),
        then beside it, then halving. A good hint ends the search in two runs;
        eth_estimateGas runs a batch of 79 buys about 20 times (anvil: 248 ms of CPU
        against 12 ms a run).

        Raises TransactionReverted (decoded) if the call reverts. A node without
        eth_simulateV1 (probed once per node): ``_estimated_need``. Out of gas at
        ``simulate_gas``: a need of more than ``simulate_gas`` (the caller's cue to
        send less)."""
        if not self.chain.supports("eth_simulateV1"):
            return self._estimated_need(request, simulate_gas)
        first = self._simulate(request, simulate_gas)
        if first is None:  # the node said "no such method" after all
            return self._estimated_need(request, simulate_gas)
        if not first.succeeded:
            if first.out_of_gas(simulate_gas):
                return GasNeed(used=simulate_gas, lowest_limit=simulate_gas + 1)
            decoded = decode_revert(first.revert_data, self.chain.error_abis)
            raise TransactionReverted(decoded.reason, code=decoded.code)
        used = first.gas_used
        precision = max(1, used // SEARCH_PRECISION_DEN)
        lo, hi = used - 1, simulate_gas  # below the gas used nothing runs; simulate_gas did
        guess = (
            math.ceil(used * hint)
            if hint is not None
            else used * 5 // 4 + forwarded_gas * 64 // 63 + 10_000
        )
        probe, first_probe = guess, True
        while hi - lo > precision:
            probe = min(max(probe, lo + 1), hi - 1)
            run = self._simulate(request, probe)
            if run is not None and run.succeeded and run.gas_used == used:
                hi, beside = probe, probe - precision
            else:
                lo, beside = probe, probe + precision
            probe = beside if first_probe else (lo + hi) // 2
            first_probe = False
        return GasNeed(used=used, lowest_limit=hi)

    def _estimated_need(self, request: TxRequest, simulate_gas: int) -> GasNeed:
        """gas_need by standard methods: eth_estimateGas capped at ``simulate_gas`` on the
        latest block. The node's estimate is its own search for the lowest limit that
        runs without reverting; with the forwarder's gas check (a forwarded call that
        got less than its signed gas reverts the batch) that is the limit the searched
        one is. The gas used after refunds is not in the answer: the estimate stands
        for it too, an upper bound (a batch then takes a little more of a block than
        it will use: fewer requests per batch, never an underpriced one)."""
        call = {
            "from": self.sender,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
            "gas": hex(simulate_gas),
        }
        with chain_errors("estimating gas"):
            resp = self._estimator.request("eth_estimateGas", [call, "latest"])
        if "error" in resp:
            error = resp["error"]
            if (revert := rpc_revert(error)) is not None:
                decoded = decode_revert(
                    revert.data or self._call_revert(call), self.chain.error_abis
                )
                raise TransactionReverted(decoded.reason, code=decoded.code)
            if _out_of_gas(error):
                return GasNeed(used=simulate_gas, lowest_limit=simulate_gas + 1)
            raise Web3RPCError(f"estimating gas: {error}", rpc_response=resp)
        estimate = int(resp["result"], 16)
        return GasNeed(used=estimate, lowest_limit=estimate)

    def _call_revert(self, call: dict[str, Any]) -> str | None:
        """The revert data of ``call`` by eth_call on the latest block, for nodes whose
        eth_estimateGas says "reverted" without the data."""
        with chain_errors("replaying reverted call"):
            resp = self._estimator.request("eth_call", [call, "latest"])
        revert = rpc_revert(resp.get("error")) if isinstance(resp, dict) else None
        return revert.data if revert is not None else None

    def _simulate(self, request: TxRequest, gas: int) -> _Simulated | None:
        """One eth_simulateV1 run of ``request`` with ``gas`` on the latest block; None
        if the node has no eth_simulateV1."""
        call = {
            "from": self.sender,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
            "gas": hex(gas),
        }
        with chain_errors("simulating transaction"):
            resp = self._estimator.request(
                "eth_simulateV1", [{"blockStateCalls": [{"calls": [call]}]}, "latest"]
            )
        if "error" in resp:
            if method_missing(resp["error"]):
                self.chain.endpoints.forget(self.chain.endpoints.current, "eth_simulateV1")
                return None
            raise Web3RPCError(f"simulating transaction: {resp['error']}", rpc_response=resp)
        (result,) = resp["result"][0]["calls"]
        data = result.get("returnData")
        return _Simulated(
            succeeded=int(result["status"], 16) == 1,
            gas_used=int(result["gasUsed"], 16),
            revert_data=data if data not in (None, "0x") else None,
        )

    def block_gas_limit(self) -> int:
        with chain_errors("reading block gas limit"):
            return int(self.chain.w3.eth.get_block("latest")["gasLimit"])

    def _fees(self) -> Fees:
        w3 = self.chain.w3
        base_fee = w3.eth.get_block("latest").get("baseFeePerGas") or 0
        priority = w3.eth.max_priority_fee
        # Room for the base fee to double before the transaction is priced out.
        return Fees(max_fee_per_gas=2 * base_fee + priority, max_priority_fee_per_gas=priority)

    def mined_nonce(self) -> int:
        """How many of the sender's transactions are mined (its next nonce on chain)."""
        with chain_errors("reading nonce"):
            return int(self.chain.w3.eth.get_transaction_count(self.sender, "latest"))

    # -- sending --------------------------------------------------------------

    def broadcast(self, signed: SignedTx) -> None:
        """Send (or re-send) a signed transaction. Idempotent for the same transaction.
        Raw JSON-RPC: a batch's transaction is tens of kB, which web3's request encoding
        and requests' session walk through for nothing (a fifth of a batch's relaying
        CPU in ``make bench``)."""
        raw_hex = "0x" + signed.raw_tx.removeprefix("0x")
        with chain_errors("broadcasting transaction"):
            try:
                self.chain.raw("broadcasting transaction", "eth_sendRawTransaction", [raw_hex])
            except Web3RPCError as exc:
                # Already known / already mined: the same hash is what we want.
                if self.is_mined(signed.tx_hash) or self._in_mempool(signed.tx_hash):
                    return
                mined_nonce = self.chain.w3.eth.get_transaction_count(signed.sender, "latest")
                if mined_nonce > signed.nonce:
                    raise NonceConsumed(
                        f"nonce {signed.nonce} of {signed.sender} was used by another transaction"
                    ) from exc
                pending = self.chain.w3.eth.get_transaction_count(signed.sender, "pending")
                if pending > signed.nonce:
                    # Another transaction holds the nonce in the node's pool ("replacement
                    # transaction underpriced"): not this one's failure. Retry: once it is
                    # mined the nonce is consumed (re-signed), if it is dropped this one goes.
                    raise ChainUnavailable(
                        f"nonce {signed.nonce} of {signed.sender} is held by another pending "
                        f"transaction: {exc}"
                    ) from exc
                raise RelayRejected(f"node refused transaction {signed.tx_hash}: {exc}") from exc

    def _in_mempool(self, tx_hash: str) -> bool:
        """Known to the node (pending, or mined). Raw JSON-RPC: a batch's transaction
        carries every request's calldata, which web3 would format only to be dropped."""
        found = self.chain.raw("looking up transaction", "eth_getTransactionByHash", [tx_hash])
        return found is not None

    # -- after sending --------------------------------------------------------

    def receipt(self, tx_hash: str) -> Any | None:
        """The receipt as web3 formats it (AttributeDict, HexBytes, ints), or None."""
        with chain_errors("reading receipt"):
            try:
                return self.chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

    def raw_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The node's own receipt (hex strings), or None if not mined. No web3 middleware
        or result formatters: on a batch of many requests (hundreds of logs) those cost
        far more than the round trip."""
        result = self.chain.raw("reading receipt", "eth_getTransactionReceipt", [tx_hash])
        return dict(result) if result else None

    def mined_within(self, hashes: Sequence[str], seconds: float = RECEIPT_RACE_SECONDS) -> bool:
        """Whether any of ``hashes`` shows a receipt within ``seconds``: asked before
        concluding that a used nonce was used by another transaction (a mined one's
        receipt can lag its nonce, foundry-rs/foundry#10944)."""
        deadline = time.monotonic() + seconds
        while True:
            if any(self.is_mined(h) for h in hashes):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def is_mined(self, tx_hash: str) -> bool:
        return self.raw_receipt(tx_hash) is not None

    def is_known(self, tx_hash: str) -> bool:
        """Mined or waiting in the node's pool."""
        with chain_errors("looking up transaction"):
            return self.is_mined(tx_hash) or self._in_mempool(tx_hash)

    def wait_mined(
        self, tx_hash: str, also: Sequence[str] = (), *, nonce: int | None = None
    ) -> Mined:
        """Wait for the receipt of ``tx_hash`` or of any hash in ``also`` (transactions it
        replaced: whichever one the chain took); raise TransactionReverted (decoded) if
        its status is 0, ChainUnavailable if none is mined within the receipt timeout.

        With ``nonce`` (theirs), every ``DROP_CHECK_SECONDS`` it also asks whether the
        node still holds any of them: a node may drop a pending transaction (anvil does
        under load, foundry-rs/foundry#13352), and waiting out the whole receipt timeout
        for a transaction that can no longer be mined left its actions waiting for it.
        Dropped means: in no pool at two checks that far apart AND the nonce still
        unused. A used nonce with no receipt yet is anvil's receipt race (the nonce
        advances and the pool forgets the transaction before its receipt is served,
        foundry-rs/foundry#10944; seen lasting over half a second under load): the
        transaction was mined, and the wait goes on."""
        hashes = [tx_hash, *also]
        start = time.monotonic()
        deadline = start + self.receipt_timeout
        next_check, missing_since = start + DROP_CHECK_SECONDS, None
        while True:
            receipt = next((r for h in hashes if (r := self.raw_receipt(h)) is not None), None)
            if receipt is not None:
                break
            now = time.monotonic()
            if nonce is not None and now >= next_check:
                next_check = now + DROP_CHECK_SECONDS
                if any(self._in_mempool(h) for h in hashes) or self.mined_nonce() > nonce:
                    missing_since = None
                elif missing_since is None:
                    missing_since = now
                elif now - missing_since >= DROP_CHECK_SECONDS:
                    raise TransactionDropped(
                        f"transaction {tx_hash} is neither mined nor pending on the node and "
                        f"nonce {nonce} is unused (checked {now - missing_since:.1f}s apart); "
                        "re-sending it"
                    )
            if now >= deadline:
                raise ChainUnavailable(
                    f"transaction {tx_hash} not mined within {self.receipt_timeout}s"
                )
            time.sleep(0.1)
        tx_hash = "0x" + str(receipt["transactionHash"]).removeprefix("0x").lower()
        block_number = int(receipt["blockNumber"], 16)
        if int(receipt["status"], 16) == 1:
            return Mined(tx_hash=tx_hash, block_number=block_number, receipt=receipt)
        decoded = decode_revert(
            self._replay_revert_data(tx_hash, block_number), self.chain.error_abis
        )
        raise TransactionReverted(
            decoded.reason, code=decoded.code, tx_hash=tx_hash, block_number=block_number
        )

    def _replay_revert_data(self, tx_hash: str, block_number: int) -> str | None:
        """Receipts carry no revert data: re-run the call on the state it saw (the block before)."""
        w3 = self.chain.w3
        with chain_errors("replaying reverted transaction"):
            tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            call = {
                "from": tx["from"],
                "to": tx["to"],
                "data": tx["input"],
                "value": tx["value"],
                "gas": tx["gas"],
            }
            try:
                w3.eth.call(call, block_identifier=max(block_number - 1, 0))  # type: ignore[arg-type]
            except ContractLogicError as exc:
                return revert_data(exc.data)
        log.warning("reverted transaction %s does not revert when replayed", tx_hash)
        return None
