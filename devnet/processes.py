"""Child processes of the demo: started in order, stopped in reverse, logs under .run/logs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ProcessFailed(RuntimeError):
    """A child exited or never became ready; the message points at its log."""


@dataclass
class ManagedProcess:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        # Own session: Ctrl-C in the terminal reaches the demo only, which then
        # stops children in order instead of all of them dying at once.
        self.popen = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if self.ready is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ProcessFailed(self.failure_report())
            if self.ready():
                return
            time.sleep(0.2)
        raise ProcessFailed(f"{self.name} was not ready after {timeout:.0f}s; see {self.log_path}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def failure_report(self) -> str:
        code = self.popen.returncode if self.popen else None
        tail = ""
        if self.log_path.exists():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        return f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{tail}"

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        except ProcessLookupError:
            pass


class ProcessGroup:
    """Processes started so far; ``stop_all`` ends them newest first."""

    def __init__(self) -> None:
        self._procs: list[ManagedProcess] = []

    def start(self, proc: ManagedProcess, timeout: float = 60.0) -> ManagedProcess:
        self._procs.append(proc)
        proc.start(timeout)
        return proc

    def dead(self) -> list[ManagedProcess]:
        return [p for p in self._procs if not p.alive()]

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
