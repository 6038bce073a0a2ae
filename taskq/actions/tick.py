"""One round of the cron tick as a plan: claim due schedules, enqueue each one's task,
move each past its tick, in one transaction (see ``taskq/services/ticker.py`` for the
guarantees and the catch-up policy)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import errors as pgerr

from taskq.actions.enqueue import ColumnCache, insert_rows
from taskq.actions.plan import Plan, atomic, run
from taskq.core import cron
from taskq.core.encode import to_row
from taskq.core.errors import TaskqError
from taskq.core.types import Schedule, TaskEnqueueRequest
from taskq.sql import Statements
from taskq.sql.errors import is_outage

log = logging.getLogger("taskq.scheduler")

STATEMENT_TIMEOUT = 30.0
"""Seconds any statement of a round may take, so a stuck one cannot stall the tick."""

RETRY_BROKEN = dt.timedelta(minutes=5)
"""A stored schedule that cannot be read (edited by hand) is tried again this much later."""


@dataclass(frozen=True, slots=True)
class Fired:
    """One task a tick enqueued."""

    schedule_id: str
    queue: str
    type: str
    run_at: dt.datetime
    task_id: str
    catch_up: bool


@dataclass(frozen=True, slots=True)
class FireOutcome:
    next_run_at: dt.datetime
    fired_tick: dt.datetime | None  # recorded as last_run_at
    fired: Fired | None = None
    skipped: bool = False
    error: bool = False


def task_id_for(schedule_id: str, tick: dt.datetime) -> str:
    """The id of the task for ``tick`` of a schedule: same inputs, same id."""
    stamp = tick.astimezone(dt.UTC).isoformat()
    return str(uuid.uuid5(uuid.UUID(schedule_id), stamp))


def fire(
    stmts: Statements,
    cache: ColumnCache,
    s: Schedule,
    spec_of: Callable[[Schedule], cron.CronSpec],
    clock: dt.datetime,
    misfire_grace: dt.timedelta,
) -> Plan[FireOutcome]:
    """Enqueue the task of schedule ``s``'s due tick (or decide not to)."""
    tick = s.next_run_at
    missed = clock - tick > misfire_grace
    where = f"schedule {s.id} (queue {s.queue!r}, type {s.type!r})"
    try:
        nxt = cron.next_fire(spec_of(s), clock if missed else tick)
    except Exception as e:  # stored by hand, or the time zone left the tz database
        log.error("%s cannot be read: %s; trying again in %s", where, e, RETRY_BROKEN)
        return FireOutcome(max(clock, tick) + RETRY_BROKEN, None, error=True)
    if missed and s.skip_missed:
        log.info("%s: skipped the ticks missed since %s (skip_missed)", where, tick)
        return FireOutcome(nxt, None, skipped=True)
    task_id = task_id_for(s.id, tick)
    request = TaskEnqueueRequest(
        queue=s.queue, type=s.type, spec=s.spec, references=s.references, run_at=tick
    )
    try:
        row = to_row(request, extra={"id": task_id, "schedule_id": s.id})
        yield from atomic(insert_rows(stmts, cache, [row]))  # a failure spares the others
    except pgerr.UniqueViolation as e:
        if e.diag.constraint_name != "tasks_pkey":
            raise
        log.info("%s: tick %s was already fired (task %s)", where, tick, task_id)
        return FireOutcome(nxt, tick)
    except Exception as e:
        if is_outage(e) or not isinstance(e, TaskqError | pgerr.Error):
            raise
        log.warning("%s: tick %s not fired: %s", where, tick, str(e).splitlines()[0])
        return FireOutcome(nxt, None, error=True)
    if missed:
        log.info("%s: one catch-up run for the ticks missed since %s", where, tick)
    return FireOutcome(nxt, tick, fired=Fired(s.id, s.queue, s.type, tick, task_id, missed))


def tick_round(
    stmts: Statements,
    cache: ColumnCache,
    now: dt.datetime | None,
    batch: int,
    spec_of: Callable[[Schedule], cron.CronSpec],
    misfire_grace: dt.timedelta,
) -> Plan[list[tuple[Schedule, FireOutcome]]]:
    """Claim up to ``batch`` due schedules and fire them, as one transaction."""

    def go() -> Plan[list[tuple[Schedule, FireOutcome]]]:
        yield from run(stmts.catalog.statement_timeout(STATEMENT_TIMEOUT))
        due, clock = yield from run(stmts.schedules.claim_due(now, batch))
        if not due:
            return []
        assert clock is not None
        outcomes = []
        for s in due:
            outcomes.append((yield from fire(stmts, cache, s, spec_of, clock, misfire_grace)))
        moved = yield from run(
            stmts.schedules.advance(
                [s.id for s in due],
                [s.next_run_at for s in due],
                [o.next_run_at for o in outcomes],
                [o.fired_tick for o in outcomes],
            )
        )
        if len(moved) != len(due):  # cannot happen while we hold the row locks
            raise RuntimeError(f"schedules {set(s.id for s in due) - moved} did not advance")
        return list(zip(due, outcomes, strict=True))

    return (yield from atomic(go()))
