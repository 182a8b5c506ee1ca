"""Health and Prometheus metrics for the oracle daemon, over HTTP.

``GET /metrics``: Prometheus text (prometheus-client's exposition) with

- ``gpucap_oracle_last_attested_epoch`` / ``gpucap_oracle_current_epoch`` (hub),
- ``gpucap_oracle_epoch_lag``: ended epochs not yet attested (0 when up to date),
- ``gpucap_oracle_last_posted_epoch``: last epoch THIS oracle's transaction attested,
- ``gpucap_oracle_signer_info{address,role}``: which keys sign / transmit,
- ``gpucap_oracle_reports_total{status}`` and ``gpucap_oracle_failures_total{kind}``,
- ``gpucap_oracle_excluded_nodes``: nodes left out of the last measured epoch,
- ``gpucap_oracle_challenges_total{outcome,reason}`` and
  ``gpucap_oracle_challenge_round_trip_seconds_total`` (source ``agent``: work
  challenges judged, and the agents' time they took: the challenge load),
- ``gpucap_oracle_last_success_timestamp_seconds``.

``GET /health``: JSON, 200 when the last step succeeded recently and the lag is
within bounds, 503 otherwise (with the reason), for a load balancer or a
supervisor to act on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("gpucap.oracle.health")


@dataclass(frozen=True)
class HealthPolicy:
    # A step must have succeeded within this many seconds.
    max_silence_s: float = 120.0
    # More ended-but-unattested epochs than this is unhealthy.
    max_lag_epochs: int = 2


class OracleMetrics:
    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self.registry = CollectorRegistry()
        r = self.registry
        self.last_attested = Gauge(
            "gpucap_oracle_last_attested_epoch", "Last epoch attested on OracleHub", registry=r
        )
        self.current_epoch = Gauge(
            "gpucap_oracle_current_epoch", "Epoch running on OracleHub", registry=r
        )
        self.lag = Gauge("gpucap_oracle_epoch_lag", "Ended epochs not yet attested", registry=r)
        self.last_posted = Gauge(
            "gpucap_oracle_last_posted_epoch",
            "Last epoch attested by this oracle's own transaction",
            registry=r,
        )
        self.signer = Gauge(
            "gpucap_oracle_signer_info", "Keys this oracle holds", ["address", "role"], registry=r
        )
        self.reports = Counter(
            "gpucap_oracle_reports", "Reporting steps by outcome", ["status"], registry=r
        )
        self.failures = Counter(
            "gpucap_oracle_failures", "Failed reporting steps by kind", ["kind"], registry=r
        )
        self.excluded = Gauge(
            "gpucap_oracle_excluded_nodes", "Nodes excluded from the last epoch", registry=r
        )
        self.challenges = Counter(
            "gpucap_oracle_challenges",
            "Work challenges sent to node agents, by outcome and reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.challenge_seconds = Counter(
            "gpucap_oracle_challenge_round_trip_seconds",
            "Seconds node agents spent answering challenges (the challenge load)",
            registry=r,
        )
        self.last_success = Gauge(
            "gpucap_oracle_last_success_timestamp_seconds",
            "When a reporting step last succeeded",
            registry=r,
        )
        self._lock = threading.Lock()
        self._last_success_at: float | None = None
        self._last_error: str | None = None
        self._consecutive_failures = 0
        self._started_at = time.time()
        self._lag: int | None = None
        self._epochs: tuple[int, int] | None = None
        self._signers: list[str] = []
        self._transmitter: str | None = None

    def set_signers(self, signers: list[str], transmitter: str) -> None:
        self._signers, self._transmitter = list(signers), transmitter
        for address in signers:
            self.signer.labels(address=address, role="signer").set(1)
        self.signer.labels(address=transmitter, role="transmitter").set(1)

    def observe_chain(self, last_attested: int, current: int) -> None:
        lag = max(0, current - 1 - last_attested)
        with self._lock:
            self._lag, self._epochs = lag, (last_attested, current)
        self.last_attested.set(last_attested)
        self.current_epoch.set(current)
        self.lag.set(lag)

    def observe_challenge(self, verdict) -> None:
        """Count one challenge verdict (oracle.challenges.Verdict)."""
        self.challenges.labels("passed" if verdict.passed else "failed", verdict.reason).inc()
        self.challenge_seconds.inc(verdict.round_trip_s)

    def observe_success(self, status: str, posted_epoch: int | None, excluded: int | None) -> None:
        now = time.time()
        with self._lock:
            self._last_success_at, self._consecutive_failures, self._last_error = now, 0, None
        self.reports.labels(status=status).inc()
        self.last_success.set(now)
        if posted_epoch is not None:
            self.last_posted.set(posted_epoch)
        if excluded is not None:
            self.excluded.set(excluded)

    def observe_failure(self, kind: str, message: str) -> None:
        with self._lock:
            self._consecutive_failures += 1
            self._last_error = f"{kind}: {message}"
        self.failures.labels(kind=kind).inc()

    def health(self, now: float | None = None) -> tuple[bool, dict]:
        now = time.time() if now is None else now
        with self._lock:
            since = self._last_success_at or self._started_at
            reasons = []
            if now - since > self.policy.max_silence_s:
                reasons.append(f"no successful step for {now - since:.0f}s")
            if self._lag is not None and self._lag > self.policy.max_lag_epochs:
                reasons.append(f"{self._lag} ended epochs unattested")
            body = {
                "status": "ok" if not reasons else "unhealthy",
                "reasons": reasons,
                "lastAttestedEpoch": self._epochs[0] if self._epochs else None,
                "currentEpoch": self._epochs[1] if self._epochs else None,
                "lagEpochs": self._lag,
                "lastSuccessAgeSeconds": None
                if self._last_success_at is None
                else round(now - self._last_success_at, 1),
                "consecutiveFailures": self._consecutive_failures,
                "lastError": self._last_error,
                "signers": self._signers,
                "transmitter": self._transmitter,
            }
        return not reasons, body


class MetricsServer:
    """Serves /metrics and /health on a background thread."""

    def __init__(self, metrics: OracleMetrics, host: str, port: int) -> None:
        handler = _handler(metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oracle-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health and metrics on http://%s:%d", *self._server.server_address[:2])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: OracleMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif self.path == "/health":
                ok, body = metrics.health()
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

    return Handler
