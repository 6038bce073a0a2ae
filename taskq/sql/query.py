"""What the SQL layer hands to the executors: a ``Query`` is one statement to run,
its parameters, and how to read what it returns. Building one does no I/O; the
synchronous and asynchronous executors (``taskq.db``) run the same Query the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, LiteralString, TypeVar

from taskq.core import decode
from taskq.core.types import Task

R = TypeVar("R")
Rows = list[tuple[Any, ...]]
Reader = Callable[[Sequence[str], Rows], R]


@dataclass(frozen=True, slots=True)
class Query(Generic[R]):
    """One statement: ``text`` with ``params``; ``read(column names, rows)`` makes the
    result. ``about`` names what the statement concerns (a queue), for error messages."""

    name: str
    text: LiteralString
    params: Mapping[str, Any]
    read: Callable[[Sequence[str], Rows], R]
    about: Mapping[str, str] = field(default_factory=dict)


F = TypeVar("F", bound=Callable[..., Query[Any]])


def statement(fn: F) -> F:
    """Marks the one function that exposes the SQL statement of the same name (a test
    checks that every statement has exactly one, and every marked function a statement)."""
    fn.__statement__ = True  # type: ignore[attr-defined]
    return fn


# ---- readers ---------------------------------------------------------------------------


def read_tasks(names: Sequence[str], rows: Rows) -> list[Task]:
    return decode.tasks(names, rows)


def read_task(names: Sequence[str], rows: Rows) -> Task | None:
    return decode.tasks(names, rows[:1])[0] if rows else None


def read_dicts(names: Sequence[str], rows: Rows) -> list[dict[str, Any]]:
    return decode.dicts(names, rows)


def read_ids(names: Sequence[str], rows: Rows) -> set[str]:
    """The first column of every row, as text (ids)."""
    return {str(r[0]) for r in rows}


def read_count(names: Sequence[str], rows: Rows) -> int:
    """How many rows came back."""
    return len(rows)


def read_nothing(names: Sequence[str], rows: Rows) -> None:
    return None


def read_scalar(names: Sequence[str], rows: Rows) -> Any:
    """The first column of the first row (None when there is no row)."""
    return rows[0][0] if rows else None


def read_column(names: Sequence[str], rows: Rows) -> list[Any]:
    return [r[0] for r in rows]
