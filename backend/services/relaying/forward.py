"""Gasless user actions: EIP-712 forward requests relayed through GpucapForwarder.

A wallet signs an ERC-2771 ``ForwardRequest`` (gpucap.signing) for one call of a
gpucap contract; the API validates it completely before accepting it, so an
accepted action almost never fails on-chain:

1. the target is a gpucap contract that trusts the forwarder, and the function
   is one a user or operator may call (admin functions are refused here even
   though the contracts would refuse them too: a clear 422 beats a revert);
2. the signature recovers to ``from`` for the forwarder's current nonce of
   ``from`` (the nonce is part of what was signed);
3. the deadline leaves time to mine it;
4. the call, simulated as the forwarder will make it (the target called by the
   forwarder with ``from`` appended), does not revert — this covers balances,
   allowances, caps, statuses and every other contract rule, and a revert comes
   back as the contract's own custom error name and arguments.

One open request per sender: the forwarder's nonces are sequential, so a second
request signed for the same nonce could never run, and one signed for the next
nonce could run only after the first — the API says so (409) instead of queueing
a request that may fail.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from eth_abi import decode, encode
from eth_utils import (
    collapse_if_tuple,
    event_abi_to_log_topic,
    function_abi_to_4byte_selector,
    function_signature_to_4byte_selector,
)
from hexbytes import HexBytes
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session
from web3.exceptions import ContractLogicError, Web3Exception, Web3RPCError

from backend.db.models import OPEN_STATUSES, Action, ActionKind
from backend.services.chain import IDENTITY_REQUESTS, Chain, ChainIdentity, result_of
from backend.services.errors import ServiceError, TransactionReverted
from backend.services.indexing.event_decoding import EventLayout, as_bytes, as_int
from backend.services.relaying.relayer import TxRequest
from backend.services.revert import decode_revert, revert_data, rpc_revert
from gpucap.addresses import checksum
from gpucap.deployment import Deployment, ManifestError, read_abi
from gpucap.signing import SignedRequest, non_canonical_reason, recover_request_signer

FORWARDER = "GpucapForwarder"
# What wallets may ask the relayer to call, per contract. Everything else is refused.
ALLOWED_CALLS: dict[str, frozenset[str]] = {
    "CapacityToken": frozenset(
        {
            "publishOffer",
            "cancelOffer",
            "buy",
            "buyWithPermit",
            "redeem",
            "proveDelivery",
            "proveDeliveryRange",
            "settleReservation",
            "releaseExpired",
            "safeTransferFrom",
            "safeBatchTransferFrom",
            "setApprovalForAll",
        }
    ),
    "NodeRegistry": frozenset(
        {"registerNode", "depositBond", "requestExit", "withdrawBond", "bindGpus", "unbindGpus"}
    ),
    # The secondary market: a taker's fills (matched by the backend's book) and a
    # maker's own cancellations.
    "Market": frozenset({"fill", "fillBatch", "cancel", "cancelUpTo"}),
    # One pool per node, not in the manifest: a `to` is a pool when EpochSettlement
    # binds the node the pool reports to that address (pool_node_of). Not `approve`: the
    # market's allowances go as EIP-2612 permits naming the Market only
    # (POST /api/v1/market/permits; the stablecoin trusts no forwarder).
    "RevenuePool": frozenset(
        {"deposit", "refund", "stake", "requestUnstake", "withdraw", "claim", "drawRaise"}
    ),
}
# Relayable, but only through POST /api/v1/market/fills: that route checks the fill
# against the book under a write lock (racing takers get one fill, the others
# OrderTaken); through /forward a losing fill would revert at the relayer's cost.
BOOK_CHECKED_CALLS = frozenset({("Market", "fill"), ("Market", "fillBatch")})
POOL = "RevenuePool"
SETTLEMENT = "EpochSettlement"
# How long a pool lookup (either answer) is trusted: EpochSettlement binds a node's
# pool once, so a positive answer never goes stale; a negative one may.
POOL_CACHE_SECONDS = 30.0
_pool_cache: dict[tuple[int, str], tuple[float, int | None]] = {}
# Seconds a request must stay valid after acceptance: time to be relayed and mined.
MIN_DEADLINE_MARGIN = 30


class ForwardRejected(ServiceError):
    """The request cannot be accepted (422 unless ``status`` says otherwise)."""

    def __init__(self, reason: str, *, code: str, status: int = 422) -> None:
        super().__init__(reason, code=code)
        self.status = status


@dataclass(frozen=True)
class ForwardParams:
    """An action's stored parameters: the signed request and what it calls."""

    sender: str
    to: str
    value: int
    gas: int
    nonce: int
    deadline: int
    data: str  # 0x hex
    signature: str  # 0x hex
    contract: str
    function: str

    def request(self) -> SignedRequest:
        return SignedRequest(
            sender=self.sender,
            to=self.to,
            value=self.value,
            gas=self.gas,
            nonce=self.nonce,
            deadline=self.deadline,
            data=bytes.fromhex(self.data[2:]),
            signature=bytes.fromhex(self.signature[2:]),
        )

    def as_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ForwardParams:
        return cls(**params)

    @property
    def idempotency_key(self) -> str:
        # Same signed request → same action; a new signature (a re-signed request
        # after a failure) → a new action.
        digest = hashlib.sha256(bytes.fromhex(self.signature[2:])).hexdigest()[:32]
        return f"{KEY_PREFIX}{self.sender.lower()}:{self.nonce}:{digest}"


