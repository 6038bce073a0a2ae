"""The worker process (``taskq worker``): claims tasks, runs their handlers, writes
their outcomes, heartbeats, rescues.

Threads, each with one job, each a service with a ``run_once`` a test can call:

- the dispatcher (``dispatcher.py``) writes outcomes and claims exactly as many tasks
  as there are free slots, usually in one statement, waiting on NOTIFY with a slow
  poll when there is nothing to do;
- slot threads run sync handlers; one event loop runs ``async def`` handlers through
  the asyncio face (``slots.py``);
- the heartbeater (``heartbeater.py``) keeps held tasks and the worker's row fresh,
  learns of cancellations and enforces timeouts;
- the rescuer takes back the tasks of vanished workers.

What each held task is doing lives in one place, the ledger (``ledger.py``), with its
state diagram.

Fairness: a task is claimed only for a slot that is free now and started at once, so
with N free slots across all live workers and N runnable tasks, all N run. A timeout
counts from the handler's start.

Shutdown (SIGTERM/SIGINT): stop claiming; a task claimed but not started goes back at
once without an attempt charged; running handlers get the grace period; then the rest
go back too (no attempt charged), outcomes are flushed, the worker row says stopped,
and the process exits 0. A second signal skips the grace period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from taskq.core.config import describe_target
from taskq.core.defaults import CONCURRENCY, GRACE, PREFETCH, RESCUE_INTERVAL, WORKER_STALE
from taskq.core.errors import LeaseLost, TaskCancelled, TaskFinished, TaskNotFound
from taskq.core.types import JSON, Task
from taskq.db import Database
from taskq.db.side import SideConnection
from taskq.dequeuer import Dequeuer
from taskq.ops.http import reason
from taskq.ops.metrics import Metrics
from taskq.registry import Registry, TaskContext
from taskq.services.base import Runner
from taskq.services.rescuer import Rescuer
from taskq.worker.dispatcher import Dispatcher
from taskq.worker.heartbeater import Heartbeater
from taskq.worker.identity import Identity
from taskq.worker.ledger import Held, Ledger, State
from taskq.worker.slots import EventLoop, SlotThreads, fields

log = logging.getLogger("taskq.worker")
events = logging.getLogger("taskq.events")

FLUSH_TIMEOUT = 10.0
"""At shutdown, seconds to wait for decided outcomes to be written."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    queues: tuple[str, ...] = ()
    concurrency: int = CONCURRENCY
    min_concurrency: int | None = None
    grace: float = GRACE
    rescue_interval: float = RESCUE_INTERVAL
    worker_stale: float = WORKER_STALE
    poll_interval: float | None = None  # None: the database's (POLL_INTERVAL, or pooler's)
    prefetch: bool = PREFETCH  # reserve beyond free slots for short tasks (see dispatcher.py)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.min_concurrency is not None and not 1 <= self.min_concurrency <= self.concurrency:
            raise ValueError("min concurrency must be between 1 and the concurrency")
        if self.grace < 0:
            raise ValueError("grace must be at least 0 seconds")


