"""The cron tick: the service in ``taskq scheduler`` that turns due schedules into tasks.

Exactly once per tick, with any number of scheduler processes and no leader. A round
claims due rows (``enabled AND next_run_at <= now``) with ``FOR UPDATE SKIP LOCKED``,
enqueues each one's task and moves its ``next_run_at`` past the tick in the same
transaction. Other processes skip the locked rows; once the claimer commits, the row
no longer matches, and READ COMMITTED re-checks a row changed by a transaction that
committed after the claiming statement began, so the tick is not claimed twice. Two
guards hold in the database as well: the task id is derived from (schedule id, tick)
(``task_id_for``), so a second task for a tick is a primary-key violation, which the
tick treats as "already fired"; and ``schedules_advance_check`` keeps ``next_run_at``
after the last fired tick.

The task carries the schedule's queue, type, spec and references, ``schedule_id``,
and ``run_at`` = the tick. Time is the database clock; ``run_once(now=...)`` replaces
it in tests. When an expression fires in its time zone, DST included: ``cron.py``.

Catch-up policy. A tick fired at most ``misfire_grace`` (default 10 s) after it came
due is merely late and fires as usual; so does every later tick that is also due, one
per round, so a busy or briefly stalled scheduler loses nothing. A tick found more
than ``misfire_grace`` overdue was missed (no scheduler ran): the schedule fires ONE
catch-up task, whose ``run_at`` is the first missed tick (so its handler knows since
when work is outstanding), and continues with the first tick after now. Downtime thus
costs one run per schedule, not one per missed tick. A schedule with ``skip_missed``
enqueues no catch-up task and simply continues with the first tick after now.

A tick that cannot be enqueued (a reference column dropped, a referenced row gone,
...) is logged, counted in ``taskq_scheduler_errors_total`` and passed over: the
schedule moves on to its next tick rather than failing in a tight loop.

Sleeping. After a round the service sleeps until the earliest ``next_run_at`` (by the
database clock), at most ``max_sleep`` (5 s) so a missed notification or a hand edit
is noticed; a NOTIFY from any schedule change (``Scheduler``) wakes it at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pgerr

from taskq import cron
from taskq.db import Database
from taskq.errors import TaskqError
from taskq.maintenance import is_outage
from taskq.queries import Conn, Queries
from taskq.queuer import insert_rows
from taskq.requests import to_row
from taskq.schedule_queries import ScheduleQueries
from taskq.types import Schedule, TaskEnqueueRequest

if TYPE_CHECKING:
    from taskq.metrics import Metrics
    from taskq.notify import Listener

log = logging.getLogger("taskq.scheduler")

DEFAULT_MISFIRE_GRACE = dt.timedelta(seconds=10)
MAX_SLEEP = 5.0
CLAIM_BATCH = 100
MAX_ROUNDS = 100
"""Rounds per run_once; more due work just makes the next delay zero."""
STATEMENT_TIMEOUT_MS = 30_000
RETRY_BROKEN = dt.timedelta(minutes=5)
"""A stored schedule that cannot be read (edited by hand) is tried again this much later."""
_WAKE_SLICE = 0.25  # how often a sleeping tick checks for shutdown


@dataclass(frozen=True, slots=True)
class Fired:
    """One task a tick enqueued."""

    schedule_id: str
    queue: str
    type: str
    run_at: dt.datetime
    task_id: str
    catch_up: bool


@dataclass(slots=True)
class TickResult:
    """What one ``run_once`` did."""

    fired: list[Fired] = field(default_factory=list)
    skipped: int = 0
    """Catch-up runs not enqueued because their schedule has skip_missed."""
    errors: int = 0
    """Ticks that could not be fired (logged, counted, passed over)."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    next_run_at: dt.datetime
    fired_tick: dt.datetime | None  # recorded as last_run_at
    fired: Fired | None = None
    skipped: bool = False
    error: bool = False


def task_id_for(schedule_id: str, tick: dt.datetime) -> str:
    """The id of the task for ``tick`` of a schedule: same inputs, same id."""
    stamp = tick.astimezone(dt.UTC).isoformat()
    return str(uuid.uuid5(uuid.UUID(schedule_id), stamp))


