"""``python -m oracle run [--once]``: the oracle daemon's command line.

Settings come from ``GPUCAP_ORACLE_*`` environment variables (oracle/config.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account

from gpucap import keystore
from gpucap.deployment import ManifestError
from gpucap.logs import LogFormatOption, configure_logging
from oracle.collectors.agent import AgentCollector
from oracle.collectors.base import CollectorUnavailable
from oracle.config import OracleSettings
from oracle.daemon import MAX_BACKOFF_SECONDS, TRANSIENT_ERRORS, Daemon
from oracle.errors import OracleError
from oracle.health import HealthPolicy, MetricsServer, OracleMetrics
from oracle.reporter import build_reporter
from oracle.sources import build_source

app = typer.Typer(add_completion=False, help="gpucap oracle daemon")
log = logging.getLogger("gpucap.oracle")


@app.callback()
def main() -> None:
    """Measure GPU nodes and attest each epoch on OracleHub."""


@app.command()
def run(
    once: bool = typer.Option(False, "--once", help="Attest at most one epoch, then exit."),
    log_level: str = typer.Option("INFO", envvar="GPUCAP_LOG_LEVEL", help="Python logging level."),
    log_format: LogFormatOption = "text",
) -> None:
    """Run the daemon: every epoch, attest the next ended epoch not yet attested."""
    configure_logging(level=log_level, fmt=log_format)
    settings = OracleSettings()
    delay = max(settings.retry_delay_seconds, 1.0)
    while True:
        try:
            source, sampler = build_source(settings)
            reporter = build_reporter(settings, source)
            break
        except (ManifestError, OracleError, CollectorUnavailable) as exc:
            log.error("cannot start: %s", exc)
            raise typer.Exit(2) from None
        except TRANSIENT_ERRORS as exc:
            if once:
                log.error("cannot start: node at %s unreachable (%s)", settings.rpc_url, exc)
                raise typer.Exit(2) from None
            # A daemon outlives a node that is down or restarting: wait for it (SIGTERM ends).
            log.warning(
                "cannot start yet: node at %s unreachable (%s); retrying in %.0fs",
                settings.rpc_url,
                exc,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    server: MetricsServer | None = None
    if sampler is not None:
        sampler.start()
        log.info("sampling %s every %ss", settings.source, settings.sample_interval_seconds)
    try:
        if once:
            try:
                outcome = reporter.report_once()
            except OracleError as exc:
                log.error("%s", exc)
                raise typer.Exit(1) from None
            log.info("report_once: %s (epoch %s)", outcome.status.value, outcome.epoch)
            return
        metrics = OracleMetrics(
            HealthPolicy(settings.health_max_silence_seconds, settings.health_max_lag_epochs)
        )
        collector = sampler.collector if sampler is not None else None
        if isinstance(collector, AgentCollector) and collector.challenger is not None:
            collector.challenger.on_verdict = metrics.observe_challenge
        if settings.metrics_port is not None:
            server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
            server.start()
        daemon = Daemon(
            reporter, settings.poll_interval_seconds, settings.retry_delay_seconds, metrics
        )
        daemon.install_signal_handlers()
        daemon.run()
        if daemon.exit_code:
            raise typer.Exit(daemon.exit_code)
    finally:
        if server is not None:
            server.stop()
        if sampler is not None:
            sampler.stop()


@app.command("new-keystore")
def new_keystore(
    path: Annotated[Path, typer.Argument(help="Keystore file to create (never overwritten).")],
    password_file: Annotated[Path, typer.Option(help="File holding the keystore password.")],
    iterations: int | None = typer.Option(None, help="KDF iterations (default: eth-account's)."),
) -> None:
    """Create a new oracle key in an encrypted keystore file and print its address."""
    if path.exists():
        typer.echo(f"{path} already exists; not overwriting a key", err=True)
        raise typer.Exit(1)
    password = password_file.read_text().removesuffix("\n")
    if not password:
        typer.echo("the password file is empty", err=True)
        raise typer.Exit(1)
    address = keystore.write(path, Account.create().key, password, iterations)
    typer.echo(f"created {path} for oracle {address}")


if __name__ == "__main__":
    app()
