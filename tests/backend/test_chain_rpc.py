"""Chain.raw and Chain.batch: raw JSON-RPC over urllib3 (services/chain.py JsonRpc).
Answers as the node sends them, in request order; a down or failing node is
ChainUnavailable (retryable), an error answer raises as web3 raises."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

import pytest
from brownie import web3
from hexbytes import HexBytes
from web3.exceptions import Web3RPCError

from backend.services.chain import Chain, JsonRpc, RpcEndpoints
from backend.services.errors import ChainUnavailable
from backend.services.rpc_endpoints import FailoverHTTPProvider
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


class _NamedNode:
    """A JSON-RPC server on loopback that answers every call with its own URL, and counts
    the calls it answered by their first parameter (the test's tag for a request)."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()
        lock, node = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nodes answer
            disable_nagle_algorithm = True  # headers and body go out as written

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": node.url})
                with lock:
                    node.answered[call["params"][0]] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _SendBook(RpcEndpoints):
    """RpcEndpoints that writes down where each attempt is meant to go, by the calling
    thread's request tag, and each failure as it is reported (URL blamed, error)."""

    def __init__(self, urls: list[str], tags: threading.local) -> None:
        super().__init__(urls)
        self.tags = tags
        self.sent: list[tuple[str, str]] = []
        self.blamed: list[tuple[str, str]] = []

    def attempt(self, send: Any) -> Any:
        def noted(url: str) -> Any:
            self.sent.append((self.tags.tag, url))
            return send(url)

        return super().attempt(noted)

    def failed(self, url: str, exc: BaseException) -> None:
        self.blamed.append((url, str(exc)))
        super().failed(url, exc)


def test_threads_failing_over_send_each_request_to_the_url_they_meant() -> None:
    """One web3 provider shared by 8 threads, a refusing URL first and a live node second,
    the list fresh (at the refusing URL) again and again while the threads send: every
    request is answered by the live node, each arrives there only from an attempt meant
    for it (none meant for the refusing URL lands on the live one), and every failure
    is reported against the URL that refused it (its port is in the error).

    Threads switch every 10 µs and each request carries a few hundred values for web3
    to encode, which widens the window between choosing a URL and posting. The provider
    this replaced (one shared HTTPProvider whose URL was switched before each send)
    failed here in each of 10 runs: requests meant for the refusing URL were answered
    by the live node, and a request sent to the refusing URL was blamed on the live one,
    which failed it over."""
    node, refused = _NamedNode(), f"http://127.0.0.1:{devchain.free_port()}"
    tags = threading.local()
    errors: list[BaseException] = []
    answers: list[str] = []
    padding = [HexBytes(b"\x01")] * 300
    books = [_SendBook([refused, node.url], tags)]
    provider = [FailoverHTTPProvider(books[0], 2.0)]
    stop = threading.Event()

    def work(thread: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tags.tag = f"{thread}-{n}"
            try:
                answer = provider[0].make_request("web3_clientVersion", [tags.tag, padding])
                answers.append(answer["result"])
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    try:
        for w in workers:
            w.start()
        for _ in range(30):  # a fresh list once the threads have sent a dozen attempts
            book, deadline = books[-1], time.monotonic() + 10
            while len(book.sent) < 12 and not errors:
                assert time.monotonic() < deadline, "the threads stopped sending"
                time.sleep(0.0005)
            books.append(_SendBook([refused, node.url], tags))
            provider[0] = FailoverHTTPProvider(books[-1], 2.0)
    finally:
        stop.set()
        for w in workers:
            w.join()
        sys.setswitchinterval(interval)
        node.stop()
    assert not errors, errors[:3]
    assert set(answers) == {node.url}
    meant_for_node = Counter(tag for book in books for tag, url in book.sent if url == node.url)
    assert node.answered == meant_for_node, {
        tag: (n, meant_for_node[tag])
        for tag, n in node.answered.items()
        if meant_for_node[tag] != n
    }
    refused_port = refused.rsplit(":", 1)[1]
    assert all(book.blamed for book in books[:-1])  # each list was tried at the refusing URL
    for book in books:
        for url, error in book.blamed:
            assert url == refused, f"{url} blamed for: {error}"
            assert f"port={refused_port})" in error, error
