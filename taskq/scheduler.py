"""Cron schedules: the ``Scheduler`` API.

A schedule is a row of ``<schema>.schedules`` identified by (queue, type, references);
the database enforces that identity with a unique key over ``reference_key``, the
canonical JSON of the reference columns (values as PostgreSQL stored them, so ``"7"``
and ``7`` for a bigint column are the same schedule). The reference columns are set on
the schedule's own row, so deleting the referenced row deletes the schedule (ON DELETE
CASCADE); the tick copies them to every task it enqueues, so those go too.

Every change is one transaction that NOTIFYs the scheduler processes, so a sleeping
one wakes to the new next tick. Firing, exactly once per tick, and the catch-up
policy are in ``taskq/ticker.py``; when an expression fires in its time zone, DST
included, in ``taskq/cron.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from psycopg import errors as pgerr

from taskq import cron
from taskq.columns import SCHEDULE_BUILTIN_COLUMNS, TASK_BUILTIN_COLUMNS
from taskq.db import Database, Db
from taskq.errors import (
    InvalidReference,
    InvalidSchedule,
    NotScheduled,
    QueueNotSpecified,
    TypeNotSpecified,
)
from taskq.queries import Conn, Queries, translate_errors
from taskq.requests import MAX_SPEC_BYTES, check_text, encode_json
from taskq.schedule_queries import Identity, ScheduleQueries
from taskq.types import Schedule, TaskScheduleRequest

log = logging.getLogger("taskq.scheduler")


# ---- checking requests ---------------------------------------------------------------


def _where(queue: Any, type_: Any) -> str:
    return f"schedule (queue {str(queue)[:60]!r}, type {str(type_)[:60]!r})"


def _identity(queue: Any, type_: Any, references: Any) -> Identity:
    """The checked identity of a schedule (no I/O)."""
    if queue is None or (isinstance(queue, str) and not queue.strip()):
        raise QueueNotSpecified(type_ if isinstance(type_, str) else "")
    if type_ is None or (isinstance(type_, str) and not type_.strip()):
        raise TypeNotSpecified(queue if isinstance(queue, str) else "")
    where = " for " + _where(queue, type_)
    check_text(queue, "queue", where)
    check_text(type_, "type", where)
    if not isinstance(references, Mapping):
        raise InvalidReference("?", "schedules", "references must be a mapping of column to value")
    for key in references:
        if not isinstance(key, str) or not key:
            raise InvalidReference(
                str(key), "schedules", "a reference name must be a non-empty string"
            )
        if key in SCHEDULE_BUILTIN_COLUMNS or key in TASK_BUILTIN_COLUMNS:
            raise InvalidReference(key, "schedules", "that is a built-in column, not a reference")
    refs = {k: references[k] for k in sorted(references)}
    refs_json = encode_json(refs, "references" + where)
    return Identity(queue, type_, refs_json, tuple(refs))


def _target(
    request: TaskScheduleRequest | Schedule | None,
    queue: str | None,
    type_: str | None,
    references: Mapping[str, Any] | None,
) -> Identity:
    if request is not None:
        if queue is not None or type_ is not None or references is not None:
            raise TypeError("pass either a request (or Schedule) or queue/type/references")
        if not isinstance(request, TaskScheduleRequest | Schedule):
            raise TypeError(
                f"expected a TaskScheduleRequest or Schedule, got {type(request).__name__}"
            )
        return _identity(request.queue, request.type, request.references)
    return _identity(queue, type_, references if references is not None else {})


# ---- the API -------------------------------------------------------------------------


class Scheduler:
    """Creates, lists, pauses and removes cron schedules.

    ``db`` is a URI (the Scheduler owns a pool: thread-safe, ``close()`` it or use it as a
    context manager), a ``psycopg_pool.ConnectionPool``, or a caller's connection
    (psycopg, or SQLAlchemy on psycopg 3): then every change joins the caller's
    transaction and takes effect when the caller commits.

    Operations that name an existing schedule (``ensure_schedule``, ``unschedule``,
    ``pause``, ``resume``) look only at its identity: queue, type and references. They
    take a TaskScheduleRequest, a Schedule, or ``queue=``, ``type=``, ``references=``.
    """

    def __init__(self, db: Db = None, *, schema: str | None = None, pool_size: int = 4) -> None:
        self._db = db if isinstance(db, Database) else Database(db, schema, max_size=pool_size)
        self._q = Queries(self._db.schema)
        self._sq = ScheduleQueries(self._db.schema)

    @property
    def schema(self) -> str:
        return self._db.schema

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schedule(self, request: TaskScheduleRequest, *, now: dt.datetime | None = None) -> Schedule:
        """Create the schedule, or update the one with the same (queue, type, references).

        Everything is checked before anything is stored: QueueNotSpecified,
        TypeNotSpecified, InvalidSchedule (cron expression or time zone, quoting the bad
        part), InvalidTask (spec), InvalidReference. An update changes spec, expression,
        time zone and skip_missed; the pending tick is kept unless the expression or time
        zone changed; a paused schedule stays paused. ``now`` (default: the database
        clock) is the moment the first tick is computed from.
        """
        if not isinstance(request, TaskScheduleRequest):
            raise TypeError(f"expected a TaskScheduleRequest, got {type(request).__name__}")
        key = _identity(request.queue, request.type, request.references)
        where = _where(request.queue, request.type)
        try:
            spec = cron.parse(request.cron_schedule, request.timezone)
        except InvalidSchedule as e:
            raise InvalidSchedule(f"{where}: {e}") from None
        spec_json = encode_json(request.spec, f"spec of {where}")
        if len(spec_json.encode()) > MAX_SPEC_BYTES:
            raise ValueError(f"spec of {where} is larger than {MAX_SPEC_BYTES} bytes of JSON")
        if not isinstance(request.skip_missed, bool):
            raise TypeError(f"skip_missed of {where} must be a bool")
        with self._db.transaction() as conn:
            self._check_references(conn, key)
            clock = self._sq.now(conn, now)
            first = cron.next_fire(spec, clock)
            row = {
                **json.loads(key.refs_json),  # reference names are never built-in columns
                "queue": key.queue,
                "type": key.type,
                "cron_schedule": spec.expression,
                "timezone": spec.timezone,
                "next_run_at": first.isoformat(),
                "skip_missed": request.skip_missed,
                "spec": request.spec,
            }
            row_json = encode_json(row, where)
            with _translate(key):
                schedule, created = self._sq.upsert(conn, row_json, key.ref_names)
        log.info("%s %s (%s)", "created" if created else "updated", where, schedule.id)
        return schedule

    def ensure_schedule(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> None:
        """Return quietly if the schedule exists (paused or not); else NotScheduled."""
        key = _target(request, queue, type, references)
        with self._db.transaction() as conn:
            self._check_references(conn, key)
            with _translate(key):
                found = self._sq.exists(conn, key)
        if not found:
            raise NotScheduled(key.queue, key.type, _refs(key))

    def unschedule(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> bool:
        """Remove the schedule; True if there was one. Tasks it enqueued stay."""
        key = _target(request, queue, type, references)
        with self._db.transaction() as conn:
            self._check_references(conn, key)
            with _translate(key):
                return self._sq.delete(conn, key)

    def pause(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> Schedule:
        """Stop firing the schedule until ``resume``; NotScheduled if there is none."""
        key = _target(request, queue, type, references)
        with self._db.transaction() as conn:
            found = self._find(conn, key)
            return self._sq.set_enabled(conn, found.id, False, None)

    def resume(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Schedule:
        """Fire the schedule again from its first tick after now (no catch-up for the
        paused time); a schedule that is not paused is returned unchanged."""
        key = _target(request, queue, type, references)
        with self._db.transaction() as conn:
            found = self._find(conn, key)
            if found.enabled:
                return found
            clock = self._sq.now(conn, now)
            if found.last_run_at is not None:
                clock = max(clock, found.last_run_at)
            spec = cron.parse(found.cron_schedule, found.timezone)
            return self._sq.set_enabled(conn, found.id, True, cron.next_fire(spec, clock))

    def list_schedules(self, queue: str | None = None) -> list[Schedule]:
        """Every schedule (or those of ``queue``), ordered by queue, type, references."""
        with self._db.connection() as conn:
            return self._sq.list_all(conn, queue)

    def _find(self, conn: Conn, key: Identity) -> Schedule:
        self._check_references(conn, key)
        with _translate(key):
            found = self._sq.find(conn, key)
        if found is None:
            raise NotScheduled(key.queue, key.type, _refs(key))
        return found

    def _check_references(self, conn: Conn, key: Identity) -> None:
        if key.ref_names:
            self._q.check_references(conn, "schedules", key.ref_names)
            self._q.check_references(conn, "tasks", key.ref_names)


def _refs(key: Identity) -> dict[str, object]:
    value: dict[str, object] = json.loads(key.refs_json)
    return value


@contextlib.contextmanager
def _translate(key: Identity) -> Iterator[None]:
    """Database errors about a schedule's references, as taskq errors."""
    try:
        with translate_errors(key.queue):
            yield
    except pgerr.DataError as e:
        raise InvalidReference(
            ",".join(key.ref_names) or "?",
            "schedules",
            f"the values {_refs(key)!r} do not fit the columns: {e.diag.message_primary}",
        ) from None
