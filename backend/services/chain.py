"""The node and the deployment, as web3 objects: one place that knows how to connect."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3RPCError

from backend.services.errors import ChainUnavailable, WrongChain
from backend.services.rpc_endpoints import (
    CONNECTION_ERRORS,
    FailoverHTTPProvider,
    RpcEndpoints,
)
from gpucap.deployment import Deployment, read_abi

CONTRACTS_AT_MAX = 256  # pool contracts kept per Chain (contract_at); cleared when full

T = TypeVar("T")


@contextmanager
def chain_errors(what: str) -> Iterator[None]:
    """Turn transport failures into ChainUnavailable (a retryable, typed error)."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise ChainUnavailable(f"{what}: node unreachable ({type(exc).__name__}: {exc})") from exc


def make_web3(endpoints: RpcEndpoints, timeout: float) -> Web3:
    return Web3(FailoverHTTPProvider(endpoints, timeout))


class JsonRpc:
    """Raw JSON-RPC over one keep-alive connection pool (urllib3): what ``Chain.raw`` and
    ``Chain.batch`` send. web3's provider goes through requests (session, proxies from
    the environment, adapters) and web3's own encoders: 0.73 ms of CPU for the forward
    route's three-call batch on anvil, 0.25 ms this way. Sent to ``endpoints``' current
    URL, failing over as it does (one keep-alive pool per URL)."""

    def __init__(self, endpoints: RpcEndpoints, timeout: float) -> None:
        self.endpoints = endpoints
        self._timeout = timeout
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._pools_lock = threading.Lock()
        self._headers = {"Content-Type": "application/json"}

    def _pool(self, url: str) -> urllib3.HTTPConnectionPool:
        pool = self._pools.get(url)
        if pool is None:
            with self._pools_lock:  # threads share a Chain: one pool per URL, not one each
                pool = self._pools.get(url)
                if pool is None:
                    pool = urllib3.connection_from_url(
                        url, maxsize=16, retries=False, timeout=urllib3.Timeout(total=self._timeout)
                    )
                    self._pools[url] = pool
        return pool

    def post_to(self, url: str, payload: Any) -> Any:
        """``payload`` to ``url`` exactly (no failover): the JSON answer."""
        resp = self._pool(url).urlopen(
            "POST",
            urlsplit(url).path or "/",
            body=json.dumps(payload).encode(),
            headers=self._headers,
        )
        if resp.status != 200:
            raise urllib3.exceptions.HTTPError(f"HTTP {resp.status}: {resp.data[:200]!r}")
        return json.loads(resp.data)

    def post(self, payload: Any) -> Any:
        return self.endpoints.attempt(lambda url: self.post_to(url, payload))

    def request(self, method: str, params: list[Any]) -> Any:
        return self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})

    def request_to(self, url: str, method: str, params: list[Any]) -> Any:
        return self.post_to(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})

    def supports(self, method: str) -> bool:
        """Whether the current node has ``method`` (rpc_endpoints.PROBES), probed once."""
        with chain_errors(f"probing {method}"):
            return self.endpoints.supports(method, self.request_to)

    def batch(self, requests_: Sequence[tuple[str, Any]]) -> Any:
        answers = self.post(
            [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(requests_)
            ]
        )
        if isinstance(answers, list):
            answers.sort(key=lambda a: a.get("id", 0))
        return answers


@dataclass(frozen=True)
class ChainIdentity:
    """Which chain an action was made on: a node reset (anvil_reset, a new devnet) keeps
    the chain id and, redeployed by the same key, even the contract addresses; its
    genesis block is new. ``deployment``: the manifest's first block and a digest of its
    contracts' addresses (a redeploy on a live chain is another deployment)."""

    chain_id: int
    genesis_hash: str
    deployment: str

    def columns(self) -> dict[str, Any]:
        """The ``actions`` columns that hold it."""
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash,
            "deployment": self.deployment,
        }


def deployment_id(deployment: Deployment) -> str:
    addresses = ",".join(f"{n}={r.address}" for n, r in sorted(deployment.contracts.items()))
    digest = hashlib.sha256(addresses.encode()).hexdigest()[:24]
    return f"{deployment.deployed_at_block}:{digest}"


