"""`python -m devnet serve`: the production profile. gpucap's processes against a chain,
a database and a Redis the operator gives, with keys from encrypted keystores only.

What `make demo` runs, less what only a dev world has: no anvil, no deployment, no
seeding, no embedded Redis or SQLite, no dev accounts. Order: checks (below) →
database migrations → Celery worker process(es) → beat (exactly one) → API → the
oracle daemons given (``--oracle-keystore``, one daemon each, in quorum over Redis).
Every child runs with ``GPUCAP_ENVIRONMENT=production``, so each also refuses by itself
what this refuses; a child that exits is restarted with backoff (devnet/processes.py);
SIGTERM or Ctrl-C stops them all, newest first. Each child logs to
``<run-dir>/logs/<name>.log``; ``--log-format json`` makes every line one JSON object.

Nothing starts unless, first: the relayer's keystore (and each oracle's) opens with its
password and holds no anvil dev key; no plain key is in the environment
(``GPUCAP_RELAYER_KEY``, ``GPUCAP_ORACLE_KEYS``); the manifest reads; and the node at
``--rpc-url`` is the manifest's chain. A refusal exits with status 2 and says why.

Other ``GPUCAP_*`` settings in the environment (backend/config.py, oracle/config.py:
confirmations, the oracle's telemetry source, timeouts) reach the children as they are.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import requests
import typer
from pydantic import ValidationError

from devnet.processes import ManagedProcess, ProcessFailed, ProcessGroup, http_answers
from gpucap import devchain
from gpucap.deployment import Deployment, ManifestError
from gpucap.logs import LogFormatOption, configure_logging

ROOT = devchain.REPO_ROOT
PLAIN_KEYS = ("GPUCAP_RELAYER_KEY", "GPUCAP_ORACLE_KEYS")
# What the oracles measure; simulated only for a test, and said so.
ORACLE_SOURCES = ("dcgm", "nvml", "agent", "simulated")
log = logging.getLogger("gpucap.serve")
app = typer.Typer(add_completion=False, help=__doc__)


class Refused(Exception):
    """The stack cannot start as configured; the message says why."""


class Stop(Exception):
    """Raised from the signal handler to unwind into the shutdown path."""


@dataclass(frozen=True)
class Oracle:
    keystore: Path
    password_file: Path | None


@app.command()
def serve(
    rpc_url: Annotated[str, typer.Option(envvar="GPUCAP_RPC_URL", help="the chain's node")],
    database_url: Annotated[
        str,
        typer.Option(envvar="GPUCAP_DATABASE_URL", help="postgresql+psycopg://user:pw@host/db"),
    ],
    redis_url: Annotated[
        str, typer.Option(envvar="GPUCAP_REDIS_URL", help="redis://host:6379/N (broker, locks)")
    ],
    manifest: Annotated[
        Path,
        typer.Option(envvar="GPUCAP_MANIFEST_PATH", help="written by scripts/deploy_to.py"),
    ],
    relayer_keystore: Annotated[
        Path,
        typer.Option(envvar="GPUCAP_RELAYER_KEYSTORE_PATH", help="the relayer's keystore"),
    ],
    relayer_password_file: Annotated[
        Path | None,
        typer.Option(
            envvar="GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE", help="the relayer keystore's password"
        ),
    ] = None,
    oracle_keystore: Annotated[
        list[Path] | None,
        typer.Option(help="run an oracle daemon with this keystore (repeat for each)"),
    ] = None,
    oracle_password_file: Annotated[
        list[Path] | None,
        typer.Option(help="its password file: one per --oracle-keystore, or one for all"),
    ] = None,
    oracle_quorum_redis_url: Annotated[
        str | None, typer.Option(help="where the oracles' signatures meet (default: --redis-url)")
    ] = None,
    oracle_metrics_port: Annotated[
        int, typer.Option(help="oracle n serves /health and /metrics on this port + n - 1")
    ] = 9101,
    api_host: Annotated[str, typer.Option(envvar="GPUCAP_API_HOST")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(envvar="GPUCAP_API_PORT")] = 8000,
    api_workers: Annotated[
        int, typer.Option(envvar="GPUCAP_API_WORKERS", min=1, help="API processes")
    ] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Celery worker processes")] = 1,
    worker_metrics_port: Annotated[
        int | None, typer.Option(help="worker n serves /metrics on this port + n - 1")
    ] = None,
    run_dir: Annotated[
        Path, typer.Option(help="logs, oracle state and proofs, beat's schedule")
    ] = ROOT / ".run" / "serve",
    log_format: LogFormatOption = "text",
) -> None:
    """Run gpucap's API, worker, beat and oracles against the given chain, database and Redis."""
    configure_logging(fmt=log_format)
    run_dir = run_dir.resolve()
    oracles = _pair_oracles(oracle_keystore or [], oracle_password_file or [])
    env = _child_env(
        rpc_url=rpc_url,
        database_url=database_url,
        redis_url=redis_url,
        manifest=manifest.resolve(),
        relayer_keystore=relayer_keystore.resolve(),
        relayer_password_file=relayer_password_file.resolve() if relayer_password_file else None,
        run_dir=run_dir,
        api=(api_host, api_port, api_workers),
        log_format=log_format,
        oracle_ports=[oracle_metrics_port + n for n in range(len(oracles))],
    )
    oracle_envs = [
        _oracle_env(
            env, n, oracle, oracle_quorum_redis_url or redis_url, oracle_metrics_port, len(oracles)
        )
        for n, oracle in enumerate(oracles, start=1)
    ]
    try:
        relayer = _preflight(env, oracle_envs)
    except Refused as exc:
        log.error("cannot start: %s", exc)
        raise typer.Exit(2) from None
    log.info("relayer %s on chain at %s; keys from keystores only", relayer, rpc_url)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    group = ProcessGroup()
    try:
        _run(group, env, oracle_envs, workers, worker_metrics_port, run_dir / "logs")
    except Stop:
        pass
    except ProcessFailed as exc:
        log.error("%s", exc)
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("stopping")
        group.stop_all()
        log.info("all processes stopped")


