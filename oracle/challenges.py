"""Work challenges: random work at random times, checked against the registry.

Every ``mean_interval_s`` on average (exponential gaps drawn from the OS's
random source, independently per node, so an operator cannot predict the next
one) the oracle sends a node's agent a seeded matrix product sized to the
node's GPU class (agent/protocol.py): first the nonce (the agent derives the
matrices and loads them, within ``prepare_s``), then ``go``, which fixes the
signs of B's rows, so the product can only start then; the deadline runs from
``go``. It then asks for ``rows`` random rows of the committed result and checks
each with its Merkle proof against ``(row_i(A) * s) @ B``.

A challenge fails, with its reason logged and recorded, when the agent:

- cannot be reached or answers malformed JSON (``unreachable``, ``malformed``);
- signs with a key other than the node's registered ``nodeKey`` (``wrong_key``),
  or signs an answer to another challenge (``replayed``: both nonces are signed);
- answers after the deadline (``missed_deadline``);
- names a GPU UUID that is not among the node's: those its accepted signed
  samples list that the registry binds to the node (``unknown_gpu``);
- claims a time faster than the class's peak (``impossible_time``) or slower
  than ``min_efficiency`` of it plus ``kernel_slack_s`` (``too_slow_for_class``):
  a slower GPU claiming a faster class;
- or commits to a row that is not the product's (``wrong_row``).

Reference throughput. The agent multiplies in float32 with TF32 tensor cores
allowed, so the class's peak is its dense TF32 throughput. NVIDIA's datasheets
give TF32 at exactly half the dense BF16 figure the registry records as
``referenceThroughput`` for every standard class (oracle/README.md lists them),
so the peak is read from the registry as ``referenceThroughput / 2`` TFLOPS.

Results land in a SQLite ledger beside the oracle's state; the reporter gives a
node no GPU-hours for an epoch in which it failed one (oracle/reporter.py).
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import requests

from agent.protocol import (
    ANSWER_KIND,
    MAX_N,
    Challenge,
    ProtocolError,
    expected_rows,
    open_document,
    verify_row,
)

log = logging.getLogger("gpucap.oracle.challenges")
_random = random.SystemRandom()


@dataclass(frozen=True)
class Registration:
    """What the registry says about a node that judging its agent needs."""

    node_key: str
    gpu_count: int
    peak_flops: float  # the class's dense TF32 throughput, FLOP/s


class Registry(Protocol):
    def registration(self, node_id: int) -> Registration: ...

    def gpu_nodes(self, gpu_ids: list[bytes]) -> list[int]:
        """The node each GPU id (gpucap.gpu_ids) is bound to in the registry, 0 if none."""
        ...


@dataclass(frozen=True)
class ChallengePolicy:
    mean_interval_s: float = 3600.0
    rows: int = 4
    # Work sized so a GPU of the class at its peak needs this long (load = this / interval).
    target_seconds: float = 0.02
    min_efficiency: float = 0.2
    # The agent's time to derive the matrices and load them on the device (not timed).
    prepare_s: float = 120.0
    # Allowed after "go" on top of the product: HTTP, copying C back, hashing its rows.
    overhead_s: float = 10.0
    # Allowed on top of the measured product: kernel launch and timer granularity.
    kernel_slack_s: float = 0.01
    min_n: int = 16

    def size(self, peak_flops: float) -> int:
        n = round((self.target_seconds * peak_flops / 2) ** (1 / 3))
        return max(self.min_n, min(MAX_N, n))

    def challenge(self, peak_flops: float) -> Challenge:
        n = self.size(peak_flops)
        compute = 2.0 * n**3 / (peak_flops * self.min_efficiency)
        deadline = compute + self.kernel_slack_s + self.overhead_s
        return Challenge(secrets.token_bytes(32), n, deadline)


@dataclass(frozen=True)
class Verdict:
    node_id: int
    at: float
    passed: bool
    reason: str  # "ok" or a failure kind
    detail: str = ""
    round_trip_s: float = 0.0


class ChallengeLedger:
    """Verdicts in SQLite (WAL, synchronous=FULL): they survive an oracle restart."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (node_id INTEGER NOT NULL, t REAL NOT NULL,"
            " passed INTEGER NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,"
            " round_trip REAL NOT NULL)"
        )

    def record(self, verdict: Verdict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    verdict.node_id,
                    verdict.at,
                    int(verdict.passed),
                    verdict.reason,
                    verdict.detail,
                    verdict.round_trip_s,
                ),
            )

    def counts(self, node_ids: Iterable[int], start: float, end: float) -> dict[int, dict]:
        """Per node with a challenge in ``[start, end)``: passed, failed, failure reasons."""
        wanted = set(node_ids)
        with self._lock:
            rows = self._db.execute(
                "SELECT node_id, passed, reason, detail FROM verdicts WHERE t >= ? AND t < ?"
                " ORDER BY t",
                (start, end),
            ).fetchall()
        out: dict[int, dict] = {}
        for node_id, passed, reason, detail in rows:
            if node_id not in wanted:
                continue
            entry = out.setdefault(node_id, {"passed": 0, "failed": 0, "failures": []})
            if passed:
                entry["passed"] += 1
            else:
                entry["failed"] += 1
                entry["failures"].append(f"{reason}: {detail}")
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


