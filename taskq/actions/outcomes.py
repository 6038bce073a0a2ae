"""A worker's writes as plans: heartbeats, finishes, failures, releases, and the rescue.

Every write is one guarded statement for a whole batch. Where it matched no row for a
task, one more query (``diagnose``) tells which error that task gets. Where the
database refuses the batch (a missing grant on a follow-up's table, a trigger, a
constraint), the batch is written again task by task, each on its own, so the tasks
that can be written are, and only the refused one is reported (``WriteRefused``): one
bad row never turns its neighbours' outcomes into failures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskq.actions.enqueue import ColumnCache
from taskq.actions.followups import after_final
from taskq.actions.plan import Plan, atomic, run
from taskq.core.encode import encode_json
from taskq.core.errors import TaskNotFound, TaskqError, WriteRefused
from taskq.core.fencing import TaskRef, error_entry, error_for, task_ref
from taskq.core.types import JSON, Task, checked_progress
from taskq.sql import Statements
from taskq.sql.errors import is_refusal
from taskq.sql.query import Query
from taskq.sql.tasks import Finishing

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One task's outcome in a batch write."""

    task: TaskRef
    progress: JSON = None
    result: JSON = None
    error: object = None
    """Text, or the exception itself (its type and traceback join the history)."""
    final: bool = False
    kind: str | None = None
    """The failure's kind in the history ("timeout", ...; default from ``error``)."""
    ago: float | None = None
    """For a task a worker reserved and ran before its start was recorded: seconds
    since it started (its attempt is charged with this write)."""