class Worker:
    """Runs the handlers of ``registry`` for tasks of ``config.queues`` (any when empty)."""

    def __init__(
        self,
        registry: Registry,
        db: Database,
        config: WorkerConfig | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.config = config or WorkerConfig()
        self.db = db
        self.identity = Identity()
        self.metrics = metrics
        self.stmts = db.settings.stmts
        self.dequeuer = Dequeuer(db, worker_id=self.identity.id,
                                 poll_interval=self.config.poll_interval, metrics=metrics)  # fmt: skip
        self.stop_claiming = threading.Event()
        self.stopped = threading.Event()
        self._force = threading.Event()
        self.ledger = Ledger(self.config.concurrency,
                             on_start=self._started if metrics is not None else None)  # fmt: skip
        self.dispatcher = Dispatcher(
            db, self.dequeuer, self.ledger, self._dispatch, queues=self.config.queues,
            poll_interval=self.dequeuer.poll_interval, stop_claiming=self.stop_claiming,
            min_slots=self.config.min_concurrency, prefetch=self.config.prefetch,
            metrics=metrics,
        )  # fmt: skip
        ran = self.dispatcher.ran
        self.slots = SlotThreads(registry, self.ledger, self.config.concurrency, ran)
        self.loop: EventLoop | None = None
        if any(t.is_async for n in registry if (t := registry.get(n)) is not None):
            self.loop = EventLoop(registry, self.ledger, self._async_dequeuer, ran)
        self.heartbeater = Heartbeater(
            db, self.dequeuer, self.ledger, worker_id=self.identity.id,
            worker_stale=self.config.worker_stale, timeout_of=self._timeout,
            register=self._register,
        )  # fmt: skip
        self.rescuer = Rescuer(db, interval=self.config.rescue_interval,
                               worker_stale=self.config.worker_stale, metrics=metrics)  # fmt: skip
        self._runner = Runner([self.dispatcher, self.heartbeater, self.rescuer],
                              one_outage_line=True)  # fmt: skip

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> bool:
        """Wait for the database (saying so at once, obeying ``request_stop``), register
        this process and start every thread; False if stopped before it could start."""
        if not self._await_database():
            return False
        self._register()
        self.slots.start()
        if self.loop is not None:
            self.loop.start()
        listener = self.db.listener()
        if listener is not None:
            keys = [(self.stmts.tasks.channel, q) for q in self.config.queues] or [
                (self.stmts.tasks.channel, "*")
            ]
            listener.on(keys, self.dispatcher.woken)
        self._runner.start()
        log.info("worker %s started: queues %s, concurrency %s", self.identity,
                 ",".join(self.config.queues) or "*", self.config.concurrency)  # fmt: skip
        return True

    def _await_database(self) -> bool:
        url = self.db.url
        said = False
        side = SideConnection(self.db, application_name="taskq-check")
        while url is not None and not self.stop_claiming.is_set():
            try:
                side.run(self.stmts.catalog.ping, 2.0)
                side.close()
                if said:
                    log.warning("database reachable; starting")
                return True
            except Exception as e:
                if not said:
                    log.warning("waiting for the database at %s (%s)", describe_target(url),
                                reason(e))  # fmt: skip
                    said = True
                self.stop_claiming.wait(1.0)
        return not self.stop_claiming.is_set()

    def request_stop(self) -> None:
        """First call: stop claiming and drain within the grace period. Second: at once."""
        if self.stop_claiming.is_set():
            self._force.set()
            self.ledger.poke()
        self.stop_claiming.set()
        self.ledger.poke()

    def shutdown(self) -> None:
        """Stop claiming; give back what has not started; let running handlers finish
        within the grace period; give back the rest; flush outcomes; deregister."""
        self.stop_claiming.set()
        self._give_back(self.ledger.release_claimed())
        deadline = time.monotonic() + self.config.grace
        while not self._force.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.ledger.wait(lambda: self.ledger.executing() == 0 or self._force.is_set(),
                                min(left, 0.25)):  # fmt: skip
                break
        leftovers = self.ledger.release_running()
        for h in leftovers:
            h.ctx.mark_cancelled()
            if h.cancel is not None:
                h.cancel()
        self._give_back(leftovers)
        self.ledger.wait(lambda: not self.ledger.in_state(State.DECIDED), FLUSH_TIMEOUT)
        self.stopped.set()
        self._runner.stop(timeout=5.0)
        self.slots.stop()
        if self.loop is not None:
            self.loop.stop()
        try:
            self.db.query(self.stmts.workers.stopped(self.identity.id))
        except Exception as e:
            log.warning("could not mark worker stopped: %s", _first_line(e))
        log.info("worker %s stopped", self.identity)

    def _give_back(self, held: Sequence[Held]) -> None:
        if not held:
            return
        for attempt in range(3):
            try:
                back = self.dequeuer.release([h.task for h in held])
                log.warning("shutdown: %d unstarted or unfinished task(s) back to waiting",
                            len(back))  # fmt: skip
                for h in held:
                    if h.task.id in back:
                        events.info("task released", extra=fields(h.task) | {"status": "waiting"})
                return
            except Exception as e:
                log.warning("shutdown: could not release tasks (%s)", _first_line(e))
                time.sleep(0.5 * (attempt + 1))

    def _register(self) -> None:
        while True:
            try:
                self.db.query(self.stmts.workers.register(
                    self.identity.id, self.identity.host, self.identity.pid,
                    list(self.config.queues), self.config.concurrency,
                ))  # fmt: skip
                return
            except Exception as e:
                if self.stop_claiming.is_set():
                    return
                log.warning("cannot register worker yet: %s", _first_line(e))
                self.stop_claiming.wait(2.0)

    # ---- claimed tasks to slots ------------------------------------------------------

    def _started(self, task: Task) -> None:
        """A handler starts: count the attempt and how long the task waited since due
        (a reserved task's started_at is written a moment later: use the clock now)."""
        assert self.metrics is not None
        if task.started_at is None:
            task = replace(task, started_at=datetime.now(UTC))
        self.metrics.observe_claimed([task])

    def _dispatch(self, task: Task) -> None:
        # reserved: the attempt it is about to make (task.attempts) is charged when it
        # starts (see dispatcher.py)
        areport = self.loop.report if self.loop is not None else None
        h = self.ledger.claimed(task, TaskContext(task, self._report, areport=areport),
                                charged=not self.config.prefetch)  # fmt: skip
        if self.stop_claiming.is_set():
            return  # the shutdown releases it (claimed, never started)
        ttype = self.registry.get(task.type)
        if ttype is None:
            self.ledger.decide(h, _no_handler(task), False)
            return
        if events.isEnabledFor(logging.INFO):
            events.info("task started", extra=fields(task) | {"status": "running"})
        if ttype.is_async and self.loop is not None:
            self.loop.submit(h)
        else:
            self.slots.submit(h)

    def _report(self, task: Task, value: JSON) -> None:
        """``ctx.progress``: write now under this claim (raises TaskCancelled etc.)."""
        try:
            self.dequeuer.heartbeat(task, value)
        except (LeaseLost, TaskFinished, TaskNotFound) as e:
            raise TaskCancelled(task.id) from e

    def _async_dequeuer(self) -> Any:
        from taskq.aio import AsyncDequeuer

        return AsyncDequeuer(self.db.url, schema=self.db.schema, worker_id=self.identity.id,
                             pool_size=2, pooler=self.db.settings.pooler)  # fmt: skip

    def _timeout(self, task: Task) -> float | None:
        """The task's own timeout, else its registered type's."""
        if task.timeout is not None:
            return task.timeout
        options = self.registry.options(task.type)
        return options.timeout if options is not None else None

    # ---- introspection for tests and the CLI ---------------------------------------

    def held_ids(self) -> list[str]:
        return [h.task.id for h in self.ledger.held()]


def _no_handler(task: Task) -> Any:
    from taskq.actions.outcomes import Outcome

    return Outcome(task, error=f"no handler registered for task type {task.type!r} in this "
                   "worker", final=False)  # fmt: skip


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