KEY_PREFIX = "forward:"


def allowed_contracts(chain: Chain) -> list[str]:
    """Names in ALLOWED_CALLS this deployment has (pools come with EpochSettlement)."""
    present = set(chain.deployment.contracts)
    return [n for n in ALLOWED_CALLS if n in present or (n == POOL and SETTLEMENT in present)]


def _pool_abi_path(chain: Chain) -> Path:
    """RevenuePool's build artifact, beside the deployed contracts' ABIs."""
    return chain.deployment.contracts[SETTLEMENT].abi_path.parent / f"{POOL}.json"


def _pool_abi(chain: Chain) -> list[dict[str, Any]]:
    """RevenuePool's ABI."""
    return read_abi(_pool_abi_path(chain))


def error_abis(chain: Chain) -> list[dict[str, Any]]:
    """Custom errors of the deployed contracts and of RevenuePool (for pool reverts)."""
    if SETTLEMENT not in chain.deployment.contracts:
        return chain.error_abis
    known = {(e["name"], tuple(i["type"] for i in e["inputs"])) for e in chain.error_abis}
    extra = [
        e
        for e in _pool_abi(chain)
        if e.get("type") == "error"
        and (e["name"], tuple(i["type"] for i in e["inputs"])) not in known
    ]
    return [*chain.error_abis, *extra]


def pool_node_of(chain: Chain, to: str) -> int | None:
    """The node whose RevenuePool ``to`` is, or None: ``to`` reports a node id
    (``terms()``, as EpochSettlement.setPool reads it) and ``EpochSettlement.poolOf``
    of that node is ``to``. Cached for POOL_CACHE_SECONDS."""
    if SETTLEMENT not in chain.deployment.contracts:
        return None
    key = (chain.deployment.chain_id, to.lower())
    now = time.monotonic()
    cached = _pool_cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    pool = chain.contract_at(to, _pool_abi_path(chain))
    settlement = chain.contract(SETTLEMENT)

    def lookup() -> int | None:
        try:
            node = int(pool.functions.terms().call()[2])
        except (Web3Exception, ValueError, OverflowError):
            return None  # not a pool (an account, another contract)
        bound = settlement.functions.poolOf(node).call()
        return node if bound.lower() == to.lower() else None

    node = chain.call("looking up pool", lookup)
    _pool_cache[key] = (now + POOL_CACHE_SECONDS, node)
    return node


def _target(chain: Chain, to: str) -> tuple[str, Path | None] | None:
    """(contract name, ABI file) of a target the relayer may call for users, or None.
    A pool's ABI file is None: it is RevenuePool's, beside the deployed contracts'."""
    name = _names_by_address(chain).get(to.lower())
    if name is not None:
        return (name, chain.deployment.contracts[name].abi_path) if name in ALLOWED_CALLS else None
    if pool_node_of(chain, to) is None:
        return None
    forwarder = _forwarder_address(chain)
    pool = chain.contract_at(to, _pool_abi_path(chain))
    if not chain.call(
        "reading pool forwarder", lambda: pool.functions.isTrustedForwarder(forwarder).call()
    ):
        raise ForwardRejected(
            f"pool {to} does not trust the forwarder {forwarder}", code="TargetNotAllowed"
        )
    return POOL, None