@dataclass
class Chain:
    """A node plus the deployment manifest (contracts by name, ABIs for error decoding)."""

    w3: Web3
    deployment: Deployment
    rpc: JsonRpc  # raw and batched calls (``raw``, ``batch``)
    _contracts: dict[str, Contract] = field(default_factory=dict, repr=False, compare=False)
    _contracts_at: dict[tuple[str, Path], Contract] = field(
        default_factory=dict, repr=False, compare=False
    )
    _immutables: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def connect(cls, rpc_urls: str | Sequence[str], manifest_path: str, timeout: float) -> Chain:
        """``rpc_urls``: one URL, or several of the same chain (comma-separated or a
        list), used first to last with failover (rpc_endpoints.RpcEndpoints)."""
        endpoints = RpcEndpoints(rpc_urls)
        return cls(
            w3=make_web3(endpoints, timeout),
            deployment=Deployment.load(manifest_path),
            rpc=JsonRpc(endpoints, timeout),
        )

    @property
    def endpoints(self) -> RpcEndpoints:
        return self.rpc.endpoints

    def supports(self, method: str) -> bool:
        """Whether the node in use has ``method`` (eth_simulateV1, debug_traceTransaction)."""
        return self.rpc.supports(method)

    def contract(self, name: str) -> Contract:
        """The deployed contract ``name``, built once per Chain: building a web3 contract
        parses its whole ABI (~20 ms for Market), and a market request asked for five."""
        found = self._contracts.get(name)
        if found is None:
            found = self._contracts[name] = self.deployment.contract(self.w3, name)
        return found

    def contract_at(self, address: str, abi_path: Path) -> Contract:
        """A contract of the ABI in ``abi_path`` at ``address`` (a pool, its shares),
        built once per Chain and address, as ``contract``."""
        key = (address.lower(), abi_path)
        found = self._contracts_at.get(key)
        if found is None:
            if len(self._contracts_at) >= CONTRACTS_AT_MAX:
                self._contracts_at.clear()
            found = self._contracts_at[key] = self.w3.eth.contract(
                address=to_checksum_address(address), abi=read_abi(abi_path)
            )
        return found

    @cached_property
    def stablecoin(self) -> Contract:
        return self.contract("TestStablecoin")

    def immutable(self, what: str, read: Callable[[], T]) -> T:
        """A value the deployment fixed for good (a contract's immutable), read once per
        Chain (``what`` names it and keys the cache) after checking the node is the
        manifest's chain. A failed read (ChainUnavailable, WrongChain, a web3 error)
        raises and is not cached."""
        if what not in self._immutables:
            self.check_chain_id()
            self._immutables[what] = self.call(what, read)
        value: T = self._immutables[what]
        return value

    def call(self, what: str, fn: Callable[[], T]) -> T:
        with chain_errors(what):
            return fn()

    def batch(self, what: str, requests: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Raw JSON-RPC answers to ``requests`` sent as one batch (one round trip), in order.
        Each answer is the node's own ``{"result": ...}`` or ``{"error": ...}``: the caller
        decodes it (no web3 middleware or result formatters run)."""
        with chain_errors(what):
            answers = self.rpc.batch(requests)
        if not isinstance(answers, list):  # the node refused the batch as a whole
            raise Web3RPCError(f"{what}: {answers.get('error', answers)}", rpc_response=answers)
        return [dict(a) for a in answers]

    def raw(self, what: str, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call's raw result (the node's JSON: hex quantities, hex data), with
        no web3 middleware or result formatters; an error answer raises as web3 raises."""
        with chain_errors(what):
            response = self.rpc.request(method, params)
        return result_of(response, what)

    def check_chain_id(self) -> int:
        chain_id = self.call("eth_chainId", lambda: self.w3.eth.chain_id)
        self._require_manifest_chain(chain_id)
        return chain_id

    def _require_manifest_chain(self, chain_id: int) -> None:
        if chain_id != self.deployment.chain_id:
            raise WrongChain(
                f"node at {self.endpoints.current} is chain {chain_id}, "
                f"manifest {self.deployment.path} is for chain {self.deployment.chain_id}"
            )

    def identity(self) -> ChainIdentity:
        """The node's chain as it is now (one round trip: chain id and genesis block).
        Not cached: a reset node must never be taken for the chain it was."""
        return self.identity_from(self.batch("reading the chain's identity", IDENTITY_REQUESTS))

    def identity_from(self, answers: Sequence[dict[str, Any]]) -> ChainIdentity:
        """``identity`` from the node's answers to IDENTITY_REQUESTS, for a caller that
        sends them in a JSON-RPC batch of its own (one round trip for all it reads)."""
        chain_id, genesis = answers
        node_chain_id = int(result_of(chain_id, "eth_chainId"), 16)
        self._require_manifest_chain(node_chain_id)
        block = result_of(genesis, "eth_getBlockByNumber")
        return ChainIdentity(node_chain_id, str(block["hash"]), deployment_id(self.deployment))

    def latest_block(self) -> Any:
        return self.call("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))

    @cached_property
    def error_abis(self) -> list[dict[str, Any]]:
        """Every custom error of every contract in the manifest (for revert decoding)."""
        seen: dict[str, dict[str, Any]] = {}
        for ref in self.deployment.contracts.values():
            for item in ref.abi:
                if item.get("type") == "error":
                    sig = item["name"] + "(" + ",".join(i["type"] for i in item["inputs"]) + ")"
                    seen.setdefault(sig, item)
        return list(seen.values())


# What Chain.identity reads: the chain id and the genesis block.
IDENTITY_REQUESTS: tuple[tuple[str, list[Any]], ...] = (
    ("eth_chainId", []),
    ("eth_getBlockByNumber", ["0x0", False]),
)


def result_of(response: Any, what: str) -> Any:
    """A JSON-RPC answer's result; an error answer raises Web3RPCError, as web3 does."""
    if not isinstance(response, dict) or "error" in response or "result" not in response:
        error = response.get("error", response) if isinstance(response, dict) else response
        raise Web3RPCError(f"{what}: {error}", rpc_response=response)
    return response["result"]
