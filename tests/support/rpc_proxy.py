"""An HTTP JSON-RPC proxy in front of a node that lacks some methods: a node
implementation without ``eth_simulateV1`` or ``debug_traceTransaction``, as far as any
client can tell (it answers -32601 "method not found" for them, single or in a batch,
and passes everything else through)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

from gpucap import devchain


class RpcProxy:
    def __init__(self, upstream: str, missing: Iterable[str]) -> None:
        self.upstream = upstream
        self.missing = frozenset(missing)
        self.port = devchain.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.refused: Counter[str] = Counter()  # calls answered "method not found"
        self.passed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(maxsize=32, retries=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nodes answer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = json.dumps(proxy.answer(json.loads(body))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True

    def start(self) -> RpcProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, payload: Any) -> Any:
        calls = payload if isinstance(payload, list) else [payload]
        passed = [c for c in calls if c.get("method") not in self.missing]
        with self._lock:
            for c in calls:
                (self.passed if c in passed else self.refused)[c.get("method")] += 1
        answers: dict[Any, Any] = {}
        if passed:
            upstream = self._forward(passed if isinstance(payload, list) else passed[0])
            for a in upstream if isinstance(upstream, list) else [upstream]:
                answers[json.dumps(a.get("id"))] = a
        out = [
            answers.get(json.dumps(c.get("id")))
            if c in passed
            else {
                "jsonrpc": "2.0",
                "id": c.get("id"),
                "error": {"code": -32601, "message": "Method not found"},
            }
            for c in calls
        ]
        return out if isinstance(payload, list) else out[0]

    def _forward(self, payload: Any) -> Any:
        resp = self._pool.request(
            "POST",
            self.upstream,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        return json.loads(resp.data)
