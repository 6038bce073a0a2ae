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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskq.actions.tick import Fired, task_id_for, tick_round
from taskq.core import cron
from taskq.core.defaults import MISFIRE_GRACE, SCHEDULER_MAX_SLEEP
from taskq.core.types import Schedule
from taskq.db import Database
from taskq.services.base import Service

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics

log = logging.getLogger("taskq.scheduler")

CLAIM_BATCH = 100
MAX_ROUNDS = 100
"""Rounds per run_once; more due work just makes the next delay zero."""
_WAKE_SLICE = 0.25  # how often a sleeping tick checks for shutdown

__all__ = ["CronTicker", "Fired", "TickResult", "task_id_for"]


@dataclass(slots=True)
class TickResult:
    """What one ``run_once`` did."""

    fired: list[Fired] = field(default_factory=list)
    skipped: int = 0
    """Catch-up runs not enqueued because their schedule has skip_missed."""
    errors: int = 0
    """Ticks that could not be fired (logged, counted, passed over)."""


class CronTicker(Service):
    """Fires due schedules (see the module docstring)."""

    name = "scheduler"

    def __init__(
        self,
        db: Database,
        *,
        metrics: Metrics | None = None,
        misfire_grace: dt.timedelta = MISFIRE_GRACE,
        max_sleep: float = SCHEDULER_MAX_SLEEP,
        batch: int = CLAIM_BATCH,
        listen: bool = True,
    ) -> None:
        self.db = db
        self.stmts = db.settings.stmts
        self.metrics = metrics
        self.misfire_grace = misfire_grace
        self.max_sleep = max_sleep
        self.batch = batch
        self._delay = max_sleep
        self._specs: dict[tuple[str, str], cron.CronSpec] = {}
        self._keys = ((self.stmts.schedules.channel, "*"),)
        self._mark: tuple[int, tuple[int, ...]] | None = None
        self._listener = db.listener() if listen else None
        if self._listener is not None:
            self._listener.interest(self._keys)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.forget(self._keys)
            self._listener = None

    # ---- the Service ---------------------------------------------------------------

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
            due_in = self.db.query(self.stmts.schedules.next_due())
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

    def _spec(self, s: Schedule) -> cron.CronSpec:
        key = (s.cron_schedule, s.timezone)
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) > 10_000:
                self._specs.clear()
            spec = self._specs[key] = cron.parse(s.cron_schedule, s.timezone)
        return spec

    def _round(self, now: dt.datetime | None, result: TickResult) -> int:
        plan = tick_round(self.stmts, self.db.settings.columns, now, self.batch, self._spec,
                          self.misfire_grace)  # fmt: skip
        fired = self.db.run(plan)
        for s, o in fired:
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
        return len(fired)
