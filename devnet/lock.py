"""One demo per checkout: a second `make demo` says who holds the world."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any


class DemoAlreadyRunning(RuntimeError):
    def __init__(self, info: dict[str, Any]):
        self.info = info
        pid = info.get("pid", "?")
        since = info.get("started_at", "?")
        api = info.get("api_url", "?")
        super().__init__(
            f"a gpucap demo is already running in this checkout "
            f"(pid {pid}, since {since}, API {api}).\n"
            f"Use that one, or stop it with Ctrl-C in its terminal (or `kill {pid}`) "
            "and run `make demo` again."
        )


class DemoLock:
    """An flock on .run/demo.lock, held for the life of the demo process.

    The kernel drops the lock when the process dies however it dies, so a
    crashed demo never leaves a stale lock behind.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self, info: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the process lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                held = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                held = {}
            fh.close()
            raise DemoAlreadyRunning(held) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "started_at": time.strftime("%H:%M:%S"), **info}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