def load_abis(deployment: Deployment) -> None:
    """Parse now, once for this process, the ABIs that accepting a request reads (each
    relayable contract's functions by selector, RevenuePool's, the forwarder's): build
    artifacts of megabytes that the first request would otherwise parse, in its own
    time and that of every request queued behind it."""
    for name in ALLOWED_CALLS:
        ref = deployment.contracts.get(name)
        if ref is not None:
            _function_names(ref.abi_path)
    if SETTLEMENT in deployment.contracts:
        _function_names(deployment.contracts[SETTLEMENT].abi_path.parent / f"{POOL}.json")
    if FORWARDER in deployment.contracts:
        _forwarder_abi(deployment.contracts[FORWARDER].abi_path)


def _names_by_address(chain: Chain) -> dict[str, str]:
    return {ref.address.lower(): name for name, ref in chain.deployment.contracts.items()}


def _forwarder_address(chain: Chain) -> str:
    ref = chain.deployment.contracts.get(FORWARDER)
    if ref is None:
        raise ManifestError(f"{FORWARDER} is not in the manifest {chain.deployment.path}")
    return ref.address


@lru_cache(maxsize=16)
def _function_names(abi_path: Path) -> dict[bytes, str]:
    """Function name by 4-byte selector, for the ABI in ``abi_path`` (hashing every
    function's signature per request would cost more than recovering the signature)."""
    return {
        function_abi_to_4byte_selector(item): item["name"]
        for item in read_abi(abi_path)
        if item.get("type") == "function"
    }


def _function_for(chain: Chain, to: str, data: bytes) -> tuple[str, str]:
    """(contract name, function name) the call targets, or ForwardRejected."""
    target = _target(chain, to)
    if target is None:
        allowed = ", ".join(sorted(allowed_contracts(chain)))
        raise ForwardRejected(
            f"{to} is not a gpucap contract the relayer calls for users ({allowed}; "
            "a RevenuePool only once EpochSettlement binds it to its node)",
            code="TargetNotAllowed",
        )
    contract, abi_path = target
    if len(data) < 4:
        raise ForwardRejected("data must start with a 4-byte function selector", code="BadCalldata")
    names = _function_names(
        abi_path or chain.deployment.contracts[SETTLEMENT].abi_path.parent / f"{POOL}.json"
    )
    name = names.get(data[:4])
    if name is None:
        raise ForwardRejected(
            f"selector 0x{data[:4].hex()} is not a function of {contract}", code="BadCalldata"
        )
    if name not in ALLOWED_CALLS[contract]:
        raise ForwardRejected(
            f"{contract}.{name} cannot be relayed for users", code="FunctionNotAllowed"
        )
    return contract, name


# GpucapForwarder.nonces(address) (OpenZeppelin Nonces)
_NONCES_SELECTOR = function_signature_to_4byte_selector("nonces(address)")


def validate(
    chain: Chain,
    request: SignedRequest,
    *,
    nonce_hint: int | None = None,
    book_checked: bool = False,
) -> ForwardParams:
    """Everything short of sending; returns the parameters to store with the action
    (validate_with_identity, without the identity)."""
    params, _ = validate_with_identity(
        chain, request, nonce_hint=nonce_hint, book_checked=book_checked
    )
    return params


