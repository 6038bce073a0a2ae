"""Log formatting for taskq's processes: human-readable lines or one JSON object each.

Task state changes are logged on ``taskq.events``, one line each, with the task's id,
queue, type, attempt and the status it went to (and duration and error where they
apply): ``task started`` (running), ``task finished``, ``task failed`` (failed for
good), ``task failed; will retry`` (back to waiting), ``task released`` (back to
waiting at shutdown), ``task rescued`` (taken back from a vanished worker),
``task dropped`` (its worker stopped working on it: cancelled or lease lost).

Specs are never logged. Database URLs are logged only through
``config.describe_target`` (no password), and as a safety net both formatters mask
any ``scheme://user:password@`` or ``password=...`` that reaches a log line (an
exception message that quotes a connection string, say).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator

_FIELDS = (
    "task_id", "queue", "task_type", "attempt", "max_attempts", "status", "duration", "error",
)  # fmt: skip

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^@\s/]*@")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(text: str) -> str:
    """``text`` with passwords in connection strings replaced by ``***``."""
    if "@" not in text and "password" not in text.lower():  # the common case: no match
        return text
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the task fields present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for f in _FIELDS:
            value = getattr(record, f, None)
            if value is not None:
                out[f] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


_NEEDS_QUOTES = re.compile(r"[\s\"'=\\]")


def _text_value(value: object) -> str:
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``: the message's line breaks are
    escaped and values with spaces or quotes are quoted, so a task event stays on one
    line (a traceback, where there is one, follows on the next lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extra = [
            f"{f}={_text_value(v)}" for f in _FIELDS if (v := getattr(record, f, None)) is not None
        ]
        if extra:
            line = f"{line} {' '.join(extra)}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return redact(line)


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr through a 64 KiB buffer flushed every FLUSH_INTERVAL seconds,
    at once for warnings and errors, and at exit (``logging.shutdown``).

    A busy worker logs two lines per task; a write system call per line cost about
    half the drain rate. Lines are at most FLUSH_INTERVAL late.
    """

    FLUSH_INTERVAL = 0.2

    def __init__(self) -> None:
        stream = open(  # noqa: SIM115 - lives as long as the process
            sys.stderr.fileno(), "w", buffering=1 << 16, closefd=False,
            encoding="utf-8", errors="backslashreplace",
        )  # fmt: skip
        super().__init__(stream)
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="taskq-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            with self.lock if self.lock is not None else _nolock():
                self.stream.write(line)
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
        except Exception:
            self.handleError(record)

    def _flusher(self) -> None:
        while not self._stop.wait(self.FLUSH_INTERVAL):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


@contextlib.contextmanager
def _nolock() -> Iterator[None]:
    yield


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send taskq's logs to stderr in ``fmt`` ("text" or "json")."""
    import time

    handler = BufferedStderrHandler()
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Records need no caller, thread or process lookups (the logging HOWTO's
    # optimisations): a busy worker logs two lines per task.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
