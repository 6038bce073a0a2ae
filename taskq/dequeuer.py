"""The worker side: claiming tasks and writing their outcome under a fenced lease.

Leases. ``dequeue`` gives every claim a fresh random token (``lease``) stored on the
row and carried by the returned Task. ``heartbeat``, ``finish`` and ``fail`` given that
Task change the row only where ``status = 'running' AND lease = <token>``: once the
rescue has taken the task back (it clears the lease) or another worker has claimed it
(a new lease), the stale worker's writes match nothing and raise ``LeaseLost``. Given
only an id they act on whichever claim is current. A row in a final status never
matches, so nothing overwrites a final status. All times come from the database clock.

Every write is one statement; when it matches no row, one more query (``diagnose``)
tells which error to raise (``taskq.actions.outcomes``, shared with
``taskq.aio.AsyncDequeuer``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskq.actions import outcomes as plans
from taskq.actions.outcomes import Outcome, Written
from taskq.clients import Client
from taskq.core.defaults import POOL_SIZE, RESCUE_BATCH, WORKER_STALE
from taskq.core.errors import TaskqError
from taskq.core.fencing import TaskRef
from taskq.core.types import JSON, Task
from taskq.core.waiting import Deadline, claim_queues, wake_keys
from taskq.db import Database

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics

events = logging.getLogger("taskq.events")


def raise_first(errors: dict[str, TaskqError]) -> None:
    if errors:
        raise next(iter(errors.values()))


class Dequeuer(Client):
    """Claims tasks and records heartbeats, results and failures.

    Built from a URI it owns a pool and a LISTEN connection (thread-safe; ``close()``
    it or use it as a context manager). ``worker_id`` ties claims to a worker process
    row, so the rescue can take back the tasks of a process that vanished.
    ``poll_interval``: seconds between claim attempts while no NOTIFY arrives (the
    safety net; behind a transaction pooler with no ``listen_url``, the only wake-up).
    """

    def __init__(
        self,
        db: Any = None,
        *,
        schema: str | None = None,
        worker_id: str | None = None,
        poll_interval: float | None = None,
        pool_size: int = POOL_SIZE,
        metrics: Metrics | None = None,
        pooler: str | None = None,
        listen_url: str | None = None,
    ) -> None:
        super().__init__(db, schema=schema, pool_size=pool_size, pooler=pooler,
                         listen_url=listen_url, poll_interval=poll_interval)  # fmt: skip
        self.worker_id = worker_id
        self.poll_interval = (
            poll_interval if poll_interval is not None else self._db.settings.poll_interval
        )
        self.metrics = metrics

    # ---- claiming ------------------------------------------------------------------

    def dequeue(self, *queues: str, timeout: float | None = None) -> Task | None:
        """Claim one runnable task from ``queues`` (any queue when none is named).

        Highest priority first, then earliest ``run_at``, then enqueue order. Blocks
        until a task is available (woken by NOTIFY, with a slow poll as safety net);
        with ``timeout`` returns None once it has passed.
        """
        tasks = self.dequeue_many(queues, 1, timeout=timeout)
        return tasks[0] if tasks else None

    def dequeue_many(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        timeout: float | None = 0.0,
        stop: threading.Event | None = None,
    ) -> list[Task]:
        """Claim up to ``limit`` tasks; wait up to ``timeout`` (None: forever) for any,
        or until ``stop`` is set."""
        if limit < 1:
            return []
        names = claim_queues(queues)
        tasks = self._claim(names, limit)
        if tasks or (timeout is not None and timeout <= 0):
            return tasks
        deadline = Deadline(timeout, self.poll_interval)
        listener = self._db.listener()
        keys = wake_keys(self._stmts.tasks.channel, names)
        if listener is not None:
            listener.interest(keys)
        try:
            while stop is None or not stop.is_set():
                mark = listener.mark(keys) if listener is not None else None
                tasks = self._claim(names, limit)
                if tasks:
                    return tasks
                wait = deadline.next_wait(cap=1.0 if stop is not None else None)
                if wait is None or (stop is not None and stop.is_set()):
                    return []
                if listener is not None and mark is not None:
                    listener.wait(keys, mark, wait)
                elif stop is not None:
                    stop.wait(wait)
                else:
                    time.sleep(wait)
            return []
        finally:
            if listener is not None:
                listener.forget(keys)

    def _claim(self, queues: Sequence[str], limit: int) -> list[Task]:
        tasks = self._db.query(self._stmts.tasks.dequeue(queues, limit, self.worker_id))
        if tasks and self.metrics is not None:
            self.metrics.observe_claimed(tasks)
        return tasks

    # ---- fenced writes -------------------------------------------------------------

    def heartbeat(self, task: TaskRef, progress: JSON = None) -> None:
        """Record ``progress`` and the heartbeat time of a running task.

        Raises TaskCancelled (stop working on it), TaskFinished, TaskNotRunning,
        TaskNotFound, or LeaseLost (given the claimed Task, when it was rescued since).
        """
        raise_first(self.heartbeat_many([(task, progress)]))

    def heartbeat_many(self, items: Iterable[tuple[TaskRef, JSON]]) -> dict[str, TaskqError]:
        """Heartbeat many tasks in one statement; returns an error per task that failed."""
        written = self._db.run(plans.heartbeat(self._stmts, items))
        if self.metrics is not None:
            self.metrics.observe_heartbeats(len(written.rows))
        return written.errors

    def finish(self, task: TaskRef, progress: JSON = None, result: JSON = None) -> None:
        """Mark a running task finished with ``result``; raises like ``heartbeat``."""
        raise_first(self.finish_many([Outcome(task, progress, result)]))

    def finish_many(self, outcomes: Sequence[Outcome]) -> dict[str, TaskqError]:
        """Finish many tasks in one statement; returns an error per task not finished."""
        return self._end("finish", outcomes)

    def fail(
        self, task: TaskRef, progress: JSON = None, error: object = None, *, final: bool = False
    ) -> None:
        """Fail a running task: back to waiting after the retry backoff while attempts
        remain (and ``final`` is false), else failed for good. ``error`` is stored
        without NUL characters and cut to MAX_ERROR_LENGTH. Raises like ``heartbeat``.
        """
        raise_first(self.fail_many([Outcome(task, progress, error=error, final=final)]))

    def fail_many(self, outcomes: Sequence[Outcome]) -> dict[str, TaskqError]:
        """Fail many tasks in one statement; returns an error per task not failed."""
        return self._end("fail", outcomes)

    def _end(self, kind: str, outcomes: Sequence[Outcome]) -> dict[str, TaskqError]:
        written: Written = self._db.run(
            plans.end(self._stmts, self._db.settings.columns, kind, outcomes)
        )
        if self.metrics is not None:
            self.metrics.observe_ended(written.rows)
        return written.errors

    def release(self, tasks: Sequence[Task]) -> set[str]:
        """Give claimed tasks back to waiting without charging an attempt."""
        back = self._db.run(plans.release(self._stmts, tasks))
        if self.metrics is not None:
            self.metrics.observe_released([t for t in tasks if t.id in back])
        return back

    def rescue(self, *, worker_stale: float = WORKER_STALE, limit: int = RESCUE_BATCH) -> int:
        """Take back stale running tasks (see ``taskq.services.rescuer``); returns how many."""
        return rescue_all(self._db, worker_stale=worker_stale, limit=limit, metrics=self.metrics)


def rescue_all(
    db: Database, *, worker_stale: float, limit: int = RESCUE_BATCH, metrics: Metrics | None = None
) -> int:
    """Rescue stale tasks in batches of ``limit`` (each its own transaction) until none
    is left; returns how many. Each rescue is logged on ``taskq.events``; a task whose
    rescue the database refuses is logged as an error and left for the next round."""
    total = 0
    while True:
        written = db.run(plans.rescue(db.settings.stmts, db.settings.columns, worker_stale, limit))
        total += len(written.rows)
        log_rescued(written)
        if metrics is not None and written.rows:
            metrics.observe_rescued(written.rows)
        if len(written.rows) + len(written.errors) < limit or not written.rows:
            return total


def log_rescued(written: Written) -> None:
    for r in written.rows:
        events.warning("task rescued", extra={
            "task_id": str(r["id"]), "queue": r["queue"], "task_type": r["type"],
            "attempt": r["attempts"], "status": r["status"], "error": r.get("error"),
        })  # fmt: skip
    for task_id, err in written.errors.items():
        events.error("task not rescued: %s", err, extra={"task_id": task_id})


__all__ = ["Dequeuer", "Outcome", "rescue_all"]