def validate_with_identity(
    chain: Chain,
    request: SignedRequest,
    *,
    nonce_hint: int | None = None,
    book_checked: bool = False,
) -> tuple[ForwardParams, ChainIdentity]:
    """Everything short of sending; returns the parameters to store with the action and
    the chain's identity (``Chain.identity``) to store it with.

    The chain state it needs (the node's chain id and genesis block, the sender's
    forwarder nonce, the latest block's time, the simulated call) comes in one
    JSON-RPC batch: one round trip instead of five (the identity was a round trip of
    its own per accepted request), and no web3 middleware (whose chain-id validation
    costs an extra ``eth_chainId`` call per ``eth_call``). A node on another chain than
    the manifest's is refused first (WrongChain); the request's checks then run in the
    order a caller would want to hear about them: nonce, signature, deadline, revert.
    A Market fill is refused (UseMarketFills) unless ``book_checked``: only the market
    route, which holds the book's lock, relays fills.
    """
    if (problem := non_canonical_reason(request.signature)) is not None:
        raise ForwardRejected(problem, code="NonCanonicalSignature")
    forwarder = _forwarder_address(chain)
    contract, function = _function_for(chain, request.to, request.data)
    if (contract, function) in BOOK_CHECKED_CALLS and not book_checked:
        raise ForwardRejected(
            f"{contract}.{function} is relayed through POST /api/v1/market/fills, "
            "which checks the orders are still free in the book",
            code="UseMarketFills",
        )
    nonce_call = {
        "to": forwarder,
        "data": "0x" + (_NONCES_SELECTOR + encode(["address"], [request.sender])).hex(),
    }
    *identity_resp, nonce_resp, block_resp, sim_resp = chain.batch(
        "validating forward request",
        [
            *IDENTITY_REQUESTS,
            ("eth_call", [nonce_call, "latest"]),
            ("eth_getBlockByNumber", ["latest", False]),
            ("eth_call", [_simulation_call(forwarder, request), "latest"]),
        ],
    )
    identity = chain.identity_from(identity_resp)
    (nonce,) = decode(["uint256"], HexBytes(result_of(nonce_resp, "reading forwarder nonce")))
    if nonce_hint is not None and nonce_hint != nonce:
        raise ForwardRejected(
            f"request signed for nonce {nonce_hint}; {request.sender}'s forwarder nonce is {nonce}",
            code="InvalidNonce",
        )
    signer = recover_request_signer(request, forwarder, chain.deployment.chain_id, nonce)
    if signer.lower() != request.sender.lower():
        raise ForwardRejected(
            f"signature is not {request.sender}'s for this request at nonce {nonce} on chain "
            f"{chain.deployment.chain_id} (recovered {signer})",
            code="InvalidSignature",
        )
    now = int(result_of(block_resp, "reading latest block")["timestamp"], 16)
    if request.deadline < now + MIN_DEADLINE_MARGIN:
        raise ForwardRejected(
            f"deadline {request.deadline} leaves under {MIN_DEADLINE_MARGIN}s at chain time {now}",
            code="RequestExpired",
        )
    if "error" in sim_resp:
        if (revert := rpc_revert(sim_resp["error"])) is not None:
            _raise_reverted(chain, revert.data)
        # Not a revert: the node refuses the call itself (e.g. "insufficient funds for
        # gas * price + value" for a value the forwarder cannot carry, "intrinsic gas too
        # high" for a gas limit below the call's cost). The request's fault: say the node's why.
        raise ForwardRejected(
            f"the node refuses the call: {_node_message(sim_resp['error'])}", code="RejectedByNode"
        )
    params = ForwardParams(
        sender=checksum(request.sender),
        to=checksum(request.to),
        value=request.value,
        gas=request.gas,
        nonce=nonce,
        deadline=request.deadline,
        data="0x" + request.data.hex(),
        signature="0x" + request.signature.hex(),
        contract=contract,
        function=function,
    )
    return params, identity


def _node_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _simulation_call(forwarder: str, request: SignedRequest) -> dict[str, Any]:
    """The call the forwarder makes for ``request``: ERC-2771, ``from`` appended."""
    return {
        "from": forwarder,
        "to": request.to,
        "data": "0x" + (request.data + bytes.fromhex(request.sender[2:])).hex(),
        "value": hex(request.value),
        "gas": hex(request.gas),
    }


def _raise_reverted(chain: Chain, data: Any, cause: Exception | None = None) -> NoReturn:
    decoded = decode_revert(revert_data(data), error_abis(chain))
    raise TransactionReverted(decoded.reason, code=decoded.code) from cause


def simulate(
    chain: Chain, request: SignedRequest, *, block_identifier: int | str = "latest"
) -> None:
    """Run the call as the forwarder will (from the forwarder, ``from`` appended); raise
    TransactionReverted with the target's own decoded error if it would revert."""
    call = _simulation_call(_forwarder_address(chain), request)
    try:
        chain.call("simulating forwarded call", lambda: chain.w3.eth.call(call, block_identifier))  # type: ignore[arg-type]
    except ContractLogicError as exc:
        _raise_reverted(chain, exc.data, exc)


@dataclass(frozen=True, slots=True)
class OpenRequest:
    id: str
    status: str
    params: dict[str, Any]


# Built once: building the statement cost as much as running it, on every request. The
# open statuses as ``=`` terms, not ``IN``: an IN list is an "expanding" parameter that
# SQLAlchemy re-renders into the cached SQL on every execution (a third of the query's
# cost here).
_OPEN_REQUEST = (
    select(Action.id, Action.status, Action.params)
    .where(
        Action.idempotency_key >= bindparam("low"),
        Action.idempotency_key < bindparam("high"),
        Action.kind == ActionKind.FORWARD.value,
        or_(*(Action.status == status for status in OPEN_STATUSES)),
    )
    .limit(1)
)


