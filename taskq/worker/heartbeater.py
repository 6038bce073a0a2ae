"""The heartbeater: keeps every held task's heartbeat fresh (one statement for all of
them) and the worker's own row, learns of cancellations, and enforces per-task
timeouts, counted from the moment the handler started (never from the claim).

It runs on its own thread, so a CPU-bound handler or a blocked event loop cannot
starve it, and it heartbeats decided outcomes still waiting to be written too, so a
slow write never lets the rescue take a task whose handler finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskq.actions.outcomes import Outcome
from taskq.core.errors import TaskCancelled
from taskq.core.types import Task
from taskq.db import Database
from taskq.dequeuer import Dequeuer
from taskq.services.base import Service
from taskq.worker.ledger import HELD, Ledger, State
from taskq.worker.slots import fields

log = logging.getLogger("taskq.worker")
events = logging.getLogger("taskq.events")


@dataclass(frozen=True, slots=True)
class Beat:
    """What one ``run_once`` did."""

    heartbeats: int
    cancelled: int
    timed_out: int


class Heartbeater(Service):
    name = "heartbeater"

    def __init__(
        self,
        db: Database,
        dequeuer: Dequeuer,
        ledger: Ledger,
        *,
        worker_id: str,
        worker_stale: float,
        timeout_of: Callable[[Task], float | None],
        register: Callable[[], None],
    ) -> None:
        self.db = db
        self.dequeuer = dequeuer
        self.ledger = ledger
        self.worker_id = worker_id
        self.worker_stale = worker_stale
        self.timeout_of = timeout_of
        self.register = register
        self._last_beat = 0.0

    def beat_interval(self) -> float:
        """A quarter of the shortest heartbeat timeout (or task timeout) held, so
        heartbeats and timeouts stay on time; at most 10 s and a quarter of the worker
        staleness window."""
        limits = [h.task.heartbeat_timeout for h in self.ledger.held()]
        limits += [t for h in self.ledger.held() if (t := self.timeout_of(h.task))]
        shortest = min(limits, default=60.0)
        return max(0.1, min(shortest / 4, self.worker_stale / 4, 10.0))

    def next_delay(self) -> float:
        # wake often: the interval shrinks as soon as a short-timeout task is claimed
        return min(self.beat_interval(), 0.5)

    def run_once(self, now: object = None) -> Beat:
        timed_out = self.enforce_timeouts()
        if time.monotonic() - self._last_beat < self.beat_interval():
            return Beat(0, 0, timed_out)
        self._last_beat = time.monotonic()
        held = [h for h in self.ledger.held() if h.state in HELD]
        cancelled = 0
        if held:
            errors = self.dequeuer.heartbeat_many((h.task, None) for h in held)
            for h in held:
                err = errors.get(h.task.id)
                if err is not None:
                    h.ctx.mark_cancelled()
                    cancelled += 1
                    if isinstance(err, TaskCancelled):
                        events.info("task cancelled; telling its handler", extra=fields(h.task))
        if self.db.query(self.db.settings.stmts.workers.seen(self.worker_id,
                                                             self.ledger.executing())) == 0:  # fmt: skip
            self.register()  # the row was pruned (a long outage): announce again
        return Beat(len(held), cancelled, timed_out)

    def enforce_timeouts(self) -> int:
        now = time.monotonic()
        late = [
            (h, limit) for h in self.ledger.in_state(State.RUNNING)
            if h.started is not None and (limit := self.timeout_of(h.task)) is not None
            and now - h.started > limit
        ]  # fmt: skip
        for h, limit in late:
            # decide first: the cancelled handler must find its outcome already taken
            outcome = Outcome(h.task, error=f"timed out after {limit:g} s", kind="timeout")
            if self.ledger.decide(h, outcome, False):
                h.ctx.mark_cancelled()
                if h.cancel is not None:
                    h.cancel()
        return len(late)
