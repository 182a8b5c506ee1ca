"""Send transactions from the relayer key: sign locally, one nonce manager per sender,
EIP-1559 fees from the node, wait for the receipt, decode reverts.

Reusable by every kind of relayed action (faucet today; forwarder requests,
settlement batches later). It knows nothing about the database: callers record
the ``SignedTx`` before calling ``broadcast`` (write-ahead), so after a crash
the same transaction is re-sent instead of a second one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from backend.services.chain import Chain, chain_errors, make_web3
from backend.services.errors import (
    ChainUnavailable,
    ServiceError,
    TransactionDropped,
    TransactionReverted,
)
from backend.services.nonce import NonceManager
from backend.services.revert import decode_revert

log = logging.getLogger(__name__)
GAS_HEADROOM_NUM, GAS_HEADROOM_DEN = 6, 5  # estimate × 1.2
GAS_DRIFT_NUM, GAS_DRIFT_DEN = 11, 10  # a simulation's gas before refunds × 1.1


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
    ) -> None:
        self.chain = chain
        self.account: LocalAccount = Account.from_key(private_key)
        self.nonces = NonceManager(nonces_client, self.account.address, lock_seconds=lock_seconds)
        self.receipt_timeout = receipt_timeout
        # Estimating a large batch runs it several times: allow it more than the
        # node timeout meant for quick reads (a slow answer is not a dead node).
        self._estimator = make_web3(
            chain.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            max(receipt_timeout, 10.0),
        )
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
        # Raw JSON-RPC: web3's request formatters walk and re-validate the whole call,
        # and a batch's calldata is every request's (tens of kilobytes).
        call = {
            "from": self.sender,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
        }
        with chain_errors("estimating gas"):
            resp = self._estimator.provider.make_request(  # type: ignore[arg-type]
                # "latest" as web3 sends it: without a block a node may estimate on its
                # pending state, where a stuck transaction's replacement would revert.
                "eth_estimateGas",
                [call, "latest"],
            )
        if "error" in resp:
            try:
                if isinstance(resp["error"], dict):  # web3's own revert check, as it runs it
                    raise_contract_logic_error_on_revert(resp)
            except ContractLogicError as exc:
                decoded = decode_revert(
                    exc.data if isinstance(exc.data, str) else None, self.chain.error_abis
                )
                raise TransactionReverted(decoded.reason, code=decoded.code) from exc
            raise Web3RPCError(f"estimating gas: {resp['error']}", rpc_response=resp)
        estimate = int(resp["result"], 16)
        return estimate * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN

    def gas_limit(self, request: TxRequest, *, forwarded_gas: int, simulate_gas: int) -> int:
        """The gas limit for ``request`` from ONE simulated execution (eth_simulateV1 with
        ``simulate_gas``), for calls that forward at most ``forwarded_gas`` to one callee
        (a forwarder batch: its largest request's signed gas).

        eth_estimateGas searches for the lowest limit that succeeds by running the call
        again and again: for a batch of 79 relayed buys, anvil spent 248 ms of CPU on it
        (20 runs) against 12 ms for one simulation. The limit is the simulation's gas
        used, raised to what it can have been before refunds (EIP-3529 refunds at most a
        fifth of it), with GAS_DRIFT headroom for state changing before it is mined,
        plus what must be left when the largest request is called (an ERC-2771
        forwarder requires the callee to get all its gas: 64/63 of it in hand).

        Raises TransactionReverted (decoded) if the call reverts. A node without
        eth_simulateV1 gets ``estimate_gas``. Out of gas at ``simulate_gas``: returns
        more than ``simulate_gas`` (the caller's cue to send less)."""
        call = {
            "from": self.sender,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
            "gas": hex(simulate_gas),
        }
        with chain_errors("simulating transaction"):
            resp = self._estimator.provider.make_request(  # type: ignore[arg-type]
                "eth_simulateV1", [{"blockStateCalls": [{"calls": [call]}]}, "latest"]
            )
        if "error" in resp:
            if isinstance(resp["error"], dict) and resp["error"].get("code") == -32601:
                return self.estimate_gas(request)  # the node has no eth_simulateV1
            raise Web3RPCError(f"simulating transaction: {resp['error']}", rpc_response=resp)
        (result,) = resp["result"][0]["calls"]
        used = int(result["gasUsed"], 16)
        if int(result["status"], 16) != 1:
            data = result.get("returnData")
            if data in (None, "0x") and used >= simulate_gas * 63 // 64:
                return simulate_gas + 1  # ran out of gas: needs more than simulated
            decoded = decode_revert(
                data if data not in (None, "0x") else None, self.chain.error_abis
            )
            raise TransactionReverted(decoded.reason, code=decoded.code)
        before_refunds = used * 5 // 4
        return before_refunds * GAS_DRIFT_NUM // GAS_DRIFT_DEN + forwarded_gas * 64 // 63 + 10_000

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
        """Send (or re-send) a signed transaction. Idempotent for the same transaction."""
        with chain_errors("broadcasting transaction"):
            try:
                self.chain.w3.eth.send_raw_transaction(HexBytes(signed.raw_tx))
            except Web3RPCError as exc:
                # Already known / already mined: the same hash is what we want.
                if self.is_mined(signed.tx_hash) or self._in_mempool(signed.tx_hash):
                    return
                mined_nonce = self.chain.w3.eth.get_transaction_count(signed.sender, "latest")
                if mined_nonce > signed.nonce:
                    raise NonceConsumed(
                        f"nonce {signed.nonce} of {signed.sender} was used by another transaction"
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
                return exc.data if isinstance(exc.data, str) else None
        log.warning("reverted transaction %s does not revert when replayed", tx_hash)
        return None
