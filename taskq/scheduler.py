"""Cron schedules: the ``Scheduler`` API.

A schedule is a row of ``<schema>.schedules`` identified by (queue, type, references);
the database enforces that identity with a unique key over ``reference_key``, the
canonical JSON of the reference columns (values as PostgreSQL stored them, so ``"7"``
and ``7`` for a bigint column are the same schedule). The reference columns are set on
the schedule's own row, so deleting the referenced row deletes the schedule (ON DELETE
CASCADE); the tick copies them to every task it enqueues, so those go too.

Every change is one transaction that NOTIFYs the scheduler processes, so a sleeping
one wakes to the new next tick. Firing, exactly once per tick, and the catch-up
policy are in ``taskq/services/ticker.py``; when an expression fires in its time zone,
DST included, in ``taskq/core/cron.py``. The plans (``taskq.actions.schedules``) are
shared with ``taskq.aio.AsyncScheduler``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from taskq.actions import schedules as plans
from taskq.clients import Client
from taskq.core.schedules import target
from taskq.core.types import Schedule, TaskScheduleRequest

ScheduleRef = TaskScheduleRequest | Schedule | None


class Scheduler(Client):
    """Creates, lists, pauses and removes cron schedules.

    ``db`` is a URI (the Scheduler owns a pool: thread-safe, ``close()`` it or use it as a
    context manager), a ``psycopg_pool.ConnectionPool``, or a caller's connection
    (psycopg, or SQLAlchemy on psycopg 3): then every change joins the caller's
    transaction and takes effect when the caller commits.

    Operations that name an existing schedule (``ensure_schedule``, ``unschedule``,
    ``pause``, ``resume``) look only at its identity: queue, type and references. They
    take a TaskScheduleRequest, a Schedule, or ``queue=``, ``type=``, ``references=``.
    """

    def __init__(
        self,
        db: Any = None,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        pooler: str | None = None,
    ) -> None:
        super().__init__(db, schema=schema, pool_size=pool_size, pooler=pooler)

    def schedule(self, request: TaskScheduleRequest, *, now: dt.datetime | None = None) -> Schedule:
        """Create the schedule, or update the one with the same (queue, type, references).

        Everything is checked before anything is stored: QueueNotSpecified,
        TypeNotSpecified, InvalidSchedule (cron expression or time zone, quoting the bad
        part), InvalidTask (spec), InvalidReference. An update changes spec, expression,
        time zone and skip_missed; the pending tick is kept unless the expression or time
        zone changed; a paused schedule stays paused. ``now`` (default: the database
        clock) is the moment the first tick is computed from.
        """
        return self._db.run(plans.schedule(self._stmts, self._db.settings.columns, request, now))

    def ensure_schedule(
        self,
        request: ScheduleRef = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> None:
        """Return quietly if the schedule exists (paused or not); else NotScheduled."""
        key = target(request, queue, type, references)
        self._db.run(plans.ensure(self._stmts, self._db.settings.columns, key))

    def unschedule(
        self,
        request: ScheduleRef = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> bool:
        """Remove the schedule; True if there was one. Tasks it enqueued stay."""
        key = target(request, queue, type, references)
        return self._db.run(plans.unschedule(self._stmts, self._db.settings.columns, key))

    def pause(
        self,
        request: ScheduleRef = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> Schedule:
        """Stop firing the schedule until ``resume``; NotScheduled if there is none."""
        key = target(request, queue, type, references)
        return self._db.run(plans.pause(self._stmts, self._db.settings.columns, key))

    def resume(
        self,
        request: ScheduleRef = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Schedule:
        """Fire the schedule again from its first tick after now (no catch-up for the
        paused time); a schedule that is not paused is returned unchanged."""
        key = target(request, queue, type, references)
        return self._db.run(plans.resume(self._stmts, self._db.settings.columns, key, now))

    def list_schedules(self, queue: str | None = None) -> list[Schedule]:
        """Every schedule (or those of ``queue``), ordered by queue, type, references."""
        return self._db.query(self._stmts.schedules.list_schedules(queue))