class CronTicker:
    """Fires due schedules (see the module docstring). A ``maintenance.Service``."""

    name = "scheduler"

    def __init__(
        self,
        db: Database,
        *,
        metrics: Metrics | None = None,
        misfire_grace: dt.timedelta = DEFAULT_MISFIRE_GRACE,
        max_sleep: float = MAX_SLEEP,
        batch: int = CLAIM_BATCH,
        listen: bool = True,
    ) -> None:
        self.db = db
        self.q = Queries(db.schema)
        self.sq = ScheduleQueries(db.schema)
        self.metrics = metrics
        self.misfire_grace = misfire_grace
        self.max_sleep = max_sleep
        self.batch = batch
        self._delay = max_sleep
        self._specs: dict[tuple[str, str], cron.CronSpec] = {}
        self._keys = ((self.sq.channel, "*"),)
        self._mark: tuple[int, tuple[int, ...]] | None = None
        self._listener: Listener | None = None
        url = db.listen_url() if listen else None
        if url is not None:
            from taskq.notify import Listener

            self._listener = Listener(url, [self.sq.channel], name="taskq-scheduler-listen")
            self._listener.interest(self._keys)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # ---- the Service protocol --------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> TickResult:
        """Fire every due tick; ``now`` replaces the database clock (tests)."""
        if self._listener is not None:
            self._mark = self._listener.mark(self._keys)
        result = TickResult()
        self._delay = self.max_sleep
        for _ in range(MAX_ROUNDS):
            if not self._round(now, result):
                break
        else:
            self._delay = 0.0
            return result
        if now is None:
            with self.db.connection() as conn:
                due_in = self.sq.next_due(conn)
            if due_in is not None:
                # a hair late rather than early, so the claim finds the tick due
                self._delay = min(self.max_sleep, max(0.0, due_in + 0.002))
        return result

    def next_delay(self) -> float:
        return self._delay

    def wait(self, delay: float, stop: threading.Event) -> None:
        """Sleep ``delay`` seconds, or until a schedule changed, or until ``stop``."""
        listener, mark = self._listener, self._mark
        if listener is None or mark is None:
            stop.wait(delay)
            return
        deadline = time.monotonic() + delay
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or listener.wait(self._keys, mark, min(left, _WAKE_SLICE)):
                return

    # ---- one round -----------------------------------------------------------------

    def _round(self, now: dt.datetime | None, result: TickResult) -> int:
        with self.db.transaction() as conn:
            self.sq.statement_timeout(conn, STATEMENT_TIMEOUT_MS)
            due, clock = self.sq.claim_due(conn, now, self.batch)
            if not due:
                return 0
            assert clock is not None
            outcomes = [self._fire(conn, s, clock) for s in due]
            moved = self.sq.advance(
                conn,
                [s.id for s in due],
                [s.next_run_at for s in due],
                [o.next_run_at for o in outcomes],
                [o.fired_tick for o in outcomes],
            )
            if len(moved) != len(due):  # cannot happen while we hold the row locks
                raise RuntimeError(f"schedules {set(s.id for s in due) - moved} did not advance")
        for s, o in zip(due, outcomes, strict=True):
            if o.fired is not None:
                result.fired.append(o.fired)
            result.skipped += o.skipped
            result.errors += o.error
            if self.metrics is not None and (o.fired is not None or o.error):
                labels = self.metrics.labels(s.queue, s.type)
                if o.error:
                    self.metrics.scheduler_errors.labels(*labels).inc()
                else:
                    self.metrics.scheduler_schedules.labels(*labels).inc()
                    self.metrics.tasks_total.labels(*labels, "waiting").inc()
        return len(due)

    def _spec(self, s: Schedule) -> cron.CronSpec:
        key = (s.cron_schedule, s.timezone)
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) > 10_000:
                self._specs.clear()
            spec = self._specs[key] = cron.parse(s.cron_schedule, s.timezone)
        return spec

    def _fire(self, conn: Conn, s: Schedule, clock: dt.datetime) -> _Outcome:
        tick = s.next_run_at
        missed = clock - tick > self.misfire_grace
        where = f"schedule {s.id} (queue {s.queue!r}, type {s.type!r})"
        try:
            nxt = cron.next_fire(self._spec(s), clock if missed else tick)
        except Exception as e:  # stored by hand, or the time zone left the tz database
            log.error("%s cannot be read: %s; trying again in %s", where, e, RETRY_BROKEN)
            return _Outcome(max(clock, tick) + RETRY_BROKEN, None, error=True)
        if missed and s.skip_missed:
            log.info("%s: skipped the ticks missed since %s (skip_missed)", where, tick)
            return _Outcome(nxt, None, skipped=True)
        task_id = task_id_for(s.id, tick)
        request = TaskEnqueueRequest(
            queue=s.queue, type=s.type, spec=s.spec, references=s.references, run_at=tick
        )
        try:
            row = to_row(request, extra={"id": task_id, "schedule_id": s.id})
            with conn.transaction():  # a savepoint: a failure here spares the other rows
                insert_rows(conn, self.q, [row])
        except pgerr.UniqueViolation as e:
            if e.diag.constraint_name != "tasks_pkey":
                raise
            log.info("%s: tick %s was already fired (task %s)", where, tick, task_id)
            return _Outcome(nxt, tick)
        except (TaskqError, psycopg.Error) as e:
            if isinstance(e, psycopg.Error) and is_outage(e):
                raise
            log.warning("%s: tick %s not fired: %s", where, tick, str(e).splitlines()[0])
            return _Outcome(nxt, None, error=True)
        if missed:
            log.info("%s: one catch-up run for the ticks missed since %s", where, tick)
        fired = Fired(s.id, s.queue, s.type, tick, task_id, catch_up=missed)
        return _Outcome(nxt, tick, fired=fired)
