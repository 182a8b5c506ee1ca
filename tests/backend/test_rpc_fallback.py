"""The backend on nodes without our favourite RPCs, given several node URLs.

The API and the worker get GPUCAP_RPC_URLS = a dead URL, then an HTTP JSON-RPC proxy in
front of anvil that answers "method not found" for ``eth_simulateV1`` and
``debug_traceTransaction`` (as node implementations without them do). Both fail over
to the proxy; the relayer probes each method once, takes eth_estimateGas / eth_call
instead, and the forward flow's tests (imported below, run again on this stack) give
the same answers: buys and batches confirm, a call that reverted inside a batch gets
its own decoded error, refusals the same 422 codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpucap import devchain
from tests.backend.backend_helpers import Stack, running_stack
from tests.backend.test_e2e_forward import (  # noqa: F401 - the fixture and tests run here too
    market,
    test_gasless_buy_with_permit_confirms,
    test_node_refusals_and_malleable_signatures_get_4xx,
    test_pending_requests_go_out_as_one_batch_with_outcomes_each,
    test_rejections_say_why,
)
from tests.support.rpc_proxy import RpcProxy

MISSING = ("eth_simulateV1", "debug_traceTransaction")


@pytest.fixture(scope="module")
def proxy(live_deployment: Any) -> Iterator[RpcProxy]:
    p = RpcProxy(live_deployment.rpc_url, MISSING).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"http://127.0.0.1:{devchain.free_port()}"  # nothing listens: refused


@pytest.fixture(scope="module")
def stack(
    live_deployment: Any,
    tmp_path_factory: pytest.TempPathFactory,
    proxy: RpcProxy,
    dead_url: str,
) -> Iterator[Stack]:
    env = {"GPUCAP_RPC_URLS": f"{dead_url},{proxy.url}"}
    with running_stack(tmp_path_factory.mktemp("fallback"), live_deployment, env) as s:
        yield s


def test_api_and_worker_fail_over_from_a_dead_url(
    stack: Stack, proxy: RpcProxy, dead_url: str
) -> None:
    """Runs after the imported flows (file order): both processes said they moved on."""
    for process in (stack.api, stack.worker):
        assert f"RPC node {dead_url} failed" in process.log_tail(10_000), process.name
        assert f"failing over to {proxy.url}" in process.log_tail(10_000), process.name
    assert proxy.passed["eth_sendRawTransaction"] > 0


def test_missing_methods_were_probed_once_and_never_used(stack: Stack, proxy: RpcProxy) -> None:
    """One probe per method by the one worker (then the fallback, by standard methods);
    the logs say which node lacks what."""
    assert proxy.refused == {m: 1 for m in MISSING}, proxy.refused
    log = stack.worker.log_tail(10_000)
    for method in MISSING:
        assert f"RPC node {proxy.url} has no {method}" in log
    assert proxy.passed["eth_estimateGas"] > 0