@runtime_checkable
class ChallengedSource(Protocol):
    """A telemetry source whose nodes are also challenged (see oracle/collectors/agent.py)."""

    def challenge_counts(self, node_ids: Iterable[int], start: float, end: float) -> dict: ...


class Challenger:
    """Sends challenges to agents and judges the answers."""

    def __init__(
        self,
        targets: Mapping[int, str],
        registry: Registry,
        chain_id: int,
        policy: ChallengePolicy,
        ledger: ChallengeLedger,
        gpus_of: Callable[[int], set[str]],
    ) -> None:
        self.targets = dict(targets)
        self.registry = registry
        self.chain_id = chain_id
        self.policy = policy
        self.ledger = ledger
        # The node's GPUs: UUIDs its accepted signed samples list that the registry binds
        # to it (agent collector).
        self._gpus_of = gpus_of
        self.on_verdict: Callable[[Verdict], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._busy_s = 0.0  # agents' time spent answering, summed over nodes

    def load_share(self) -> float:
        """Share of the challenged nodes' time spent answering challenges so far."""
        watched = (time.monotonic() - self._started) * max(1, len(self.targets))
        return self._busy_s / watched if watched > 0 else 0.0

    def challenge(self, node_id: int) -> Verdict:
        """Challenge one node now, record and return the verdict."""
        started_at = time.time()
        verdict = self._judge(node_id, started_at)
        if verdict.reason == "registry_unreadable":
            # The oracle's own trouble, not the node's: no verdict either way.
            log.warning("node %d not challenged: %s", node_id, verdict.detail)
            return verdict
        self.ledger.record(verdict)
        self._busy_s += verdict.round_trip_s
        if verdict.passed:
            log.info(
                "node %d passed a challenge (%s, round trip %.3fs); challenge load so far"
                " %.4f%% of the nodes' time",
                node_id,
                verdict.detail,
                verdict.round_trip_s,
                100 * self.load_share(),
            )
        else:
            log.warning(
                "node %d FAILED a challenge: %s (%s)", node_id, verdict.reason, verdict.detail
            )
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        return verdict

    def _judge(self, node_id: int, at: float) -> Verdict:
        def fail(reason: str, detail: str, round_trip: float = 0.0) -> Verdict:
            return Verdict(node_id, at, False, reason, detail, round_trip)

        url = self.targets[node_id].rstrip("/")
        try:
            reg = self.registry.registration(node_id)
        except Exception as exc:  # noqa: BLE001 - the chain is down: no verdict is fair
            return fail("registry_unreadable", str(exc))
        challenge = self.policy.challenge(reg.peak_flops)
        nonce = "0x" + challenge.nonce.hex()
        try:
            requests.post(
                f"{url}/challenges", json=challenge.to_json(), timeout=self.policy.prepare_s
            ).raise_for_status()
        except requests.RequestException as exc:
            return fail("unreachable", f"prepare: {type(exc).__name__}: {exc}")
        go = secrets.token_bytes(32)
        sent = time.monotonic()
        try:
            response = requests.post(
                f"{url}/challenges/go",
                json={"nonce": nonce, "go": "0x" + go.hex()},
                timeout=challenge.deadline_s,
            )
            round_trip = time.monotonic() - sent
            response.raise_for_status()
            document = response.json()
        except requests.Timeout:
            return fail("missed_deadline", f"no answer within {challenge.deadline_s:.2f}s")
        except (requests.RequestException, ValueError) as exc:
            return fail("unreachable", f"{type(exc).__name__}: {exc}")
        if round_trip > challenge.deadline_s:
            return fail(
                "missed_deadline",
                f"answered after {round_trip:.2f}s, deadline {challenge.deadline_s:.2f}s",
                round_trip,
            )
        try:
            answer, signer = open_document(document, ANSWER_KIND, self.chain_id, node_id)
        except ProtocolError as exc:
            return fail("malformed", str(exc), round_trip)
        if signer.lower() != reg.node_key.lower():
            return fail(
                "wrong_key", f"signed by {signer}, registered nodeKey {reg.node_key}", round_trip
            )
        if (
            answer.get("nonce") != nonce
            or answer.get("go") != "0x" + go.hex()
            or answer.get("n") != challenge.n
        ):
            return fail(
                "replayed", f"answer is for challenge {str(answer.get('nonce'))[:12]}", round_trip
            )
        uuid = answer.get("gpuUuid")
        if not isinstance(uuid, str) or uuid not in self._gpus_of(node_id):
            return fail(
                "unknown_gpu", f"{uuid!r} is not among the node's GPUs (signed samples)", round_trip
            )
        elapsed = answer.get("elapsedSeconds")
        if not isinstance(elapsed, int | float) or not math.isfinite(elapsed):
            return fail("malformed", "no elapsed time", round_trip)
        fastest = challenge.flops / reg.peak_flops
        slowest = challenge.flops / (reg.peak_flops * self.policy.min_efficiency)
        if elapsed < fastest or elapsed > round_trip:
            return fail(
                "impossible_time",
                f"claims {elapsed:.3g}s; the class's peak needs {fastest:.3g}s, round trip"
                f" {round_trip:.3g}s",
                round_trip,
            )
        if elapsed > slowest + self.policy.kernel_slack_s:
            return fail(
                "too_slow_for_class",
                f"took {elapsed:.3g}s, the class needs at most"
                f" {slowest + self.policy.kernel_slack_s:.3g}s",
                round_trip,
            )
        try:
            root = bytes.fromhex(str(answer["root"]).removeprefix("0x"))
        except (KeyError, ValueError):
            return fail("malformed", "no Merkle root", round_trip)
        picks = sorted(_random.sample(range(challenge.n), min(self.policy.rows, challenge.n)))
        try:
            response = requests.post(
                f"{url}/challenges/rows", json={"nonce": nonce, "rows": picks}, timeout=30
            )
            response.raise_for_status()
            rows = response.json()["rows"]
            served = {int(r["index"]): r for r in rows}
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            return fail("unreachable", f"rows: {type(exc).__name__}: {exc}", round_trip)
        expected = expected_rows(challenge.nonce, go, challenge.n, picks)
        for i, want in zip(picks, expected, strict=True):
            row = served.get(i) or {}  # a missing row is a KeyError below: no proof
            try:
                proof = [bytes.fromhex(p.removeprefix("0x")) for p in row["proof"]]
                values = row["values"]
                proven = len(values) == challenge.n and verify_row(root, i, values, proof)
            except (TypeError, KeyError, ValueError, AttributeError):
                proven = False
            if not proven:
                return fail("wrong_row", f"row {i} has no valid proof against the root", round_trip)
            if list(map(float, values)) != want.tolist():
                return fail("wrong_row", f"row {i} is not row {i} of A @ B", round_trip)
        return Verdict(node_id, at, True, "ok", f"n={challenge.n} in {elapsed:.3g}s", round_trip)

    # -- the schedule ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="oracle-challenges", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _next_gap(self) -> float:
        return _random.expovariate(1.0 / self.policy.mean_interval_s)

    def _run(self) -> None:
        due = {node_id: time.monotonic() + self._next_gap() for node_id in self.targets}
        while not self._stop.is_set():
            node_id = min(due, key=due.__getitem__)
            if self._stop.wait(max(0.0, due[node_id] - time.monotonic())):
                return
            try:
                self.challenge(node_id)
            except Exception:  # noqa: BLE001 - the schedule must outlive one bad challenge
                log.exception("challenge of node %d failed to run", node_id)
            due[node_id] = time.monotonic() + self._next_gap()
