"""Rows into values: ``Task`` and ``Schedule`` from a statement's column names and
rows, whatever subset of columns (and whatever reference columns) it returned. No I/O.

Columns whose name starts with ``_`` are a statement's own extras (``_woken``,
``_created``); columns that are not built-in are the application's reference columns.
"""

from __future__ import annotations

import dataclasses
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
    # where each of Task's fields is in the row, in Task's order (None: not returned);
    # the row's values go to Task's constructor positionally, then the few that need
    # converting are converted
    source = [idx.get(name) for name in _FIELD_ORDER]
    source[_ID] = idx["id"]
    missing = [pos for pos, i in enumerate(source) if i is None]
    present = [i if i is not None else 0 for i in source]
    texts = [pos for pos in _TEXT_POSITIONS if source[pos] is not None]
    pos_refs = _REFERENCES
    pos_attempts, pos_status, pos_started = _ATTEMPTS, _STATUS, _STARTED_AT
    pos_errors = _ERRORS
    has_errors = source[_ERRORS] is not None

    def make(values: Values) -> Task:
        a = [values[i] for i in present]
        for pos in missing:
            a[pos] = None
        for pos in texts:
            v = a[pos]
            if v is not None:
                a[pos] = str(v)
        status = a[pos_status]
        a[pos_status] = _STATUSES[status]
        attempts = a[pos_attempts]
        if attempts is not None and status == "running" and a[pos_started] is None:
            # reserved by a worker for a slot, not started yet: its attempt is charged
            # when it starts; readers see the attempt it is about to make
            a[pos_attempts] = attempts + 1
        a[pos_refs] = {names[i]: values[i] for i in refs if values[i] is not None}
        a[pos_errors] = _errors(a[pos_errors]) if has_errors else ()
        return Task(*a)

    return make


_FIELD_ORDER = tuple(f.name for f in dataclasses.fields(Task))
_ID = _FIELD_ORDER.index("id")
_STATUS = _FIELD_ORDER.index("status")
_ATTEMPTS = _FIELD_ORDER.index("attempts")
_STARTED_AT = _FIELD_ORDER.index("started_at")
_REFERENCES = _FIELD_ORDER.index("references")
_ERRORS = _FIELD_ORDER.index("errors")
_TEXT_POSITIONS = tuple(
    _FIELD_ORDER.index(n) for n in ("id", "lease", "worker_id", "chain_id", "group_id")
)
"""Fields read as uuid values and given out as text."""
_STATUSES = {s.value: s for s in TaskStatus}


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
