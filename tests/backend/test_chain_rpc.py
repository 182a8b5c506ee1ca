"""Chain.raw and Chain.batch: raw JSON-RPC over urllib3 (services/chain.py JsonRpc).
Answers as the node sends them, in request order; a down or failing node is
ChainUnavailable (retryable), an error answer raises as web3 raises."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from brownie import web3
from web3.exceptions import Web3RPCError

from backend.services.chain import Chain, JsonRpc, RpcEndpoints
from backend.services.errors import ChainUnavailable
from gpucap import devchain


@pytest.fixture(scope="module")
def chain(live_deployment: Any) -> Chain:
    return Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 3.0)


def test_batch_answers_come_back_in_request_order(chain: Chain) -> None:
    head = web3.eth.block_number
    numbers = [head, 0, head - 1, 1]
    answers = chain.batch("headers", [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    assert [int(a["result"]["number"], 16) for a in answers] == numbers
    assert chain.raw("chain id", "eth_chainId", []) == hex(web3.eth.chain_id)


def test_an_error_answer_raises_as_web3_does(chain: Chain) -> None:
    with pytest.raises(Web3RPCError, match="Method not found"):
        chain.raw("nonsense", "no_such_method", [])
    (answer,) = chain.batch("nonsense", [("no_such_method", [])])
    assert "error" in answer


class _Failing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(502)
        self.end_headers()
        self.wfile.write(b"bad gateway")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def failing_node() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_down_or_failing_node_is_chain_unavailable(chain: Chain, failing_node: str) -> None:
    for url in (f"http://127.0.0.1:{devchain.free_port()}", failing_node):
        down = Chain(w3=chain.w3, deployment=chain.deployment, rpc=JsonRpc(RpcEndpoints(url), 1.0))
        with pytest.raises(ChainUnavailable, match="node unreachable"):
            down.raw("reading receipt", "eth_getTransactionReceipt", ["0x" + "00" * 32])
        with pytest.raises(ChainUnavailable, match="node unreachable"):
            down.batch("validating", [("eth_chainId", [])])


def test_several_urls_fail_over_on_refused_and_hung_nodes(
    chain: Chain, live_deployment: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """GPUCAP_RPC_URLS: a refused URL and a hung one (accepts, never answers) are passed
    over, for web3's calls and raw ones alike, each switch logged; the answer is the node's."""
    import socket

    hung = socket.create_server(("127.0.0.1", 0))  # listens; nobody ever reads
    refused = f"http://127.0.0.1:{devchain.free_port()}"
    hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    try:
        many = Chain.connect(
            f"{refused}, {hung_url},{live_deployment.rpc_url}",
            str(live_deployment.manifest_path),
            0.5,
        )
        with caplog.at_level("WARNING", logger="backend.services.rpc_endpoints"):
            assert many.raw("chain id", "eth_chainId", []) == hex(web3.eth.chain_id)
        assert many.endpoints.current == live_deployment.rpc_url
        said = [r.getMessage() for r in caplog.records]
        assert any(f"RPC node {refused} failed" in m for m in said), said
        assert any(f"RPC node {hung_url} failed" in m for m in said), said
        # web3's provider shares the list: a fresh client of the same list starts at the
        # first URL and moves on too.
        again = Chain.connect(
            [refused, live_deployment.rpc_url], str(live_deployment.manifest_path), 0.5
        )
        assert again.w3.eth.block_number == web3.eth.block_number
        assert again.endpoints.current == live_deployment.rpc_url
        # Every URL down: the last failure, as ChainUnavailable.
        down = Chain.connect([refused, hung_url], str(live_deployment.manifest_path), 0.5)
        with pytest.raises(ChainUnavailable, match="node unreachable"):
            down.raw("chain id", "eth_chainId", [])
    finally:
        hung.close()


def test_supported_methods_are_probed_once_per_node(chain: Chain) -> None:
    """anvil has both optional methods; the answer is cached for the URL."""
    assert chain.supports("eth_simulateV1") and chain.supports("debug_traceTransaction")
    assert chain.endpoints._features == {  # noqa: SLF001 - the cache is the point
        (chain.endpoints.current, "eth_simulateV1"): True,
        (chain.endpoints.current, "debug_traceTransaction"): True,
    }
