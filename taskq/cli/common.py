"""What the subcommands share: opening the database, errors, output."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import psycopg
import psycopg_pool

from taskq.config import database_url, describe_target
from taskq.db import Database
from taskq.errors import TaskqError
from taskq.types import Progress, Task


class CliError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def die(message: str, status: int = 1) -> NoReturn:
    raise CliError(message, status)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """One line per error, never a traceback; database passwords never shown."""
    try:
        yield
    except CliError:
        raise
    except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as e:
        url = database_url()
        where = describe_target(url) if url else "the embedded PostgreSQL"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, psycopg_pool.PoolTimeout):
            first = "no connection could be made in time"
        raise CliError(f"cannot reach the database at {where}: {first}") from None
    except (TaskqError, ValueError, TypeError, LookupError) as e:
        raise CliError(str(e) or type(e).__name__) from None


def open_db(
    args: argparse.Namespace, *, pool_size: int = 4, timeout: float = 10.0, check: bool = True
) -> Database:
    """A pool on the configured database, after one direct connection attempt so an
    unreachable server is reported at once with its reason (raises OperationalError)."""
    import logging

    from taskq.embedded import embedded_url

    # The pool retries in the background and would log every attempt: commands report
    # an outage themselves, once.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    url = database_url() or embedded_url()
    if check:
        psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True).close()
    return Database(url, getattr(args, "schema", None), max_size=pool_size, timeout=timeout)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def duration(text: str) -> dt.timedelta:
    """'90s', '15m', '12h', '7d' or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return dt.timedelta(seconds=float(t[:-1]) * units[t[-1]])
        return dt.timedelta(seconds=float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 15m, 12h or 7d, got {text!r}"
        ) from None


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Task):
        d = {f: getattr(value, f) for f in value.__dataclass_fields__ if f != "lease"}
        return to_jsonable(d)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def print_json(value: Any) -> None:
    json.dump(to_jsonable(value), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip()]
    for r in cells:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def bar(fraction: float | None, width: int = 20) -> str:
    if fraction is None:
        return "[" + " " * width + "]"
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction * 100:3.0f}%"


def progress_text(value: Any) -> str:
    p = Progress.from_json(value)
    if p is not None:
        parts = [bar(p.fraction())]
        if p.step is not None and p.steps:
            parts.append(f"step {p.step}/{p.steps}")
        if p.status:
            parts.append(p.status)
        return " ".join(parts)
    if value is None:
        return ""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def short_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
