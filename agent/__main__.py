"""``python -m agent run``: the node agent's command line.

Settings come from ``GPUCAP_AGENT_*`` environment variables (agent/config.py).
"""

from __future__ import annotations

import logging
import signal
import threading

import typer
from eth_account import Account

from agent.config import AgentConfigError, AgentSettings
from agent.gpus import GpuReader, NvmlGpus, SimulatedGpus
from agent.service import AgentServer, AgentService
from gpucap.logs import LogFormatOption, configure_logging
from oracle.__main__ import new_keystore
from oracle.collectors.base import CollectorUnavailable

app = typer.Typer(add_completion=False, help="gpucap node agent")
log = logging.getLogger("gpucap.agent")
# Same encrypted keystore format as the oracle's key.
app.command("new-keystore", help="Create a node key in an encrypted keystore file.")(new_keystore)


@app.command()
def run(
    log_level: str = typer.Option("INFO", envvar="GPUCAP_LOG_LEVEL", help="Python logging level."),
    log_format: LogFormatOption = "text",
) -> None:
    """Serve signed samples and answer challenges until SIGTERM or SIGINT."""
    configure_logging(level=log_level, fmt=log_format)
    settings = AgentSettings()
    try:
        key = settings.private_key()
        gpus: GpuReader
        if settings.source == "nvml":
            gpus = NvmlGpus()
        else:
            gpus = SimulatedGpus(
                settings.node_id,
                settings.gpu_count,
                settings.reference_power_w,
                settings.fleet_seed,
                [u.strip() for u in settings.gpu_uuids.split(",") if u.strip()] or None,
            )
    except (AgentConfigError, CollectorUnavailable) as exc:
        log.error("cannot start: %s", exc)
        raise typer.Exit(2) from None
    service = AgentService(
        settings.node_id,
        settings.chain_id,
        key,
        gpus,
        settings.behaviour,
        settings.throttle_seconds,
    )
    server = AgentServer(service, settings.host, settings.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info(
        "agent for node %d (key %s, %d GPU(s), %s, %s) listening on %s:%d",
        settings.node_id,
        Account.from_key(key).address,
        len(gpus.uuids),
        service.backend,
        settings.behaviour,
        settings.host,
        server.port,
    )
    stop.wait()
    server.stop()
    log.info("agent stopped")


if __name__ == "__main__":
    app()
