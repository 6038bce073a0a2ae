"""The ``Scheduler`` API's operations as plans: create or update, check, remove,
pause and resume cron schedules. Every change is one transaction that NOTIFYs the
scheduler processes, so a sleeping one wakes to the new next tick."""

from __future__ import annotations

import datetime as dt
import json
import logging

from taskq.actions.enqueue import ColumnCache, check_references
from taskq.actions.plan import Plan, atomic, just, run
from taskq.core import cron
from taskq.core.defaults import MAX_SPEC_BYTES
from taskq.core.encode import encode_json, utf8_length
from taskq.core.errors import InvalidSchedule, InvalidTask, NotScheduled
from taskq.core.schedules import ScheduleKey, describe, schedule_key
from taskq.core.types import Schedule, TaskScheduleRequest
from taskq.sql import Statements

log = logging.getLogger("taskq.scheduler")


def _check_references(stmts: Statements, cache: ColumnCache, key: ScheduleKey) -> Plan[None]:
    if key.ref_names:
        yield from check_references(stmts, cache, "schedules", key.ref_names)
        yield from check_references(stmts, cache, "tasks", key.ref_names)


def schedule(
    stmts: Statements, cache: ColumnCache, request: TaskScheduleRequest, now: dt.datetime | None
) -> Plan[Schedule]:
    """Create the schedule, or update the one with the same (queue, type, references)."""
    if not isinstance(request, TaskScheduleRequest):
        raise TypeError(f"expected a TaskScheduleRequest, got {type(request).__name__}")
    key = schedule_key(request.queue, request.type, request.references)
    where = describe(request.queue, request.type)
    try:
        spec = cron.parse(request.cron_schedule, request.timezone)
    except InvalidSchedule as e:
        raise InvalidSchedule(f"{where}: {e}") from None
    spec_json = encode_json(request.spec, f"spec of {where}")
    if utf8_length(spec_json) > MAX_SPEC_BYTES:
        raise InvalidTask(f"spec of {where} is larger than {MAX_SPEC_BYTES} bytes of JSON")
    if not isinstance(request.skip_missed, bool):
        raise TypeError(f"skip_missed of {where} must be a bool")

    def go() -> Plan[tuple[Schedule, bool]]:
        yield from _check_references(stmts, cache, key)
        clock = yield from run(stmts.schedules.now(now))
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
        return (yield from run(stmts.schedules.upsert(encode_json(row, where), key.ref_names, key)))

    found, created = yield from atomic(go())
    log.info("%s %s (%s)", "created" if created else "updated", where, found.id)
    return found


def ensure(stmts: Statements, cache: ColumnCache, key: ScheduleKey) -> Plan[None]:
    """Return quietly if the schedule exists (paused or not); else NotScheduled."""
    yield from _check_references(stmts, cache, key)
    # atomic: a reference value the column refuses must not abort a caller's transaction
    if not (yield from atomic(just(stmts.schedules.exists(key)), single=True)):
        raise NotScheduled(key.queue, key.type, key.references())


def unschedule(stmts: Statements, cache: ColumnCache, key: ScheduleKey) -> Plan[bool]:
    """Remove the schedule; True if there was one."""
    yield from _check_references(stmts, cache, key)
    return bool((yield from atomic(just(stmts.schedules.delete(key)), single=True)))


def _find(stmts: Statements, cache: ColumnCache, key: ScheduleKey) -> Plan[Schedule]:
    yield from _check_references(stmts, cache, key)
    found = yield from run(stmts.schedules.find(key))
    if found is None:
        raise NotScheduled(key.queue, key.type, key.references())
    return found


def pause(stmts: Statements, cache: ColumnCache, key: ScheduleKey) -> Plan[Schedule]:
    def go() -> Plan[Schedule]:
        found = yield from _find(stmts, cache, key)
        changed = yield from run(stmts.schedules.set_enabled(found.id, False, None))
        assert changed is not None  # the row is locked by _find
        return changed

    return (yield from atomic(go()))


def resume(
    stmts: Statements, cache: ColumnCache, key: ScheduleKey, now: dt.datetime | None
) -> Plan[Schedule]:
    """Fire again from the first tick after now (no catch-up for the paused time)."""

    def go() -> Plan[Schedule]:
        found = yield from _find(stmts, cache, key)
        if found.enabled:
            return found
        clock = yield from run(stmts.schedules.now(now))
        if found.last_run_at is not None:
            clock = max(clock, found.last_run_at)
        spec = cron.parse(found.cron_schedule, found.timezone)
        changed = yield from run(
            stmts.schedules.set_enabled(found.id, True, cron.next_fire(spec, clock))
        )
        assert changed is not None
        return changed

    return (yield from atomic(go()))
