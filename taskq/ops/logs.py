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
exception message that quotes a connection string, say). Both stamp records with ISO
8601 times in UTC (``2026-03-01T12:00:05.123Z``).

Where the logs go (``configure``) belongs to the application: a logging configuration
file, else whatever the application's own module set up on the root logger, else
taskq's buffered stderr handler (``setup``). ``JsonFormatter`` and ``TextFormatter``
can be named in a configuration file like any formatter.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import json
import logging
import logging.config
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from taskq.core.text import printable, printable_lines

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


def iso_time(record: logging.LogRecord) -> str:
    """The record's time as ISO 8601 in UTC, to the millisecond."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the task fields present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": iso_time(record),
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
        return json.dumps(text)  # escapes every control character
    return printable(text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``: the message's line breaks are
    escaped and values with spaces or quotes are quoted, so a task event stays on one
    line (a traceback, where there is one, follows on the next lines). Control and
    other non-printable characters anywhere in the line (``\x1b`` of an escape
    sequence a task's error carries) are escaped (``taskq.core.text.printable``), so
    a log tailed in a terminal cannot drive it."""

    DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
        *,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(fmt or self.DEFAULT_FORMAT, datefmt, style, validate, defaults=defaults)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return super().formatTime(record, datefmt) if datefmt else iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = printable(self.formatMessage(record))
        extra = [
            f"{f}={_text_value(v)}" for f in _FIELDS if (v := getattr(record, f, None)) is not None
        ]
        if extra:
            line = f"{line} {' '.join(extra)}"
        if record.exc_info:
            line = f"{line}\n{printable_lines(self.formatException(record.exc_info))}"
        if record.stack_info:
            line = f"{line}\n{printable_lines(self.formatStack(record.stack_info))}"
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
    """Send every log record to stderr in ``fmt`` ("text" or "json"), through the
    buffered handler, replacing the root logger's handlers."""
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


# ---- whose logging ---------------------------------------------------------------------

Mode = Literal["file", "application", "taskq"]


class LogConfigError(ValueError):
    """A logging configuration file that cannot be read or applied."""


def configure(
    *,
    fmt: str,
    level: str | None,
    default_level: str,
    config: LogConfig | None = None,
    handlers_before: Sequence[logging.Handler] = (),
) -> Mode:
    """Set up logging for a taskq process, leaving the application's own alone.

    - ``config`` (``read_config``) given: applied as the standard library applies it:
      "file".
    - Else, if the root logger has handlers it did not have before (``handlers_before``:
      the application's module, imported in between, configured logging): those stay
      and receive taskq's records as well as the application's: "application".
    - Else taskq's buffered stderr handler in ``fmt``, at ``level`` (default
      ``default_level``): "taskq".

    ``level`` given also sets the level of the ``taskq`` logger in the first two cases
    (the root logger's levels and handlers stay the application's). In the second,
    taskq's loggers are enabled again if the application's ``dictConfig`` or
    ``fileConfig`` disabled them as "existing loggers" (their default, which nobody
    means for loggers they never named).
    """
    if config is not None:
        config.apply()
        mode: Mode = "file"
    elif [h for h in logging.getLogger().handlers if h not in handlers_before]:
        mode = "application"
        _enable_taskq_loggers()
    else:
        setup(fmt, logging.getLevelNamesMapping()[level or default_level])
        return "taskq"
    if level is not None:
        logging.getLogger("taskq").setLevel(level)
    return mode


def _enable_taskq_loggers() -> None:
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "taskq" or name.startswith("taskq.")) and isinstance(logger, logging.Logger):
            logger.disabled = False


class LogConfig:
    """A logging configuration file, read and parsed (``read_config``), to apply later:
    a process can refuse a bad file before it imports the application."""

    def __init__(self, path: Path, kind: str, content: Any) -> None:
        self.path = path
        self.kind = kind
        self.content = content

    def apply(self) -> None:
        """Configure logging from it; LogConfigError when the standard library refuses."""
        try:
            if self.kind == "ini":
                logging.config.fileConfig(self.content, disable_existing_loggers=False)
            else:
                logging.config.dictConfig(self.content)
        except Exception as e:
            raise LogConfigError(
                f"{self.path}: not a usable logging configuration: {_reasons(e)}"
            ) from None


def read_config(path: str | Path) -> LogConfig:
    """Read a logging configuration file: a ``logging.config.dictConfig`` dictionary
    in JSON (``.json``) or YAML (``.yaml``, ``.yml``; needs PyYAML), or an INI file for
    ``logging.config.fileConfig`` (``.ini``, ``.cfg``, ``.conf``); another name is
    judged by its first character. Loggers that exist already (taskq's own) stay
    enabled unless the dictionary says ``"disable_existing_loggers": true``.
    LogConfigError when it cannot be read or parsed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LogConfigError(f"{p}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    kind = _kind(p, text)
    if kind == "ini":
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text, source=str(p))
        except configparser.Error as e:
            raise LogConfigError(f"{p}: not a valid INI file: {' '.join(str(e).split())}") from None
        return LogConfig(p, kind, parser)
    data = _dictionary(p, kind, text)
    data.setdefault("disable_existing_loggers", False)
    return LogConfig(p, kind, data)


def _kind(p: Path, text: str) -> str:
    suffix = p.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix in (".ini", ".cfg", ".conf"):
        return "ini"
    first = text.lstrip()[:1]
    return "json" if first == "{" else "ini" if first == "[" else "yaml"


def _dictionary(p: Path, kind: str, text: str) -> dict[str, Any]:
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LogConfigError(f"{p}: not valid JSON: {e}") from None
    else:
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError:
            raise LogConfigError(
                f"{p}: reading YAML needs PyYAML (pip install 'taskq[yaml]'); or write the "
                "configuration as JSON, or as an INI file for fileConfig"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            reason = " ".join(str(e).split())
            raise LogConfigError(f"{p}: not valid YAML: {reason}") from None
    if not isinstance(data, dict):
        raise LogConfigError(f"{p}: expected a dictionary (logging.config.dictConfig's schema)")
    return data


def _reasons(e: BaseException) -> str:
    """``e``'s message and those of its causes, on one line (dictConfig says "Unable to
    configure handler 'file'" and keeps why in the cause)."""
    parts: list[str] = []
    seen: BaseException | None = e
    while seen is not None and len(parts) < 4:
        text = " ".join(str(seen).split()) or type(seen).__name__
        if isinstance(seen, KeyError):
            text = f"missing {text}"
        if text not in parts:
            parts.append(text)
        seen = seen.__cause__ or seen.__context__
    return ": ".join(parts)
