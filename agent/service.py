"""The agent's HTTP face: signed samples and challenge answers.

``GET /sample``                 a signed reading of every GPU (agent/protocol.py)
``POST /challenges``            prepare a challenge: derive its matrices, load them
``POST /challenges/go``         run it with the oracle's ``go``; the signed Merkle root
``POST /challenges/rows``       the rows the oracle picked, with their Merkle proofs
``GET /health``                 liveness

Bad input is a 400 with a ``code`` and a ``reason``; a row request for a
challenge the agent does not hold is a 404. The results of the last few
challenges are kept in memory until their rows are asked for.

Development behaviours (``GPUCAP_AGENT_BEHAVIOUR``) make the agent lie the way a
dishonest operator would, so tests and the demo show the oracle catching it:
``fake_work`` commits to rows it never computed, ``replay`` answers every
challenge with its first signed answer, ``throttle`` is a slower machine (its
product takes ``throttle_seconds`` longer, reported honestly), ``boast`` does the
work but claims a time no GPU could reach, ``stale`` signs samples an hour old.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from eth_account import Account

from agent.gpus import GpuReader
from agent.kernels import Loaded, backend
from agent.protocol import (
    ANSWER_KIND,
    SAMPLE_KIND,
    Challenge,
    ProtocolError,
    matrix,
    row_tree,
    sign_document,
    signs,
)

log = logging.getLogger("gpucap.agent")
KEPT_CHALLENGES = 4
MAX_ROWS_PER_REQUEST = 64


class AgentService:
    def __init__(
        self,
        node_id: int,
        chain_id: int,
        private_key: str,
        gpus: GpuReader,
        behaviour: str = "honest",
        throttle_seconds: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._key = private_key
        self.address = Account.from_key(private_key).address
        self.gpus = gpus
        self.behaviour = behaviour
        self.throttle_seconds = throttle_seconds
        self.backend = backend()
        self._lock = threading.Lock()  # one challenge at a time: they share the GPU
        self._prepared: OrderedDict[str, tuple[Challenge, Loaded]] = OrderedDict()
        self._done: OrderedDict[str, tuple] = OrderedDict()
        self._first_answer: tuple[dict, str] | None = None

    def sample(self) -> dict:
        now = time.time()
        stamped = now - 3600 if self.behaviour == "stale" else now
        payload = {
            "kind": SAMPLE_KIND,
            "chainId": self.chain_id,
            "nodeId": self.node_id,
            "timestamp": round(stamped, 3),
            "gpus": self.gpus.read(now),
        }
        return sign_document(self._key, payload)

    def prepare(self, challenge: Challenge) -> None:
        """Derive the challenge's matrices and load them on the device (not timed)."""
        a, b = matrix(challenge.nonce, 0, challenge.n), matrix(challenge.nonce, 1, challenge.n)
        loaded = Loaded(a, b, self.backend)
        with self._lock:
            self._prepared["0x" + challenge.nonce.hex()] = (challenge, loaded)
            while len(self._prepared) > KEPT_CHALLENGES:
                self._prepared.popitem(last=False)

    def go(self, nonce: str, go: bytes) -> dict | None:
        """Run a prepared challenge with the oracle's ``go``; the signed answer, or
        None if no challenge ``nonce`` is prepared."""
        with self._lock:
            held = self._prepared.pop(nonce, None)
            if held is None:
                return None
            challenge, loaded = held
            if self.behaviour == "replay" and self._first_answer is not None:
                document, first_nonce = self._first_answer
                self._done[nonce] = self._done[first_nonce]
                return document
            if self.behaviour == "fake_work":
                c = np.random.default_rng().integers(-9, 10, size=(challenge.n,) * 2)
                c, elapsed = c.astype(np.float32), 1e-6
            else:
                c, elapsed = loaded.product(signs(go, challenge.n))
                if self.behaviour == "throttle":
                    time.sleep(self.throttle_seconds)
                    elapsed += self.throttle_seconds
                elif self.behaviour == "boast":
                    elapsed = 1e-12
            tree = row_tree(c)
            payload = {
                "kind": ANSWER_KIND,
                "chainId": self.chain_id,
                "nodeId": self.node_id,
                "nonce": nonce,
                "go": "0x" + go.hex(),
                "n": challenge.n,
                "root": "0x" + tree.root.hex(),
                "gpuUuid": self.gpus.uuids[0],
                "elapsedSeconds": elapsed,
            }
            document = sign_document(self._key, payload)
            self._done[nonce] = (c, tree)
            while len(self._done) > KEPT_CHALLENGES:
                self._done.popitem(last=False)
            if self._first_answer is None:
                self._first_answer = (document, nonce)
            log.info("challenge %s (n=%d) answered in %.6fs", nonce[:10], challenge.n, elapsed)
            return document

    def rows(self, nonce: str, indices: list[int]) -> list[dict] | None:
        with self._lock:
            held = self._done.get(nonce)
        if held is None:
            return None
        c, tree = held
        return [
            {
                "index": i,
                "values": c[i].tolist(),
                "proof": ["0x" + p.hex() for p in tree.proof(i)],
            }
            for i in indices
        ]


class AgentServer:
    """A threaded HTTP server in front of an AgentService (port 0: any free port)."""

    def __init__(self, service: AgentService, host: str, port: int) -> None:
        self.service = service
        self.httpd = ThreadingHTTPServer((host, port), _handler(service))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(service: AgentService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # noqa: ANN001 - http.server's signature
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, reason: str) -> None:
            self._send(status, {"code": code, "reason": reason})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/sample":
                self._send(200, service.sample())
            elif self.path == "/health":
                self._send(200, {"status": "ok", "nodeId": service.node_id})
            else:
                self._error(404, "not_found", f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                self._error(400, "bad_json", "the body is not JSON")
                return
            if self.path == "/challenges":
                try:
                    challenge = Challenge.from_json(body)
                except ProtocolError as exc:
                    self._error(400, "bad_challenge", str(exc))
                    return
                service.prepare(challenge)
                self._send(200, {"prepared": "0x" + challenge.nonce.hex()})
            elif self.path == "/challenges/go":
                nonce = body.get("nonce") if isinstance(body, dict) else None
                try:
                    go = bytes.fromhex(str(body.get("go")).removeprefix("0x"))
                except (AttributeError, ValueError):
                    go = b""
                if not isinstance(nonce, str) or len(go) != 32:
                    self._error(400, "bad_go", "need the prepared nonce and a 32-byte go")
                    return
                answer = service.go(nonce, go)
                if answer is None:
                    self._error(404, "unknown_challenge", f"no challenge {nonce} prepared")
                    return
                self._send(200, answer)
            elif self.path == "/challenges/rows":
                indices = body.get("rows") if isinstance(body, dict) else None
                nonce = body.get("nonce") if isinstance(body, dict) else None
                if (
                    not isinstance(nonce, str)
                    or not isinstance(indices, list)
                    or not 0 < len(indices) <= MAX_ROWS_PER_REQUEST
                    or not all(isinstance(i, int) and i >= 0 for i in indices)
                ):
                    self._error(400, "bad_rows", "need a nonce and 1-64 row indices")
                    return
                try:
                    rows = service.rows(nonce, indices)
                except (IndexError, ValueError) as exc:
                    self._error(400, "bad_rows", f"row out of range ({exc})")
                    return
                if rows is None:
                    self._error(404, "unknown_challenge", f"no result held for {nonce}")
                    return
                self._send(200, {"rows": rows})
            else:
                self._error(404, "not_found", f"no route {self.path}")

    return Handler