def open_request_of(session: Session, sender: str) -> OpenRequest | None:
    """The sender's forward action still pending or submitted, if any.

    The sender's keys are a range of the unique idempotency-key index (every key with
    the prefix sorts between it and the prefix with ":" raised to ";"): a few index
    entries per sender. A LIKE cannot use that index (SQLite's LIKE ignores case), so
    it read every open action per request: hundreds during a burst of requests."""
    prefix = f"{KEY_PREFIX}{sender.lower()}:"
    row = session.execute(_OPEN_REQUEST, {"low": prefix, "high": prefix[:-1] + ";"}).first()
    return None if row is None else OpenRequest(row.id, row.status, row.params)


def batch_tx(chain: Chain, params: Sequence[dict[str, Any]], refund_receiver: str) -> TxRequest:
    """The relayer's transaction for stored forward actions: one ``executeBatch``.

    A non-zero ``refund_receiver`` makes the batch non-atomic (OpenZeppelin 5.4
    ``ERC2771Forwarder.executeBatch``): a request whose call reverts still uses
    its nonce and emits ``ExecutedForwardRequest(signer, nonce, false)``; an
    invalid one (expired, nonce used, bad signature) is skipped without an
    event; neither reverts the others. The value of requests that did not run
    goes back to ``refund_receiver`` (the relayer).

    Encoded with eth_abi and the ABI's selector and types, read once per ABI file:
    web3's ``encode_abi`` re-normalises every argument of every request, which
    for a batch of a hundred costs more than signing it.
    """
    abi = _forwarder_abi(chain.deployment.contracts[FORWARDER].abi_path)
    rows = [
        (
            p["sender"],
            p["to"],
            p["value"],
            p["gas"],
            p["deadline"],
            bytes.fromhex(p["data"][2:]),
            bytes.fromhex(p["signature"][2:]),
        )
        for p in params
    ]
    data = abi.execute_batch_selector + encode(abi.execute_batch_types, [rows, refund_receiver])
    return TxRequest(
        to=_forwarder_address(chain),
        data="0x" + data.hex(),
        value=sum(int(p["value"]) for p in params),
    )


@dataclass(frozen=True)
class _ForwarderAbi:
    execute_batch_selector: bytes
    execute_batch_types: tuple[str, ...]
    executed_topic: bytes  # ExecutedForwardRequest's topic 0
    executed: EventLayout  # how to decode the rest of it


@lru_cache(maxsize=4)
def _forwarder_abi(abi_path: Path) -> _ForwarderAbi:
    abi = read_abi(abi_path)
    fn = next(i for i in abi if i.get("type") == "function" and i["name"] == "executeBatch")
    ev = next(i for i in abi if i.get("type") == "event" and i["name"] == "ExecutedForwardRequest")
    layout = EventLayout.of(ev)
    if layout is None:  # (address, uint256, bool) always fits; guard an ABI change
        raise ManifestError(f"ExecutedForwardRequest in {abi_path} has an unexpected layout")
    return _ForwarderAbi(
        execute_batch_selector=function_abi_to_4byte_selector(fn),
        execute_batch_types=tuple(collapse_if_tuple(i) for i in fn["inputs"]),
        executed_topic=event_abi_to_log_topic(ev),
        executed=layout,
    )


def executed_requests(chain: Chain, receipt: Any) -> dict[tuple[str, int], bool]:
    """``ExecutedForwardRequest(signer, nonce, success)`` of the forwarder in ``receipt``
    (the node's raw receipt, or web3's), by (lowercase signer, nonce)."""
    abi = _forwarder_abi(chain.deployment.contracts[FORWARDER].abi_path)
    forwarder = _forwarder_address(chain).lower()
    ran: dict[tuple[str, int], bool] = {}
    for log in receipt["logs"]:
        if str(log["address"]).lower() != forwarder or not log["topics"]:
            continue
        if as_bytes(log["topics"][0]) != abi.executed_topic:
            continue
        args = abi.executed.decode(chain.w3.codec, log)
        if args is None:
            continue  # same topic, other layout: not this event
        ran[(str(args["signer"]).lower(), int(args["nonce"]))] = bool(args["success"])
    return ran


@dataclass(frozen=True)
class RequestOutcome:
    """What a mined batch did with one request."""

    success: bool
    code: str | None = None  # why it failed: the target's custom error, or why it did not run
    reason: str | None = None


