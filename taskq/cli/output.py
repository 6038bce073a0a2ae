"""What the commands print: one time format, JSON, tables and progress bars.

Text meant for a terminal goes through ``taskq.core.text.printable``: a task's queue,
type, title, error or progress message cannot write escape sequences to it. JSON is
exact (it escapes control characters itself).

Times are ISO 8601 with their offset everywhere, in UTC (``2026-03-01T12:00:05+00:00``)
or, with ``--local``, in the machine's time zone (``2026-03-01T13:00:05+01:00``):
tables to the second, JSON to the microsecond.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

from taskq.core.text import printable
from taskq.core.types import Progress, Task

# Task fields that only the worker that claimed a task can use.
_PRIVATE_FIELDS = frozenset({"lease"})


def format_time(value: dt.datetime | None, local: bool = False, *, precise: bool = False) -> str:
    """``value`` as ISO 8601 with its offset: UTC, or this machine's zone if ``local``."""
    if value is None:
        return ""
    moved = value.astimezone() if local else value.astimezone(dt.UTC)
    return moved.isoformat(timespec="microseconds" if precise else "seconds")


def to_jsonable(value: Any, local: bool = False) -> Any:
    """``value`` as plain JSON values: tasks and schedules as objects, times as ISO 8601
    (see ``format_time``), statuses as their strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        if isinstance(value, Task):
            names = [n for n in names if n not in _PRIVATE_FIELDS]
        return {n: to_jsonable(getattr(value, n), local) for n in names}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, local) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, local) for v in value]
    if isinstance(value, dt.datetime):
        return format_time(value, local, precise=True)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def print_json(value: Any, local: bool = False, *, one_line: bool = False) -> None:
    """``value`` as JSON on stdout: indented, or on one line (a stream of snapshots)."""
    text = json.dumps(to_jsonable(value, local), indent=None if one_line else 2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under headers, in columns; every cell escaped (``printable``)."""
    cells = [[("" if c is None else printable(str(c))) for c in r] for r in rows]
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


def progress_text(task: Task) -> str:
    """A task's progress on one line: a bar (full once it finished) with its step and
    status, or its progress JSON when that is not shaped like a ``Progress``."""
    value = task.progress
    p = Progress.from_json(value)
    fraction = task.fraction()
    if p is not None or fraction is not None:
        parts = [bar(fraction)]
        if p is None:
            return parts[0]
        if p.step is not None and p.steps:
            parts.append(f"step {p.step}/{p.steps}")
        if p.status:
            parts.append(printable(p.status))
        return " ".join(parts)
    if value is None:
        return ""
    text = printable(json.dumps(value, default=str))
    return text if len(text) <= 60 else text[:57] + "..."


def plural(n: int, word: str = "task") -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
