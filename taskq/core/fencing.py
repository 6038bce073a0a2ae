"""Claims and their fences, without I/O: which task (and which claim of it) a write
names, what to store as an error, and what a guarded write that matched no row means.

A claim's ``lease`` (a random token stamped by the claim) fences the claimer's later
writes: they change the row only ``WHERE status = 'running' AND lease = <token>``. When
such a write matches nothing, the row as it is now (``diagnose``) says why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from taskq.core.defaults import MAX_ERROR_LENGTH
from taskq.core.errors import (
    LeaseLost,
    TaskCancelled,
    TaskFinished,
    TaskNotFound,
    TaskNotRunning,
    TaskqError,
)
from taskq.core.types import Task

TaskRef = Task | str
"""A claimed Task (writes are fenced to that claim) or a task id (any current claim)."""


def task_ref(task: TaskRef) -> tuple[str, str | None]:
    """The canonical id and the lease (None for a bare id) of ``task``.

    An id is normalised to PostgreSQL's text form, so the rows a statement returns
    match it; one that is not a UUID at all names no task (TaskNotFound).
    """
    if isinstance(task, Task):
        return task.id, task.lease
    if not isinstance(task, str):
        raise TypeError(f"expected a Task or a task id string, got {type(task).__name__}")
    return parse_id(task), None


def parse_id(value: object, what: str = "task") -> str:
    """``value`` (a Task or an id string) as a canonical UUID string; an id that is not
    a UUID names nothing: TaskNotFound for tasks, TaskqError for chains and groups."""
    if isinstance(value, Task):
        return value.id
    if not isinstance(value, str):
        raise TypeError(f"a {what} id must be a string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        if what == "task":
            raise TaskNotFound(value) from None
        raise TaskqError(f"{what} {value!r} not found (not a valid id)") from None


def clean_error(error: object) -> str | None:
    """``error`` as text PostgreSQL can store: no NUL characters, bounded length."""
    if error is None:
        return None
    text = error if isinstance(error, str) else str(error)
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_LENGTH:
        suffix = " ... (error truncated)"
        text = text[: MAX_ERROR_LENGTH - len(suffix)] + suffix
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


MAX_TRACEBACK = 8000
"""Longest traceback kept per failed attempt (characters; the end is kept)."""


def error_entry(error: object, kind: str | None = None) -> tuple[str | None, str]:
    """What a failure stores: the message for ``error`` (the column), and the history
    entry (JSON: kind, type, message, traceback). ``error`` is an exception (its type
    and traceback are kept) or text. Everything is NUL-safe and bounded."""
    import json
    import traceback as tb

    if isinstance(error, BaseException):
        cls = type(error)
        name = (
            cls.__qualname__
            if cls.__module__ == "builtins"
            else f"{cls.__module__}.{cls.__qualname__}"
        )
        message = clean_error(str(error) or cls.__name__)
        text = "".join(tb.format_exception(error))
        trace = clean_error(text[-MAX_TRACEBACK:]) if text else None
        entry = {"kind": kind or "exception", "type": name, "message": message, "traceback": trace}
    else:
        message = clean_error(error)
        entry = {"kind": kind or "failed", "message": message or ""}
    return message, json.dumps(entry, separators=(",", ":"))


def error_for(task_id: str, lease: str | None, row: Mapping[str, Any] | None) -> TaskqError:
    """The error for a guarded write on ``task_id`` that found the row as ``row``."""
    if row is None:
        return TaskNotFound(task_id)
    status = row["status"]
    current = row["lease"]
    if lease is not None and (None if current is None else str(current)) != lease:
        return LeaseLost(task_id)
    if status == "cancelled":
        return TaskCancelled(task_id)
    if status in ("finished", "failed"):
        return TaskFinished(task_id, status)
    if status == "waiting":
        return TaskNotRunning(task_id)
    return LeaseLost(task_id)
