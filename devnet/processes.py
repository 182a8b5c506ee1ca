"""Child processes of the demo: started in order, stopped in reverse, logs under .run/logs.

A child that exits while the world runs is restarted with backoff (1 s, 2 s, 4 s, …
up to 30 s; back to 1 s once it has stayed up a minute), and the supervisor says
so on its console and in the child's log. Only children marked ``restart=False``
(the chain: an in-memory anvil restarted is another, empty chain) stop the world.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from gpucap.logs import json_line

RESTART_FIRST_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
RESTART_STABLE_S = 60.0  # up this long: the next crash starts the backoff afresh


def http_answers(url: str) -> bool:
    """Ready-check of an HTTP child: any answer counts (/health says 503 while a part is
    still starting, and may take a few seconds while it pings the worker)."""
    try:
        requests.get(url, timeout=5)
        return True
    except requests.RequestException:
        return False


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
    restart: bool = True
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0
    started_at: float = 0.0
    restart_due: float | None = None  # monotonic time of the scheduled restart

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``ready`` says so (ProcessFailed if the child exits or times out first)."""
        assert self.popen is not None
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

    def spawn(self) -> None:
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
        self.started_at = time.monotonic()

    def note(self, line: str) -> None:
        """A supervisor line in the child's own log, between its output (a JSON line
        when the child writes JSON lines: GPUCAP_LOG_FORMAT=json)."""
        if self.env.get("GPUCAP_LOG_FORMAT") == "json":
            text = json_line("gpucap.supervisor", line)
        else:
            text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [supervisor] {line}"
        with open(self.log_path, "a") as log:
            log.write(text + "\n")

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

    def start_together(self, procs: list[ManagedProcess], timeout: float = 60.0) -> None:
        """Spawn all of ``procs``, then wait until each is ready: for children that do
        not need each other to start (each loads its own interpreter and libraries, a
        few seconds apiece), but may need each other to say they are ready."""
        for proc in procs:
            self._procs.append(proc)
            proc.spawn()
        for proc in procs:
            proc.wait_ready(timeout)

    def supervise(self, say: Callable[[str], None]) -> None:
        """One look at the children: schedule a restart for each that exited, perform
        those that are due. Raises ProcessFailed for a child that must not be restarted."""
        now = time.monotonic()
        for proc in self._procs:
            if proc.alive():
                continue
            if not proc.restart:
                raise ProcessFailed(proc.failure_report() + "\n(it cannot be restarted)")
            if proc.restart_due is None:
                if now - proc.started_at >= RESTART_STABLE_S:
                    proc.restarts = 0
                delay = min(RESTART_FIRST_DELAY_S * 2**proc.restarts, RESTART_MAX_DELAY_S)
                code = proc.popen.returncode if proc.popen is not None else None
                line = f"{proc.name} exited with code {code}; restarting in {delay:.0f} s"
                say(line + f" (see {proc.log_path})")
                proc.note(line)
                proc.restart_due = now + delay
            elif now >= proc.restart_due:
                _kill_group(proc)  # what the dead child left behind (e.g. pool processes)
                proc.restarts += 1
                proc.restart_due = None
                proc.spawn()
                assert proc.popen is not None
                line = f"{proc.name} restarted (restart {proc.restarts}, pid {proc.popen.pid})"
                say(line)
                proc.note(line)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()


def _kill_group(proc: ManagedProcess) -> None:
    if proc.popen is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.popen.pid, signal.SIGKILL)
