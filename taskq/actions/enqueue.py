"""Enqueueing as plans: checking reference columns, inserting rows, groups.

Rows come checked and encoded from ``taskq.core.encode``; here they are grouped by
the reference columns they set (one statement per group), those columns are checked
against the table (cached per database, reloaded when a name is not found), and the
insert runs. A caller's transaction is left usable when an insert is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from taskq.actions.plan import Plan, atomic, run
from taskq.core.encode import Row, rows_json
from taskq.core.errors import InvalidReference
from taskq.core.names import SCHEDULE_BUILTIN_COLUMNS, TASK_BUILTIN_COLUMNS
from taskq.core.types import Task
from taskq.sql import Statements


class ColumnCache:
    """The column names of taskq's tables, as last read (one per database object)."""

    def __init__(self) -> None:
        self._cols: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def get(self, table: str) -> frozenset[str] | None:
        with self._lock:
            return self._cols.get(table)

    def put(self, table: str, cols: frozenset[str]) -> None:
        with self._lock:
            self._cols[table] = cols

    def forget(self, table: str) -> None:
        with self._lock:
            self._cols.pop(table, None)


def check_reference_names(schema: str, table: str, keys: Sequence[object]) -> None:
    """Refuse reference names that are not names or are built-in columns (no I/O)."""
    builtin = TASK_BUILTIN_COLUMNS if table == "tasks" else SCHEDULE_BUILTIN_COLUMNS
    where = f"{schema}.{table}"
    for key in keys:
        if not isinstance(key, str) or not key:
            raise InvalidReference(str(key), where, "a reference name must be a non-empty string")
        if key in builtin:
            raise InvalidReference(key, where, "that is a built-in column, not a reference")


def check_references(
    stmts: Statements, cache: ColumnCache, table: str, keys: Sequence[str]
) -> Plan[None]:
    """Refuse reference names that are built-in or not columns of ``table``."""
    check_reference_names(stmts.schema, table, keys)
    if not keys:
        return
    cols = cache.get(table)
    for attempt in range(2):
        if cols is None or attempt:
            cols = frozenset((yield from run(stmts.catalog.table_columns(table))))
            cache.put(table, cols)
        missing = [k for k in keys if k not in cols]
        if not missing:
            return
    raise InvalidReference(
        missing[0], f"{stmts.schema}.{table}", "no such column (add it in your own migration first)"
    )


def insert_rows(stmts: Statements, cache: ColumnCache, rows: Sequence[Row]) -> Plan[list[Task]]:
    """Insert ``rows``, one statement per set of reference columns; the tasks come back
    in the order of ``rows``. Not atomic by itself when it takes several statements:
    run it with :func:`enqueue` or inside an atomic plan."""
    by_refs: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(rows):
        by_refs.setdefault(r.references, []).append(i)
    out: list[Task | None] = [None] * len(rows)
    for cols, positions in by_refs.items():
        if cols:
            yield from check_references(stmts, cache, "tasks", cols)
        group = [rows[i] for i in positions]
        try:
            tasks = yield from run(stmts.tasks.enqueue(rows_json(group), cols, group[0].queue))
        except InvalidReference:
            cache.forget("tasks")  # a column was dropped since it was checked
            raise
        for i, t in zip(positions, tasks, strict=True):
            out[i] = t
    return [t for t in out if t is not None]


def enqueue(stmts: Statements, cache: ColumnCache, rows: Sequence[Row]) -> Plan[list[Task]]:
    """Insert ``rows`` all or nothing. One plain statement needs no transaction of its
    own; with reference columns to check, or several statements, they run as one unit
    (in a caller's transaction: a savepoint, so a refused enqueue leaves it usable)."""
    single = len({r.references for r in rows}) == 1 and not rows[0].references
    return (yield from atomic(insert_rows(stmts, cache, rows), single=single))


def enqueue_group(
    stmts: Statements,
    cache: ColumnCache,
    group_id: str,
    rows: Sequence[Row],
    on_complete_json: str | None,
) -> Plan[list[Task]]:
    """Record a group and insert its members, as one unit."""

    def both() -> Plan[list[Task]]:
        yield from run(stmts.tasks.group_create(group_id, on_complete_json))
        return (yield from insert_rows(stmts, cache, rows))

    return (yield from atomic(both()))
