"""Rows into values: ``Task`` and ``Schedule`` from a statement's column names and
rows, whatever subset of columns (and whatever reference columns) it returned. No I/O.

Columns whose name starts with ``_`` are a statement's own extras (``_woken``,
``_created``); columns that are not built-in are the application's reference columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taskq.core.names import TASK_BUILTIN_COLUMNS
from taskq.core.types import AttemptError, Schedule, Task, TaskStatus

Values = Sequence[Any]


def text_or_none(value: Any) -> str | None:
    """A uuid (or any value) as text; None stays None."""
    return None if value is None else str(value)


def task_maker(names: Sequence[str]) -> Callable[[Values], Task]:
    """A function building a Task from one row of ``names``."""
    refs = [i for i, n in enumerate(names) if n not in TASK_BUILTIN_COLUMNS and n[0] != "_"]
    idx = {n: i for i, n in enumerate(names)}
    where = {name: idx.get(name) for name in _TASK_FIELDS}
    i_id = idx["id"]

    def make(values: Values) -> Task:
        def g(name: str) -> Any:
            i = where[name]
            return None if i is None else values[i]

        attempts = g("attempts")
        if attempts is not None and g("status") == "running" and g("started_at") is None:
            # reserved by a worker for a slot, not started yet: its attempt is charged
            # when it starts; readers see the attempt it is about to make
            attempts += 1
        return Task(
            id=str(values[i_id]),
            queue=g("queue"),
            type=g("type"),
            spec=g("spec"),
            status=TaskStatus(g("status")),
            progress=g("progress"),
            result=g("result"),
            error=g("error"),
            references={names[i]: values[i] for i in refs if values[i] is not None},
            priority=g("priority"),
            attempts=attempts,
            max_attempts=g("max_attempts"),
            heartbeat_timeout=g("heartbeat_timeout"),
            timeout=g("timeout"),
            run_at=g("run_at"),
            created_at=g("created_at"),
            updated_at=g("updated_at"),
            started_at=g("started_at"),
            finished_at=g("finished_at"),
            last_heartbeat_at=g("last_heartbeat_at"),
            unique_key=g("unique_key"),
            title=g("title"),
            user_id=g("user_id"),
            lease=text_or_none(g("lease")),
            worker_id=text_or_none(g("worker_id")),
            chain_id=text_or_none(g("chain_id")),
            chain_index=g("chain_index"),
            group_id=text_or_none(g("group_id")),
            previous_result=g("previous_result"),
            on_success=g("on_success"),
            errors=_errors(g("errors")),
            seq=g("seq"),
        )

    return make


_TASK_FIELDS = (
    "queue", "type", "spec", "status", "progress", "result", "error", "priority",
    "attempts", "max_attempts", "heartbeat_timeout", "timeout", "run_at", "created_at",
    "updated_at", "started_at", "finished_at", "last_heartbeat_at", "unique_key", "title",
    "user_id", "lease", "worker_id", "chain_id", "chain_index", "group_id", "previous_result",
    "on_success", "seq", "errors",
)  # fmt: skip


def _errors(value: Any) -> tuple[AttemptError, ...]:
    if not value:
        return ()
    return tuple(AttemptError.from_json(e) for e in value if isinstance(e, dict))


def tasks(names: Sequence[str], rows: Sequence[Values]) -> list[Task]:
    if not rows:
        return []
    make = task_maker(names)
    return [make(r) for r in rows]


def dicts(names: Sequence[str], rows: Sequence[Values]) -> list[dict[str, Any]]:
    """Rows as dicts (uuid values stay uuid; callers convert what they read)."""
    return [dict(zip(names, r, strict=True)) for r in rows]


ScheduleRow = tuple[Schedule, dict[str, Any]]


def schedules(names: Sequence[str], rows: Sequence[Values]) -> list[ScheduleRow]:
    """Rows of ``schedules`` as (Schedule, {extra column: value}); the extras are the
    statement's own columns (``_created``, ``_now``). References come from
    ``reference_key``."""
    idx = {n: i for i, n in enumerate(names)}
    extras = [(n, i) for i, n in enumerate(names) if n.startswith("_")]
    out: list[ScheduleRow] = []
    for values in rows:

        def g(name: str, values: Values = values) -> Any:
            return values[idx[name]]

        schedule = Schedule(
            id=str(g("id")),
            queue=g("queue"),
            type=g("type"),
            spec=g("spec"),
            cron_schedule=g("cron_schedule"),
            timezone=g("timezone"),
            references=dict(g("reference_key") or {}),
            next_run_at=g("next_run_at"),
            last_run_at=g("last_run_at"),
            enabled=g("enabled"),
            skip_missed=g("skip_missed"),
            created_at=g("created_at"),
            updated_at=g("updated_at"),
        )
        out.append((schedule, {n: values[i] for n, i in extras}))
    return out
