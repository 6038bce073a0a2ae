"""Assertions about what was enqueued: ``assert_enqueued``, ``assert_not_enqueued``,
and ``enqueued`` that returns the matching tasks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from taskq.core.types import JSON, Task, TaskStatus
from taskq.tasks import Tasks

ANY: Any = object()
"""The default of ``spec``: any spec matches."""

LIMIT = 1000
"""Most tasks of one type and queue read for one assertion."""


def enqueued(
    db: Any,
    type: str | None = None,
    *,
    queue: str | None = None,
    spec: JSON | Callable[[JSON], bool] = ANY,
    status: TaskStatus | str | None = None,
    schema: str | None = None,
) -> list[Task]:
    """The tasks of ``type`` (any type when None) on ``queue`` (any when None) whose
    spec equals ``spec`` (or for which ``spec(task.spec)`` is true, given a
    function) and whose status is ``status`` (any when None), in enqueue order."""
    with Tasks(db, schema=schema, pool_size=1) as tasks:
        found = tasks.list(queue=queue, status=status, type=type, limit=LIMIT)
    found.reverse()  # listed newest first
    return [t for t in found if _spec_matches(spec, t.spec)]


def assert_enqueued(
    db: Any,
    type: str,
    *,
    queue: str | None = None,
    spec: JSON | Callable[[JSON], bool] = ANY,
    status: TaskStatus | str | None = None,
    count: int | None = None,
    schema: str | None = None,
) -> list[Task]:
    """Assert that tasks of ``type`` matching the filters (see ``enqueued``) were
    enqueued: at least one, or exactly ``count``. Returns them, in enqueue order.

    Tasks in every status count unless ``status`` says otherwise, so it holds after
    the tasks ran too. The AssertionError lists the tasks of that type that were
    enqueued instead."""
    found = enqueued(db, type, queue=queue, spec=spec, status=status, schema=schema)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    wanted = "at least one" if count is None else f"exactly {count}"
    raise AssertionError(
        f"expected {wanted} task{'s' if count not in (None, 1) else ''} "
        f"{_describe(type, queue, spec, status)}, found {len(found)}" + _others(db, type, schema)
    )


def assert_not_enqueued(
    db: Any,
    type: str,
    *,
    queue: str | None = None,
    spec: JSON | Callable[[JSON], bool] = ANY,
    status: TaskStatus | str | None = None,
    schema: str | None = None,
) -> None:
    """Assert that no task of ``type`` matching the filters was enqueued."""
    found = enqueued(db, type, queue=queue, spec=spec, status=status, schema=schema)
    if found:
        raise AssertionError(
            f"expected no task {_describe(type, queue, spec, status)}, found {len(found)}:\n"
            + "\n".join(_line(t) for t in found[:10])
        )


def _spec_matches(spec: Any, value: JSON) -> bool:
    if spec is ANY:
        return True
    if callable(spec):
        return bool(spec(value))
    return bool(spec == value)


def _describe(type: str, queue: str | None, spec: Any, status: TaskStatus | str | None) -> str:
    parts = [f"of type {type!r}"]
    if queue is not None:
        parts.append(f"on queue {queue!r}")
    if spec is not ANY:
        parts.append(
            f"with spec {_short(spec) if not callable(spec) else 'matching ' + repr(spec)}"
        )
    if status is not None:
        parts.append(f"in status {TaskStatus(status).value}")
    return " ".join(parts)


def _others(db: Any, type: str, schema: str | None) -> str:
    same_type = enqueued(db, type, schema=schema)
    if not same_type:
        return "; no task of that type was enqueued"
    lines = "\n".join(_line(t) for t in same_type[:10])
    more = f"\n  ... and {len(same_type) - 10} more" if len(same_type) > 10 else ""
    return f"; tasks of that type that were enqueued:\n{lines}{more}"


def _line(task: Task) -> str:
    return f"  {task.type} on {task.queue!r} ({task.status.value}) spec={_short(task.spec)}"


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
