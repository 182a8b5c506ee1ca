"""The daemon's lifecycle: startup → a reporting step every tick → shutdown.

Modelled on pymaker's lifecycle: one testable step (``Reporter.report_once``)
inside a loop that owns only timing, error policy and signals. SIGTERM/SIGINT
set an event; the current step finishes (a transaction in flight is waited for)
and the loop exits without starting another. A ChainReset (the chain is not the
one the oracle's state belongs to, or the deployment is gone) also ends the loop,
with the reason logged and ``exit_code`` 2: retrying cannot help there.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import redis
import requests
from web3.exceptions import ProviderConnectionError, TimeExhausted

from oracle.errors import ChainMovedBack, ChainReset, OracleError
from oracle.health import OracleMetrics
from oracle.reporter import Reporter, ReportOutcome, ReportStatus

log = logging.getLogger("gpucap.oracle")

# Failures of the node, the quorum board's Redis or the network: worth retrying as they are.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    ProviderConnectionError,
    TimeExhausted,
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,  # socket timeouts and resets below any client library (TimeoutError is one)
)

# Successive failed steps wait retry_delay, 2×, 4×, … up to this (or retry_delay if longer).
MAX_BACKOFF_SECONDS = 30.0


class Daemon:
    def __init__(
        self,
        reporter: Reporter,
        poll_interval: float,
        retry_delay: float,
        metrics: OracleMetrics | None = None,
    ) -> None:
        self.reporter = reporter
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.metrics = metrics or OracleMetrics()
        self.metrics.set_signers(reporter.signer_addresses, reporter.transmitter.address)
        self._stop = threading.Event()
        self._failures = 0  # consecutive failed steps, for the backoff
        self.exit_code = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: stopping after the current step", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> None:
        log.info(
            "oracle daemon started: hub %s on chain %d, transmitter %s",
            self.reporter.chain.hub.address,
            self.reporter.chain.deployment.chain_id,
            self.reporter.transmitter.address,
        )
        while not self._stop.is_set():
            self._stop.wait(self._tick())
        log.info("oracle daemon stopped")

    def _tick(self) -> float:
        """One step; returns how long to wait before the next one."""
        try:
            outcome = self.reporter.report_once()
        except ChainReset as exc:
            log.error("stopping: %s", exc)
            self.metrics.observe_failure(type(exc).__name__, str(exc))
            self.exit_code = 2
            self.stop()
            return 0.0
        except ChainMovedBack as exc:
            log.warning("%s", exc)
            self.metrics.observe_failure(type(exc).__name__, str(exc))
            return self._backoff()
        except OracleError as exc:
            log.error("%s", exc)
            self.metrics.observe_failure(type(exc).__name__, str(exc))
            return self._backoff()
        except redis.RedisError as exc:
            log.warning("quorum board unreachable (%s: %s); retrying", type(exc).__name__, exc)
            self.metrics.observe_failure("BoardUnreachable", f"{type(exc).__name__}: {exc}")
            return self._backoff()
        except TRANSIENT_ERRORS as exc:
            log.warning("chain unreachable (%s: %s); retrying", type(exc).__name__, exc)
            self.metrics.observe_failure("ChainUnreachable", f"{type(exc).__name__}: {exc}")
            return self._backoff()
        except Exception as exc:  # noqa: BLE001 - a long-running daemon never dies of one step
            # Unforeseen: logged with its traceback, retried like the rest; the step is
            # idempotent (progress is on-chain and in the state store), so a retry is safe.
            log.exception("step failed unexpectedly (%s); retrying", type(exc).__name__)
            self.metrics.observe_failure(type(exc).__name__, str(exc))
            return self._backoff()
        finally:
            self._observe_chain()
        if self._failures:
            log.info("step succeeded again after %d failed attempt(s)", self._failures)
            self._failures = 0
        self._observe(outcome)
        if outcome.status in (ReportStatus.ATTESTED, ReportStatus.ALREADY_ATTESTED):
            return 0.0  # more epochs may have ended meanwhile: catch up at once, in order
        self._recover_proofs()  # idle: fill this folder's holes (epochs missed while down)
        return self.poll_interval

    def _recover_proofs(self) -> None:
        """Proofs files for attested epochs missed while down; a failure here is logged
        and retried on a later idle step, it never holds up attesting."""
        try:
            self.reporter.recover_missed_proofs()
        except (OracleError, redis.RedisError, *TRANSIENT_ERRORS) as exc:
            log.warning("proofs recovery postponed (%s: %s)", type(exc).__name__, exc)
        except Exception as exc:  # noqa: BLE001 - same policy as a step: log, go on
            log.exception("proofs recovery failed unexpectedly (%s)", type(exc).__name__)

    def _backoff(self) -> float:
        """The pause after a failed step: doubling per consecutive failure, bounded."""
        self._failures += 1
        delay = self.retry_delay * 2 ** min(self._failures - 1, 16)
        return min(delay, max(self.retry_delay, MAX_BACKOFF_SECONDS))

    def _observe_chain(self) -> None:
        state = self.reporter.last_hub_state
        if state is not None:
            self.metrics.observe_chain(state.last_attested_epoch, state.current_epoch)

    def _observe(self, outcome: ReportOutcome) -> None:
        posted = outcome.epoch if outcome.status is ReportStatus.ATTESTED else None
        self.metrics.observe_success(outcome.status.value, posted, outcome.excluded_nodes)
        state = self.reporter.last_hub_state
        if (
            state is not None
            and outcome.epoch is not None
            and outcome.status
            in (
                ReportStatus.ATTESTED,
                ReportStatus.ALREADY_ATTESTED,
            )
        ):
            last = max(state.last_attested_epoch, outcome.epoch)
            self.metrics.observe_chain(last, state.current_epoch)
