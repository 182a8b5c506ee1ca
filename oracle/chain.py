"""The daemon's view of the chain: OracleHub + NodeRegistry through web3.py.

Reads are plain calls; the one write (``attest``) is simulated first so that a
rejection is logged as the decoded custom error, then signed locally, sent, and
its receipt checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions import TypedTransaction
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

from gpucap.attestation import EpochReport, OracleSignature
from gpucap.deployment import Deployment
from gpucap.revert import decode_revert, revert_data
from oracle.challenges import Registration
from oracle.errors import (
    AttestationRejected,
    AttestationReverted,
    ChainMovedBack,
    ChainReset,
    TransactionDropped,
)
from oracle.telemetry import EpochWindow, NodeInfo

# NodeRegistry.NodeStatus: nodes in these states have nothing left to measure.
_UNMEASURED_STATUSES = frozenset({0, 4})  # None, Exited
_READ_BATCH = 500
# Headroom over the simulated gas: state may shift between simulation and mining.
_GAS_HEADROOM_NUM, _GAS_HEADROOM_DEN = 12, 10


@dataclass(frozen=True)
class HubState:
    """What one tick needs to decide which epoch to attest, read together."""

    last_attested_epoch: int
    current_epoch: int
    config_version: int
    quorum: int


@dataclass(frozen=True)
class SignedAttestation:
    """A signed ``attest`` transaction, not yet (known to be) sent.

    Persisted before it is sent: after a crash the very same bytes are re-sent,
    so the epoch can only ever be posted by this one transaction hash.
    """

    epoch: int
    tx_hash: str
    raw: bytes
    nonce: int


@dataclass(frozen=True)
class PostedAttestation:
    tx_hash: str
    block_number: int
    gas_used: int
    block_hash: str = ""  # the block that holds it: a reorg that removes it changes this


class ChainClient:
    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.hub: Contract = deployment.contract(w3, "OracleHub")
        self.registry: Contract = deployment.contract(w3, "NodeRegistry")
        # GPU classes are immutable once registered, so their power is cached.
        self._power_by_class: dict[int, int] = {}
        # The hub's epoch schedule (genesis, length) is immutable too: read on first use.
        self._epoch_schedule: tuple[int, int] | None = None

    @classmethod
    def connect(cls, rpc_url: str, manifest_path: str, timeout_s: float = 30.0) -> ChainClient:
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        deployment = Deployment.load(manifest_path)
        deployment.check_chain(w3)  # never sign for a chain the manifest is not for
        return cls(w3, deployment)

    # -- reads -----------------------------------------------------------------

    def hub_state(self) -> HubState:
        head = self.w3.eth.get_block("latest")  # one block for all reads: a consistent view
        block, block_hash = int(head["number"]), bytes(head["hash"])
        fns = self.hub.functions
        try:
            return HubState(
                last_attested_epoch=fns.lastAttestedEpoch().call(block_identifier=block),
                current_epoch=fns.currentEpoch().call(block_identifier=block),
                config_version=fns.configVersion().call(block_identifier=block),
                quorum=fns.quorum().call(block_identifier=block),
            )
        except Web3RPCError as exc:
            # A reorg under way: the block read at went away, for a moment (anvil_reorg
            # unwinds, then mines back to the same height) or for good. The head's number
            # alone misses the first case: the block at that height is asked by hash.
            if not self._still_canonical(block, block_hash):
                raise ChainMovedBack(block, self.w3.eth.block_number) from exc
            raise

    def _still_canonical(self, number: int, block_hash: bytes) -> bool:
        try:
            return bytes(self.w3.eth.get_block(number)["hash"]) == block_hash
        except BlockNotFound:
            return False

    def epoch_window(self, epoch: int) -> EpochWindow:
        """Epoch ``epoch`` ends at genesis + epoch × length, as ``OracleHub.epochEnd`` says."""
        if self._epoch_schedule is None:
            fns = self.hub.functions
            genesis, length = fns.genesisTimestamp().call(), fns.epochLengthSeconds().call()
            self._epoch_schedule = (int(genesis), int(length))
        genesis, length = self._epoch_schedule
        end = genesis + epoch * length
        return EpochWindow(epoch=epoch, start=end - length, end=end)

    def seconds_until_epoch_end(self, epoch: int) -> int:
        """Chain-time seconds until ``epoch`` ends (≤ 0 if it has)."""
        now = self.w3.eth.get_block("latest")["timestamp"]
        return int(self.hub.functions.epochEnd(epoch).call()) - int(now)

    def epoch_root(self, epoch: int) -> bytes:
        """The attested Merkle root of ``epoch`` (32 zero bytes if never attested)."""
        return bytes(self.hub.functions.epochAttestation(epoch).call()[0])

    def oracle_set(self) -> list[str]:
        """The hub's current oracles (checksummed addresses)."""
        return [Web3.to_checksum_address(a) for a in self.hub.functions.oracles().call()]

    def find_attestation(
        self, epoch: int, lookback_blocks: int = 10_000
    ) -> PostedAttestation | None:
        """The transaction that attested ``epoch``, searched in the last ``lookback_blocks``."""
        latest = self.w3.eth.block_number
        events = self.hub.events.EpochAttested.get_logs(
            from_block=max(0, latest - lookback_blocks),
            to_block=latest,
            argument_filters={"epoch": epoch},
        )
        if not events:
            return None
        tx_hash = events[0]["transactionHash"]
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        return PostedAttestation(
            tx_hash=tx_hash.to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            block_hash=receipt["blockHash"].to_0x_hex(),
        )

    def call_data(self, tx_hash: str) -> bytes:
        """The input of a mined transaction (an ``attest`` call: report and signatures)."""
        return bytes(self.w3.eth.get_transaction(HexStr(tx_hash))["input"])

    def block_hash(self, number: int) -> str | None:
        """The canonical chain's hash at ``number``, or None above its head."""
        try:
            return self.w3.eth.get_block(number)["hash"].to_0x_hex()
        except BlockNotFound:
            return None

    def check_same_chain(self, identity: str) -> None:
        """Raise ChainReset unless this is still the chain ``identity`` names (see
        chain_identity) and the hub is still deployed there: a reorg is recovered from,
        a reset below the genesis block or a deployment that is gone is not."""
        genesis = self.w3.eth.get_block(0)["hash"].to_0x_hex()
        expected = identity.split(":")[1]
        if genesis != expected:
            raise ChainReset(
                f"the chain's genesis block is now {genesis}, not {expected}: the node was"
                " reset or replaced; the attestations this oracle recorded are not on it"
            )
        if not self.w3.eth.get_code(self.hub.address):
            raise ChainReset(
                f"OracleHub {self.hub.address} has no code on chain {self.deployment.chain_id}"
                " any more: the deployment is gone (reset below its block?); redeploy and"
                " point the oracle at the new manifest"
            )

    def is_oracle(self, address: str) -> bool:
        return bool(self.hub.functions.isOracle(address).call())

    def measurable_nodes(self) -> list[NodeInfo]:
        """Registered nodes that are not exited, ids 1..nodeCount, with their class power.

        Read in JSON-RPC batches of ``_READ_BATCH`` calls: one request per thousand nodes
        rather than one per node (every oracle reads the whole registry every epoch)."""
        count = self.registry.functions.nodeCount().call()
        nodes: list[NodeInfo] = []
        for first in range(1, count + 1, _READ_BATCH):
            ids = range(first, min(count, first + _READ_BATCH - 1) + 1)
            with self.w3.batch_requests() as batch:
                for node_id in ids:
                    batch.add(self.registry.functions.node(node_id))
                records = cast(list[Any], batch.execute())
            for node_id, record in zip(ids, records, strict=True):
                # Node struct: (operator, classId, gpuCount, status, ...); fields are
                # read by position so additions at the end do not break the daemon.
                class_id, gpu_count, status = int(record[1]), int(record[2]), int(record[3])
                if status in _UNMEASURED_STATUSES:
                    continue
                nodes.append(NodeInfo(node_id, gpu_count, self._reference_power_w(class_id)))
        return nodes

    def registration(self, node_id: int) -> Registration:
        """The node's agent key, GPU count and its class's peak (see oracle.challenges)."""
        # Node struct: (operator, classId, gpuCount, status, region, nodeKey, ...)
        record = self.registry.functions.node(node_id).call()
        # GpuClass struct: (name, referencePowerW, referenceThroughput (dense BF16 TFLOPS), ...)
        bf16_tflops = int(self.registry.functions.gpuClass(int(record[1])).call()[2])
        return Registration(
            node_key=Web3.to_checksum_address(record[5]),
            gpu_count=int(record[2]),
            peak_flops=bf16_tflops * 1e12 / 2,  # dense TF32 is half of dense BF16
        )

    def gpu_nodes(self, gpu_ids: list[bytes]) -> list[int]:
        """The node each GPU id is bound to in the registry (0: none; see gpucap.gpu_ids),
        in JSON-RPC batches of ``_READ_BATCH`` calls."""
        owners: list[int] = []
        for first in range(0, len(gpu_ids), _READ_BATCH):
            chunk = gpu_ids[first : first + _READ_BATCH]
            with self.w3.batch_requests() as batch:
                for gpu in chunk:
                    batch.add(self.registry.functions.gpuNode(gpu))
                owners.extend(int(owner) for owner in cast(list[Any], batch.execute()))
        return owners

    def _reference_power_w(self, class_id: int) -> int:
        if class_id not in self._power_by_class:
            # GpuClass struct: (name, referencePowerW, ...)
            record = self.registry.functions.gpuClass(class_id).call()
            self._power_by_class[class_id] = int(record[1])
        return self._power_by_class[class_id]

    # -- the write ---------------------------------------------------------------

    def chain_identity(self) -> str:
        """chain id, genesis hash and hub address: a restarted dev chain is a new chain."""
        genesis = self.w3.eth.get_block(0)["hash"]
        return f"{self.deployment.chain_id}:{genesis.to_0x_hex()}:{self.hub.address}"

    def prepare_attestation(
        self,
        report: EpochReport,
        signatures: list[OracleSignature],
        transmitter: LocalAccount,
    ) -> SignedAttestation:
        """Simulate, then build and sign the transaction locally (nothing is sent).

        Raises AttestationRejected with the decoded custom error if the simulation reverts.
        """
        call = self.hub.functions.attest(report.as_tuple(), [s.signature for s in signatures])
        return self._sign_call(report.epoch, call, transmitter)

    def prepare_again(
        self, epoch: int, call_data: bytes, transmitter: LocalAccount
    ) -> SignedAttestation:
        """The recorded ``attest`` call (report and quorum signatures, whoever sent it
        first) in a new transaction from ``transmitter`` with a fresh nonce."""
        _, args = self.hub.decode_function_input(call_data)
        report = args["report"]  # decoded as a dict in the ABI's field order
        fields = report.values() if isinstance(report, dict) else report
        call = self.hub.functions.attest(tuple(fields), list(args["signatures"]))
        return self._sign_call(epoch, call, transmitter)

    def _sign_call(self, epoch: int, call, transmitter: LocalAccount) -> SignedAttestation:
        try:
            gas = call.estimate_gas({"from": transmitter.address})
        except ContractCustomError as exc:
            decoded = decode_revert(self.hub.abi, revert_data(exc.data))
            raise AttestationRejected(epoch, decoded or f"unknown custom error {exc.data}") from exc
        except ContractLogicError as exc:  # Hardhat's custom errors come this way (nested data)
            decoded = decode_revert(self.hub.abi, revert_data(exc.data))
            raise AttestationRejected(
                epoch, decoded or exc.message or "reverted without reason"
            ) from exc
        nonce = self.w3.eth.get_transaction_count(transmitter.address, "pending")
        tx = call.build_transaction(
            {
                "from": transmitter.address,
                "nonce": nonce,
                "gas": gas * _GAS_HEADROOM_NUM // _GAS_HEADROOM_DEN,
                "chainId": self.deployment.chain_id,
            }
        )
        signed = transmitter.sign_transaction(tx)
        return SignedAttestation(
            epoch=epoch,
            tx_hash=signed.hash.to_0x_hex(),
            raw=bytes(signed.raw_transaction),
            nonce=nonce,
        )

    def send(self, signed: SignedAttestation) -> None:
        """Broadcast; re-sending a transaction the node already has is not an error.

        Raises TransactionDropped if the node refuses it and does not know it
        (typically: its nonce was used by another transaction meanwhile).
        """
        try:
            self.w3.eth.send_raw_transaction(signed.raw)
        except (Web3RPCError, ValueError) as exc:
            if self._known(signed.tx_hash):
                return
            raise TransactionDropped(signed.epoch, signed.tx_hash, str(exc)) from exc

    def _known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def wait(self, signed: SignedAttestation, receipt_timeout: float) -> PostedAttestation:
        """Wait for the receipt and check its status (raises AttestationReverted, TimeExhausted)."""
        receipt = self.w3.eth.wait_for_transaction_receipt(
            HexStr(signed.tx_hash), timeout=receipt_timeout
        )
        return self._posted(signed, receipt)

    def replacement(
        self, signed: SignedAttestation, transmitter: LocalAccount, bump_percent: int
    ) -> SignedAttestation:
        """The same transaction (same nonce, call and gas) with fees raised by at least
        ``bump_percent`` (and to today's fees if those are higher): a node swaps a pending
        transaction only for one paying enough more."""
        tx = TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict()
        for key in ("v", "r", "s", "yParity"):
            tx.pop(key, None)

        def up(value: int) -> int:
            return max(value + 1, value * (100 + bump_percent) // 100)

        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas") or 0
        priority_now = self.w3.eth.max_priority_fee
        priority = max(up(int(tx["maxPriorityFeePerGas"])), priority_now)
        tx["maxPriorityFeePerGas"] = priority
        tx["maxFeePerGas"] = max(up(int(tx["maxFeePerGas"])), 2 * base_fee + priority)
        again = transmitter.sign_transaction(tx)
        return SignedAttestation(
            epoch=signed.epoch,
            tx_hash=again.hash.to_0x_hex(),
            raw=bytes(again.raw_transaction),
            nonce=signed.nonce,
        )

    def wait_any(
        self, attempts: list[SignedAttestation], receipt_timeout: float
    ) -> PostedAttestation:
        """Wait until any of ``attempts`` (one nonce, several fee levels) is mined."""
        deadline = time.monotonic() + receipt_timeout
        while True:
            for signed in attempts:
                posted = self.receipt(signed)
                if posted is not None:
                    return posted
            if time.monotonic() >= deadline:
                raise TimeExhausted(
                    f"none of {[a.tx_hash for a in attempts]} mined in {receipt_timeout}s"
                )
            time.sleep(0.1)

    def receipt(self, signed: SignedAttestation) -> PostedAttestation | None:
        """The mined outcome if the transaction is in a block, else None."""
        try:
            receipt = self.w3.eth.get_transaction_receipt(HexStr(signed.tx_hash))
        except TransactionNotFound:
            return None
        return self._posted(signed, receipt)

    @staticmethod
    def _posted(signed: SignedAttestation, receipt) -> PostedAttestation:
        if receipt["status"] != 1:
            raise AttestationReverted(signed.epoch, signed.tx_hash)
        return PostedAttestation(
            tx_hash=signed.tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            block_hash=receipt["blockHash"].to_0x_hex(),
        )

    def post_attestation(
        self,
        report: EpochReport,
        signatures: list[OracleSignature],
        transmitter: LocalAccount,
        receipt_timeout: float,
    ) -> PostedAttestation:
        """Prepare, send and wait in one go (no crash safety: see Reporter for that)."""
        signed = self.prepare_attestation(report, signatures, transmitter)
        self.send(signed)
        return self.wait(signed, receipt_timeout)