def _pair_oracles(keystores: list[Path], password_files: list[Path]) -> list[Oracle]:
    if password_files and len(password_files) not in (1, len(keystores)):
        raise typer.BadParameter(
            "give one --oracle-password-file per --oracle-keystore, or one for all"
        )
    files: list[Path | None] = list(password_files) if password_files else [None] * len(keystores)
    if len(files) == 1:
        files = files * len(keystores)
    return [
        Oracle(path.resolve(), file.resolve() if file else None)
        for path, file in zip(keystores, files, strict=True)
    ]


def _child_env(
    *,
    rpc_url: str,
    database_url: str,
    redis_url: str,
    manifest: Path,
    relayer_keystore: Path,
    relayer_password_file: Path | None,
    run_dir: Path,
    api: tuple[str, int, int],
    log_format: str,
    oracle_ports: list[int],
) -> dict[str, str]:
    """The environment every child starts from: the operator's, with this profile's
    settings on top."""
    env = dict(os.environ)
    host, port, api_workers = api
    env.update(
        {
            "GPUCAP_ENVIRONMENT": "production",
            "GPUCAP_RPC_URL": rpc_url,
            "GPUCAP_DATABASE_URL": database_url,
            "GPUCAP_REDIS_URL": redis_url,
            "GPUCAP_MANIFEST_PATH": str(manifest),
            "GPUCAP_RELAYER_KEYSTORE_PATH": str(relayer_keystore),
            "GPUCAP_RUN_DIR": str(run_dir),
            "GPUCAP_API_HOST": host,
            "GPUCAP_API_PORT": str(port),
            "GPUCAP_API_WORKERS": str(api_workers),
            "GPUCAP_LOG_FORMAT": log_format,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if relayer_password_file is not None:
        env["GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE"] = str(relayer_password_file)
    if oracle_ports:
        # The keepers read an epoch's proofs from the first of the oracles' folders whose
        # file verifies against the attested root; the API's /health asks each oracle's.
        folders = [str(run_dir / f"oracle-{n}" / "epochs") for n in range(1, len(oracle_ports) + 1)]
        env["GPUCAP_PROOFS_DIR"] = folders[0]
        env["GPUCAP_PROOFS_DIRS"] = json.dumps(folders[1:])
        env["GPUCAP_ORACLE_HEALTH_URLS"] = json.dumps(
            [f"http://127.0.0.1:{p}/health" for p in oracle_ports]
        )
    return env


def _oracle_env(
    env: dict[str, str],
    n: int,
    oracle: Oracle,
    quorum_redis_url: str,
    first_port: int,
    oracle_count: int,
) -> dict[str, str]:
    folder = Path(env["GPUCAP_RUN_DIR"]) / f"oracle-{n}"
    oracle_env = {
        **env,
        "GPUCAP_ORACLE_RPC_URL": env["GPUCAP_RPC_URL"],
        "GPUCAP_ORACLE_MANIFEST_PATH": env["GPUCAP_MANIFEST_PATH"],
        "GPUCAP_ORACLE_KEYSTORE_PATH": str(oracle.keystore),
        "GPUCAP_ORACLE_QUORUM_REDIS_URL": quorum_redis_url,
        "GPUCAP_ORACLE_PROOFS_DIR": str(folder / "epochs"),
        # The other oracles' folders: the cumulative counters' base, if ours lacks an epoch.
        "GPUCAP_ORACLE_PEER_PROOFS_DIRS": json.dumps(
            [
                str(folder.parent / f"oracle-{m}" / "epochs")
                for m in range(1, oracle_count + 1)
                if m != n
            ]
        ),
        "GPUCAP_ORACLE_STATE_PATH": str(folder / "state.sqlite3"),
        "GPUCAP_ORACLE_METRICS_PORT": str(first_port + n - 1),
    }
    if oracle.password_file is not None:
        oracle_env["GPUCAP_ORACLE_KEYSTORE_PASSWORD_FILE"] = str(oracle.password_file)
    return oracle_env


def _preflight(env: dict[str, str], oracle_envs: list[dict[str, str]]) -> str:
    """Everything that must hold before a child starts; the relayer's address. Raises
    Refused with the reason."""
    plain = [name for name in PLAIN_KEYS if env.get(name)]
    if plain:
        raise Refused(
            f"{', '.join(plain)} set: the production profile takes keys (and their "
            "passwords) from encrypted keystores and password files only; unset it"
        )
    keystore = env["GPUCAP_RELAYER_KEYSTORE_PATH"]
    passwords = ("GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE", "GPUCAP_RELAYER_KEYSTORE_PASSWORD")
    if not any(env.get(name) for name in passwords):
        raise Refused(
            f"the relayer keystore {keystore} is encrypted and no password was given: "
            "--relayer-password-file FILE (or $GPUCAP_RELAYER_KEYSTORE_PASSWORD_FILE)"
        )
    from eth_account import Account

    from backend.config import Settings, reasons
    from oracle.config import OracleSettings
    from oracle.errors import OracleConfigError

    try:
        with _environ(env):
            settings = Settings()
            relayer = Account.from_key(settings.relayer_private_key).address
    except ValidationError as exc:
        raise Refused(reasons(exc)) from None
    except ValueError as exc:  # ConfigError: the keystore cannot be opened, or a dev key
        raise Refused(str(exc)) from None
    if oracle_envs and env.get("GPUCAP_ORACLE_SOURCE") not in ORACLE_SOURCES:
        raise Refused(
            "set GPUCAP_ORACLE_SOURCE to what the oracles measure: dcgm, nvml or agent "
            "(simulated: a made-up fleet, for a test only)"
        )
    for n, oracle_env in enumerate(oracle_envs, start=1):
        try:
            with _environ(oracle_env):
                OracleSettings().private_keys()
        except ValidationError as exc:
            raise Refused(f"oracle {n}: {reasons(exc)}") from None
        except OracleConfigError as exc:
            raise Refused(f"oracle {n}: {exc}") from None
    try:
        deployment = Deployment.load(env["GPUCAP_MANIFEST_PATH"])
    except ManifestError as exc:
        raise Refused(str(exc)) from None
    chain_id = int(_rpc(env["GPUCAP_RPC_URL"], "eth_chainId", []), 16)
    if chain_id != deployment.chain_id:
        raise Refused(
            f"the node at {env['GPUCAP_RPC_URL']} is chain {chain_id}; the manifest "
            f"{deployment.path} is for chain {deployment.chain_id}"
        )
    if int(_rpc(env["GPUCAP_RPC_URL"], "eth_getBalance", [relayer, "latest"]), 16) == 0:
        log.warning("the relayer %s holds no ETH on chain %d: it cannot pay gas", relayer, chain_id)
    return str(relayer)


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside: the settings classes read it as a child will."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _rpc(url: str, method: str, params: list[object]) -> str:
    try:
        answer = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10
        ).json()
        return str(answer["result"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise Refused(f"no answer to {method} from the node at {url} ({exc})") from None


def _run(
    group: ProcessGroup,
    env: dict[str, str],
    oracle_envs: list[dict[str, str]],
    workers: int,
    worker_metrics_port: int | None,
    logs: Path,
) -> None:
    py = sys.executable
    logs.mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(
        [py, "-m", "backend", "migrate"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if migrate.returncode != 0:
        raise ProcessFailed(f"database migration failed:\n{migrate.stderr[-2000:]}")
    log.info("database at the migrations' head")
    for n in range(1, workers + 1):
        worker_env = dict(env)
        if worker_metrics_port is not None:
            worker_env["GPUCAP_WORKER_METRICS_PORT"] = str(worker_metrics_port + n - 1)
        name = "worker" if workers == 1 else f"worker-{n}"
        cmd = [py, "-m", "backend", "worker", "--no-beat"]
        group.start(ManagedProcess(name, cmd, worker_env, logs / f"{name}.log", cwd=ROOT))
    # Exactly one beat: the sweep, the indexer and the keepers are scheduled once.
    beat = [py, "-m", "backend", "beat"]
    group.start(ManagedProcess("beat", beat, env, logs / "beat.log", cwd=ROOT))
    api_url = f"http://{env['GPUCAP_API_HOST']}:{env['GPUCAP_API_PORT']}"
    group.start(
        ManagedProcess(
            "api",
            [py, "-m", "backend", "api"],
            env,
            logs / "api.log",
            lambda: http_answers(f"{api_url}/health"),
            cwd=ROOT,
        )
    )
    log.info("api %s, %d worker process(es) and beat running", api_url, workers)
    for n, oracle_env in enumerate(oracle_envs, start=1):
        group.start(
            ManagedProcess(
                f"oracle-{n}",
                [py, "-m", "oracle", "run"],
                oracle_env,
                logs / f"oracle-{n}.log",
                cwd=ROOT,
            )
        )
    if oracle_envs:
        log.info("%d oracle daemon(s) running", len(oracle_envs))
    log.info("gpucap is up: %s/health; logs in %s", api_url, logs)
    while True:
        group.supervise(lambda line: log.warning("supervisor: %s", line))
        time.sleep(0.5)
