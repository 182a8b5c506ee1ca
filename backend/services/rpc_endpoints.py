"""Several JSON-RPC URLs of one chain, and what each node can do.

An operator gives the API and the worker more than one node (GPUCAP_RPC_URLS): the
first is used until a request to it fails in transport (refused, reset, timed out),
then the next, round the list; a node that answers with an error is not failed over
(another node of the same chain would give the same answer). Each switch is logged.

Not every node implementation offers the methods the relayer prefers
(``eth_simulateV1``, ``debug_traceTransaction`` with the callTracer; Hardhat has
neither): whether a node does is probed once per URL, on first need, and logged;
callers then take the standard-method fallback (``eth_estimateGas``, ``eth_call``)
for that node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
import urllib3
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a down or hung node looks like from web3.py's HTTP provider and from urllib3.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ProviderConnectionError,
    TimeExhausted,
    ConnectionError,
    TimeoutError,
    urllib3.exceptions.HTTPError,  # Chain.raw/batch: refused, reset, timed out
)

# JSON-RPC error codes nodes answer for a method they do not have: the standard
# "method not found" (geth, anvil, reth), and -32004 "method not supported" (Hardhat,
# EIP-1474).
METHOD_MISSING_CODES = frozenset({-32601, -32004})
_MISSING_WORDS = ("not supported", "does not exist", "not available", "method not found")

# A harmless call of each optional method: a node that has it answers (a result, or an
# error about the arguments such as "transaction not found"); one that has not says so.
PROBES: dict[str, list[Any]] = {
    "eth_simulateV1": [{"blockStateCalls": [{"calls": []}]}, "latest"],
    "debug_traceTransaction": ["0x" + "00" * 32, {"tracer": "callTracer"}],
}


def method_missing(error: Any) -> bool:
    """Whether a JSON-RPC ``error`` object says the node has no such method."""
    if not isinstance(error, dict):
        return False
    if error.get("code") in METHOD_MISSING_CODES:
        return True
    message = str(error.get("message", "")).lower()
    return any(words in message for words in _MISSING_WORDS)


def lacks_probed(method: str, error: Any) -> bool:
    """Whether a node's ``error`` answer to ``method``'s probe (PROBES) says it cannot do
    what callers need: no such method, or, for debug_traceTransaction, no callTracer
    (Hardhat has the method with its default struct logger only: "Hardhat currently
    only supports the default tracer")."""
    if method_missing(error):
        return True
    message = str(error.get("message", "")).lower() if isinstance(error, dict) else ""
    return method == "debug_traceTransaction" and "tracer" in message


def parse_urls(urls: str | Sequence[str]) -> list[str]:
    """``"http://a,http://b"`` or a list, blanks dropped, duplicates kept once, in order."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out = list(dict.fromkeys(u.strip() for u in items if u.strip()))
    if not out:
        raise ValueError("no RPC URL given")
    return out


class RpcEndpoints:
    """The node URLs of one chain and the one in use (shared by every client of a
    process's Chain, so that one failover moves them all)."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = parse_urls(urls)
        self._current = 0
        self._lock = threading.Lock()
        self._features: dict[tuple[str, str], bool] = {}

    @property
    def current(self) -> str:
        return self.urls[self._current]

    def failed(self, url: str, exc: BaseException) -> None:
        """A transport failure at ``url``: move on to the next URL if it is still the
        current one (threads failing on the same node move the list once)."""
        with self._lock:
            if len(self.urls) < 2 or self.urls[self._current] != url:
                return
            self._current = (self._current + 1) % len(self.urls)
            log.warning(
                "RPC node %s failed (%s: %s); failing over to %s",
                url,
                type(exc).__name__,
                exc,
                self.urls[self._current],
            )

    def attempt(self, send: Callable[[str], T]) -> T:
        """``send(url)`` at the current URL; on a transport failure, at the next, each URL
        at most once. The last failure is raised when none answers."""
        for _ in range(len(self.urls)):
            url = self.current
            try:
                return send(url)
            except CONNECTION_ERRORS as exc:
                last = exc
                self.failed(url, exc)
        raise last

    def supports(self, method: str, probe: Callable[[str, str, list[Any]], Any]) -> bool:
        """Whether the current node has ``method`` (one of PROBES): probed on first need
        per URL with ``probe(url, method, params)`` (a raw JSON-RPC answer), then cached."""
        url = self.current
        key = (url, method)
        known = self._features.get(key)
        if known is not None:
            return known
        answer = probe(url, method, PROBES[method])
        has = not (isinstance(answer, dict) and lacks_probed(method, answer.get("error")))
        self._features[key] = has
        if has:
            log.info("RPC node %s offers %s", url, method)
        else:
            log.warning(
                "RPC node %s has no %s (%s); using the standard-method fallback",
                url,
                method,
                answer.get("error") if isinstance(answer, dict) else answer,
            )
        return has

    def forget(self, url: str, method: str) -> None:
        """``method`` answered "not found" at ``url`` after all (a node behind a load
        balancer changed): probe again next time."""
        self._features.pop((url, method), None)


class FailoverHTTPProvider(JSONBaseProvider):
    """web3's provider over RpcEndpoints: each request goes to the current URL and moves
    on to the next on a transport failure.

    One web3 HTTPProvider per URL, each posting only to its own: a request is sent to
    exactly the URL whose failure it reports. (One shared provider whose ``endpoint_uri``
    was switched before each send let a thread post to the URL another thread had just
    set, and blame that node's refusal on the URL it meant, failing a healthy node over.)
    """

    def __init__(self, endpoints: RpcEndpoints, timeout: float) -> None:
        super().__init__()
        self.endpoints = endpoints
        # No provider-level retries: callers own retries (Celery), and the API
        # must answer fast when the node is down.
        self._providers = {
            url: Web3.HTTPProvider(
                url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
            )
            for url in endpoints.urls
        }

    @property
    def endpoint_uri(self) -> str:
        """The URL in use now (as web3's HTTPProvider names its one URL)."""
        return self.endpoints.current

    def __str__(self) -> str:
        return f"RPC connection {self.endpoints.current} (of {len(self.endpoints.urls)})"

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return self.endpoints.attempt(lambda url: self._providers[url].make_request(method, params))

    def make_batch_request(self, requests_: list[tuple[RPCEndpoint, Any]]) -> Any:
        return self.endpoints.attempt(
            lambda url: self._providers[url].make_batch_request(requests_)
        )