@dataclass(slots=True)
class Written:
    """What a batch write did: the rows it changed, and an error per task it did not
    change (why, from ``diagnose``, or ``WriteRefused``)."""

    rows: list[Row] = field(default_factory=list)
    errors: dict[str, TaskqError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Item:
    id: str
    lease: str | None
    progress: str | None
    outcome: Outcome | None


def _items(
    pairs: Iterable[tuple[TaskRef, JSON]], outcomes: Sequence[Outcome] | None, *, strict: bool
) -> tuple[list[_Item], dict[str, TaskqError]]:
    items: list[_Item] = []
    unknown: dict[str, TaskqError] = {}
    for n, (task, value) in enumerate(pairs):
        try:
            task_id, lease = task_ref(task)
        except TaskNotFound as e:
            unknown[e.task_id] = e
            continue
        try:
            what = f"progress of task {task_id}"
            progress = None if value is None else encode_json(checked_progress(value, what), what)
        except ValueError:
            if strict:
                raise
            progress = None  # a failure must not fail on its progress: left out
        items.append(_Item(task_id, lease, progress, outcomes[n] if outcomes else None))
    return items, unknown


def _columns(items: Sequence[_Item]) -> tuple[list[str], list[str | None], list[str | None]]:
    return [i.id for i in items], [i.lease for i in items], [i.progress for i in items]


def _isolated(
    items: Sequence[_Item],
    write: Callable[[Sequence[_Item]], Plan[list[Row]]],
    single: bool,
) -> Plan[Written]:
    """``write`` all items as one unit; if the database refuses that, each item on its
    own, reporting the refused ones."""
    done = Written()
    try:
        done.rows = yield from atomic(write(items), single=single)
        return done
    except Exception as e:
        if not is_refusal(e):
            raise
        if len(items) == 1:
            done.errors[items[0].id] = WriteRefused(items[0].id, _first_line(e))
            return done
    for item in items:
        try:
            done.rows += yield from atomic(write([item]), single=single)
        except Exception as e:
            if not is_refusal(e):
                raise
            done.errors[item.id] = WriteRefused(item.id, _first_line(e))
    return done


def _explain(stmts: Statements, items: Sequence[_Item], written: Written) -> Plan[None]:
    """Give each item the write did not change (and did not refuse) its error."""
    changed = {str(r["id"]) for r in written.rows}
    missing = [i for i in items if i.id not in changed and i.id not in written.errors]
    if not missing:
        return
    rows = yield from run(stmts.tasks.diagnose([i.id for i in missing]))
    found = {str(r["id"]): r for r in rows}
    for i in missing:
        written.errors[i.id] = error_for(i.id, i.lease, found.get(i.id))


def heartbeat(stmts: Statements, pairs: Iterable[tuple[TaskRef, JSON]]) -> Plan[Written]:
    """Record progress (None keeps the last) and the heartbeat time of running tasks."""
    items, unknown = _items(pairs, None, strict=True)
    if not items:
        return Written(errors=dict(unknown))

    def write(batch: Sequence[_Item]) -> Plan[list[Row]]:
        ids, leases, progress = _columns(batch)
        beaten = yield from run(stmts.tasks.heartbeat(ids, leases, progress))
        return [{"id": i} for i in beaten]

    written = yield from _isolated(items, write, single=True)
    yield from _explain(stmts, items, written)
    written.errors.update(unknown)
    return written


def has_followups(outcomes: Sequence[Outcome]) -> bool:
    """Whether ending these tasks may start other work (or may, as far as we know)."""
    return not all(isinstance(o.task, Task) and not o.task.has_followups for o in outcomes)


def end(
    stmts: Statements, cache: ColumnCache, kind: str, outcomes: Sequence[Outcome]
) -> Plan[Written]:
    """Finish (``kind`` "finish") or fail ("fail") running tasks, with their follow-ups
    in the same transaction."""
    strict = kind == "finish"
    items, unknown = _items(((o.task, o.progress) for o in outcomes), outcomes, strict=strict)
    if not items:
        return Written(errors=dict(unknown))
    statement = _finish_statement if strict else _fail_statement
    followups = has_followups(outcomes)

    def write(batch: Sequence[_Item]) -> Plan[list[Row]]:
        rows = yield from run(statement(stmts, batch))
        if followups:
            yield from after_final(stmts, cache, rows)
        return rows

    written = yield from _isolated(items, write, single=not followups)
    yield from _explain(stmts, items, written)
    written.errors.update(unknown)
    return written


def _finish_statement(stmts: Statements, batch: Sequence[_Item]) -> Query[list[Row]]:
    ids, leases, progress = _columns(batch)
    results: list[str | None] = []
    for i in batch:
        assert i.outcome is not None
        results.append(encode_json(i.outcome.result, f"result of task {i.id}"))
    agos = [i.outcome.ago if i.outcome is not None else None for i in batch]
    return stmts.tasks.finish(Finishing(ids, leases, progress, results, agos))


def _fail_statement(stmts: Statements, batch: Sequence[_Item]) -> Query[list[Row]]:
    ids, leases, progress = _columns(batch)
    errors: list[str | None] = []
    finals: list[bool] = []
    entries: list[str] = []
    for i in batch:
        assert i.outcome is not None
        message, entry = error_entry(i.outcome.error, i.outcome.kind)
        errors.append(message)
        entries.append(entry)
        finals.append(i.outcome.final)
    agos = [i.outcome.ago if i.outcome is not None else None for i in batch]
    return stmts.tasks.fail(ids, leases, progress, errors, finals, entries, agos)


def release(stmts: Statements, tasks: Sequence[Task]) -> Plan[set[str]]:
    """Give claimed tasks back to waiting without charging an attempt."""
    if not tasks:
        return set()
    return (yield from run(stmts.tasks.release([t.id for t in tasks], [t.lease for t in tasks])))


def rescue(
    stmts: Statements,
    cache: ColumnCache,
    worker_stale: float,
    limit: int,
    now: dt.datetime | None = None,
) -> Plan[Written]:
    """One batch of the rescue (stale running tasks back to waiting, or failed), with the
    follow-ups of those that failed, as one unit; a task whose rescue the database
    refuses is reported and the others are rescued one by one."""

    def write(ids: Sequence[str] | None, n: int) -> Plan[list[Row]]:
        rows = yield from run(stmts.tasks.rescue(worker_stale, n, ids, now))
        yield from after_final(stmts, cache, rows)
        return rows

    done = Written()
    try:
        done.rows = yield from atomic(write(None, limit))
        return done
    except Exception as e:
        if not is_refusal(e):
            raise
    for task_id in sorted((yield from run(stmts.tasks.stale(worker_stale, limit, now)))):
        try:
            done.rows += yield from atomic(write([task_id], 1))
        except Exception as e:
            if not is_refusal(e):
                raise
            done.errors[task_id] = WriteRefused(task_id, _first_line(e))
    return done


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