def batch_outcomes(
    chain: Chain, receipt: Any, params: Sequence[dict[str, Any]]
) -> list[RequestOutcome]:
    """Each request's outcome in a mined ``executeBatch`` receipt, in ``params`` order.

    ``ExecutedForwardRequest(signer, nonce, success)`` says whether a request ran
    and whether its call succeeded; a failed call's own revert is recovered from
    the transaction's call trace (or, where the node has no tracer, by replaying
    the call on the block's state) and decoded; a request with no event was
    skipped by the forwarder, and the chain says why.
    """
    ran = executed_requests(chain, receipt)
    tx_hash = "0x" + as_bytes(receipt["transactionHash"]).hex()
    block_number = as_int(receipt["blockNumber"])
    trace: list[dict[str, Any]] | None = None
    out = []
    for raw in params:
        p = ForwardParams.from_params(raw)
        success = ran.get((p.sender.lower(), p.nonce))
        if success:
            out.append(RequestOutcome(success=True))
        elif success is False:
            if trace is None:
                trace = _call_trace(chain, tx_hash)
            out.append(_failed_call(chain, p, trace, block_number))
        else:
            out.append(_not_run(chain, p, block_number))
    return out


def _call_trace(chain: Chain, tx_hash: str) -> list[dict[str, Any]]:
    """Every call frame of the transaction (flattened), or [] where the node has no tracer
    (probed once per node: chain.supports)."""
    if not chain.supports("debug_traceTransaction"):
        return []
    try:
        resp = chain.call(
            "tracing batch",
            lambda: chain.w3.provider.make_request(  # type: ignore[arg-type]
                "debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}]
            ),
        )
    except Web3RPCError:
        return []
    root = resp.get("result") if isinstance(resp, dict) else None
    frames: list[dict[str, Any]] = []
    stack = [root] if isinstance(root, dict) else []
    while stack:
        frame = stack.pop()
        frames.append(frame)
        stack.extend(frame.get("calls") or [])
    return frames


def _failed_call(
    chain: Chain, p: ForwardParams, trace: list[dict[str, Any]], block_number: int
) -> RequestOutcome:
    forwarder = _forwarder_address(chain).lower()
    calldata = (p.data + p.sender[2:]).lower()
    for frame in trace:
        if (
            str(frame.get("from", "")).lower() == forwarder
            and str(frame.get("to", "")).lower() == p.to.lower()
            and str(frame.get("input", "")).lower() == calldata
            and frame.get("error")
        ):
            decoded = decode_revert(frame.get("output"), error_abis(chain))
            return RequestOutcome(success=False, code=decoded.code, reason=decoded.reason)
    try:  # no tracer: replay on the block's state (the batch's effects included)
        simulate(chain, p.request(), block_identifier=block_number)
    except TransactionReverted as rev:
        return RequestOutcome(success=False, code=rev.code, reason=rev.reason)
    return RequestOutcome(
        success=False,
        code="ForwardedCallFailed",
        reason=f"{p.contract}.{p.function} reverted inside the batch (block {block_number}); "
        "replaying it now does not revert",
    )


def _not_run(chain: Chain, p: ForwardParams, block_number: int) -> RequestOutcome:
    """Why the forwarder skipped a request (no event): expired, nonce used, or invalid."""
    forwarder = chain.contract(FORWARDER)
    timestamp, nonce = chain.call(
        "reading skipped request",
        lambda: (
            int(chain.w3.eth.get_block(block_number)["timestamp"]),
            forwarder.functions.nonces(p.sender).call(block_identifier=block_number),
        ),
    )
    if p.deadline < timestamp:
        return RequestOutcome(
            success=False,
            code="RequestExpired",
            reason=f"deadline {p.deadline} passed before block {block_number} "
            f"(timestamp {timestamp}); sign a new request",
        )
    if nonce != p.nonce:
        return RequestOutcome(
            success=False,
            code="InvalidNonce",
            reason=f"{p.sender}'s forwarder nonce {p.nonce} was used by another transaction "
            f"before block {block_number} (nonce now {nonce}): by this request sent by someone "
            "else, or by another request signed for that nonce; the relayer's batch did not "
            "run it",
        )
    return RequestOutcome(
        success=False,
        code="ForwardRequestInvalid",
        reason="the forwarder skipped the request: the signature does not verify or the "
        "target does not trust the forwarder",
    )
