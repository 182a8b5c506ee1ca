"""How every gpucap process logs: one place, so the API, the worker, beat, the oracle
daemons and the node agent write the same lines.

``GPUCAP_LOG_FORMAT``: ``text`` (default; ``time LEVEL logger: message``) or ``json``
(one JSON object per line: ``time`` in UTC, ``level``, ``logger``, ``message``,
``exception`` when there is one, and any ``extra=`` fields the code logs, such as
``action_id``), for a log shipper. ``GPUCAP_LOG_LEVEL``: the root level (INFO).

Everything else that would reach the log files goes through the same handler in JSON
mode: Python warnings (``logging.captureWarnings``), an exception that ends the process
or a thread, and what a library prints to stdout or stderr itself (Celery's shutdown
notice: each line becomes a record of ``gpucap.stdout`` / ``gpucap.stderr``), so a
shipper never meets a raw line between the objects.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Annotated, Any, TextIO

import typer

FORMATS = ("text", "json")
_MARK = "_gpucap_handler"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a LogRecord carries by itself; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}  # uvicorn's coloured twin


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        entry.update(_access_fields(record))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as fields: it logs (client, method, path, version, status)."""
    args = record.args
    if record.name != "uvicorn.access" or not isinstance(args, tuple) or len(args) != 5:
        return {}
    client, method, path, _version, status = args
    return {"client": client, "method": method, "path": path, "status": status}


def json_line(logger: str, message: str, level: int = logging.INFO) -> str:
    """``message`` as the JSON line a record of ``logger`` would be: for lines written into
    a process's log by another (the supervisor's notes in a child's log)."""
    record = logging.LogRecord(logger, level, "", 0, message, None, None)
    return JsonFormatter().format(record)


def log_format(value: str | None = None) -> str:
    """``value``, else $GPUCAP_LOG_FORMAT, else ``text``; ValueError if it is neither."""
    chosen = (value or os.environ.get("GPUCAP_LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"GPUCAP_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def _checked_format(value: str) -> str:
    try:
        return log_format(value)
    except ValueError as exc:  # typer names the option (--log-format) in its usage error
        raise typer.BadParameter(str(exc)) from None


# Every command line's ``--log-format`` (the API, the worker, beat, the oracle, the agent,
# ``devnet serve``): $GPUCAP_LOG_FORMAT by default, an unknown format a usage error (2).
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="GPUCAP_LOG_FORMAT",
        callback=_checked_format,
        help=f"log lines: {' or '.join(FORMATS)} (json: one object per line)",
    ),
]


def configure_logging(level: str | int | None = None, fmt: str | None = None) -> str:
    """Send the root logger's records to stderr in ``fmt`` (see ``log_format``) at
    ``level`` (else $GPUCAP_LOG_LEVEL, else INFO), replacing the handler an earlier call
    installed: calling it again (the worker does, when Celery sets up logging) leaves
    one. Returns the format chosen."""
    global _json_handler
    chosen = log_format(fmt)
    level = level or os.environ.get("GPUCAP_LOG_LEVEL") or "INFO"
    if chosen == "json":
        handler = _json_handler = logging.StreamHandler(_capture_output())
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(_stderr or sys.stderr)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(previous)  # ours from an earlier call; others (pytest's) stay
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)
    if chosen == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    return chosen


# The process's own stderr, once its file descriptors 1 and 2 feed _pump (JSON mode),
# and the handler writing JSON lines to it.
_stderr: TextIO | None = None
_json_handler: logging.StreamHandler[TextIO] | None = None
_OUTPUTS = ((1, "gpucap.stdout", logging.INFO), (2, "gpucap.stderr", logging.WARNING))


def _capture_output() -> TextIO:
    """Point file descriptors 1 and 2 at pipes whose lines are logged, and return a
    stream on the original stderr for the handler (which must not write into its own
    pipe). Once per process; a child inherits the pipes, so its lines are logged too."""
    global _stderr
    if _stderr is not None:
        return _stderr
    sys.stdout.flush()
    sys.stderr.flush()
    _stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    restore = {fd: os.dup(fd) for fd in (1, 2)}
    pumps = []
    for fd, name, level in _OUTPUTS:
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        pump = threading.Thread(target=_pump, args=(read_end, name, level), daemon=True)
        pump.start()
        pumps.append(pump)

    def _drain() -> None:
        # At exit: close the pipes' write ends here (a child may hold its own) and let
        # the pumps log what is left in them.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        for fd, saved in restore.items():
            os.dup2(saved, fd)
        for pump in pumps:
            pump.join(timeout=1.0)

    atexit.register(_drain)
    return _stderr


def _pump(read_end: int, logger: str, level: int) -> None:
    """Each line written into the pipe, logged; a line that already is a JSON record (a
    child process that logs JSON, such as one of uvicorn's serving processes) is passed
    on as it is, not wrapped in another."""
    target = logging.getLogger(logger)
    with open(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            handler = _json_handler
            if handler is not None and _is_json_record(line):
                handler.acquire()
                try:
                    handler.stream.write(line + "\n")
                    handler.flush()
                finally:
                    handler.release()
            else:
                target.log(level, line)


def _is_json_record(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys()


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("gpucap").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("gpucap").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread is not None else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
