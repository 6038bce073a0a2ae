"""The worker process: claims tasks, runs their handlers, writes outcomes, heartbeats.

Threads, each with one job:

- the fetcher claims as many tasks as there are free slots (one round trip for the
  batch), waiting on NOTIFY with a slow poll when there is nothing to do;
- N slot threads run sync handlers; one event-loop thread runs async handlers;
- the completer writes outcomes in batches (one statement per batch of finishes and
  one per batch of failures), so a busy worker is not held to a round trip per task;
- the heartbeater refreshes every held task's heartbeat (one statement) and the
  worker's own row at a fraction of the shortest heartbeat timeout, learns of
  cancellations, and enforces per-task timeouts. It runs on its own thread, so a
  CPU-bound handler or a blocked event loop cannot starve it;
- the maintenance thread runs the rescue.

A task is *held* from its claim until its outcome is written: heartbeats continue
while an outcome waits in the completer (say, during a database outage), so a slow
write never lets the rescue take a task that actually finished.

Shutdown (SIGTERM/SIGINT): stop claiming, let running handlers finish within the
grace period, then give the rest back to waiting at once without charging an attempt,
flush outcomes and exit 0. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskq.db import Database
from taskq.dequeuer import Dequeuer, Outcome
from taskq.errors import LeaseLost, TaskCancelled, TaskFailed, TaskFinished, TaskNotFound
from taskq.maintenance import DEFAULT_RESCUE_INTERVAL, Maintenance, Rescuer
from taskq.metrics import Metrics
from taskq.queries import Queries
from taskq.registry import Registry, TaskContext, TaskType
from taskq.requests import encode_json
from taskq.types import JSON, Task
from taskq.worker.identity import WORKER_STALE, Identity

log = logging.getLogger("taskq.worker")
events = logging.getLogger("taskq.events")

COMPLETE_BATCH = 100
"""Most outcomes written by one statement."""

MAX_CLAIM = 100
"""Most tasks claimed (running plus prefetched) by one statement."""

PREFETCH_HORIZON = 0.05
"""Seconds within which prefetched tasks are expected to start."""


@dataclass
class Held:
    """A claimed task from claim until its outcome is written."""

    task: Task
    ctx: TaskContext
    started: float = field(default_factory=time.monotonic)
    done: bool = False  # an outcome was decided (by the handler, a timeout or shutdown)
    future: Any = None  # the asyncio future of an async handler


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    queues: tuple[str, ...] = ()
    concurrency: int = 10
    min_concurrency: int | None = None
    grace: float = 10.0
    rescue_interval: float = DEFAULT_RESCUE_INTERVAL
    worker_stale: float = WORKER_STALE
    poll_interval: float = 2.0
    prefetch: int | None = None  # None: automatic (see Worker._prefetch)

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
        self.q = Queries(db.schema)
        self.dequeuer = Dequeuer(
            db, worker_id=self.identity.id, poll_interval=self.config.poll_interval,
            metrics=metrics,
        )  # fmt: skip
        self.stop_claiming = threading.Event()
        self.stopped = threading.Event()
        self._force = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._running = 0  # handlers executing (slots in use)
        self._slot_freed = threading.Event()
        self._work: queue.Queue[Held | None] = queue.Queue()
        self._outcomes: queue.Queue[tuple[Held, Outcome, bool]] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._fetcher: threading.Thread | None = None
        self._maintenance = Maintenance(
            [Rescuer(db, interval=self.config.rescue_interval,
                     worker_stale=self.config.worker_stale, metrics=metrics)]
        )  # fmt: skip
        self._limit = self.config.min_concurrency or self.config.concurrency
        self._avg_duration = 0.1  # seconds, moving average of handler run time
        self._idle_since = time.monotonic()
        self._outage = False

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Register this process and start all threads; returns at once."""
        self.db.wait_ready(timeout=60)
        self._register()
        for i in range(self.config.concurrency):
            self._spawn(self._slot_loop, f"taskq-slot-{i}")
        if any(self.registry.get(n).is_async for n in self.registry):  # type: ignore[union-attr]
            self._loop = asyncio.new_event_loop()
            self._spawn(self._loop.run_forever, "taskq-asyncio")
        self._spawn(self._complete_loop, "taskq-completer")
        self._spawn(self._heartbeat_loop, "taskq-heartbeat")
        self._fetcher = self._spawn(self._fetch_loop, "taskq-fetcher")
        self._maintenance.start()
        log.info(
            "worker %s started: queues %s, concurrency %s",
            self.identity, ",".join(self.config.queues) or "*", self.config.concurrency,
        )  # fmt: skip

    def _spawn(self, target: Any, name: str) -> threading.Thread:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def request_stop(self) -> None:
        """First call: stop claiming and drain within the grace period. Second: at once."""
        if self.stop_claiming.is_set():
            self._force.set()
        self.stop_claiming.set()

    def shutdown(self) -> None:
        """Stop claiming, wait up to the grace period, release the rest, flush, deregister."""
        self.stop_claiming.set()
        deadline = time.monotonic() + self.config.grace
        # The fetcher gives back anything it claims after the stop; wait for it so no
        # claim can land after the release below.
        if self._fetcher is not None:
            self._fetcher.join(timeout=max(self.config.grace, 5.0))
        while time.monotonic() < deadline and not self._force.is_set():
            with self._lock:
                if self._running == 0:
                    break
            time.sleep(0.05)
        leftovers: list[Held] = []
        with self._lock:
            for h in self._held.values():
                if not h.done:
                    h.done = True
                    leftovers.append(h)
        for h in leftovers:
            h.ctx.mark_cancelled()
            if h.future is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(h.future.cancel)
        if leftovers:
            self._release(leftovers)
        self._flush(timeout=10.0)
        self.stopped.set()
        for _ in range(self.config.concurrency):
            self._work.put(None)
        self._maintenance.stop()
        try:
            with self.db.connection() as conn:
                self.q.worker(conn, "stopped", id=self.identity.id)
        except Exception as e:
            log.warning("could not mark worker stopped: %s", _first_line(e))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        log.info("worker %s stopped", self.identity)

    def _release(self, held: Sequence[Held]) -> None:
        for attempt in range(3):
            try:
                back = self.dequeuer.release([h.task for h in held])
                log.warning("shutdown: %d unfinished task(s) back to waiting", len(back))
                for h in held:
                    if h.task.id in back:
                        events.info("task released", extra=_fields(h.task) | {"status": "waiting"})
                break
            except Exception as e:
                log.warning("shutdown: could not release tasks (%s)", _first_line(e))
                time.sleep(0.5 * (attempt + 1))
        with self._lock:
            for h in held:
                self._held.pop(h.task.id, None)

    def _register(self) -> None:
        while True:
            try:
                with self.db.connection() as conn:
                    self.q.worker(
                        conn, "register", id=self.identity.id, host=self.identity.host,
                        pid=self.identity.pid, queues=list(self.config.queues),
                        concurrency=self.config.concurrency,
                    )  # fmt: skip
                return
            except Exception as e:
                if self.stop_claiming.is_set():
                    return
                log.warning("cannot register worker yet: %s", _first_line(e))
                self.stop_claiming.wait(2.0)

    # ---- claiming ------------------------------------------------------------------

    def _free_slots(self) -> int:
        """Slots minus tasks claimed whose outcome is not decided yet (running or queued
        to start). Decided outcomes waiting to be written do not hold a slot."""
        with self._lock:
            busy = sum(1 for h in self._held.values() if not h.done)
            return self._limit + self._prefetch() - busy

    def _prefetch(self) -> int:
        """Tasks to claim beyond free slots: ``--prefetch`` when set, else only as many
        as the slots will start within about PREFETCH_HORIZON seconds at the recent
        handler duration (so short tasks are claimed in big batches, long ones never
        wait claimed behind others)."""
        if self.config.prefetch is not None:
            return self.config.prefetch
        per_task = max(self._avg_duration, 1e-4)
        fits = int(self._limit * PREFETCH_HORIZON / per_task)
        return max(0, min(fits, MAX_CLAIM - self._limit))

    def _fetch_loop(self) -> None:
        backoff = 0.2
        while not self.stop_claiming.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.wait(0.5)
                self._slot_freed.clear()
                continue
            try:
                tasks = self.dequeuer.dequeue_many(
                    self.config.queues, free, timeout=1.0, stop=self.stop_claiming
                )
                if self._outage:
                    log.warning("database reachable again; claiming resumed")
                    self._outage = False
                backoff = 0.2
            except Exception as e:
                if not self._outage:
                    log.warning("cannot claim tasks (%s); retrying with backoff", _first_line(e))
                    self._outage = True
                self.stop_claiming.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._autoscale(len(tasks), free)
            if self.stop_claiming.is_set() and tasks:
                self._release([self._hold(t) for t in tasks])
                return
            for t in tasks:
                self._dispatch(self._hold(t))

    def _autoscale(self, claimed: int, asked: int) -> None:
        """Grow the slot limit toward the maximum while claims come back full; shrink it
        toward the minimum after 30 s without work."""
        if self.config.min_concurrency is None:
            return
        now = time.monotonic()
        if claimed and claimed >= asked:
            self._limit = min(self.config.concurrency, max(self._limit * 2, self._limit + 1))
        if claimed:
            self._idle_since = now
        elif now - self._idle_since > 30 and self._limit > self.config.min_concurrency:
            self._limit = max(self.config.min_concurrency, self._limit // 2)
            self._idle_since = now

    def _hold(self, task: Task) -> Held:
        ctx = TaskContext(task, self._report)
        h = Held(task, ctx)
        with self._lock:
            self._held[task.id] = h
        return h

    def _dispatch(self, h: Held) -> None:
        ttype = self.registry.get(h.task.type)
        if ttype is None:
            self._decide(h, Outcome(h.task, error=f"no handler registered for task type "
                                    f"{h.task.type!r} in this worker", final=False), False)  # fmt: skip
            return
        with self._lock:
            self._running += 1
        if events.isEnabledFor(logging.INFO):
            events.info("task started", extra=_fields(h.task) | {"status": "running"})
        if ttype.is_async and self._loop is not None:
            h.future = asyncio.run_coroutine_threadsafe(self._run_async(ttype, h), self._loop)
        else:
            self._work.put(h)

    # ---- running -------------------------------------------------------------------

    def _slot_loop(self) -> None:
        while True:
            h = self._work.get()
            if h is None:
                return
            if h.done:  # given back at shutdown before it started
                with self._lock:
                    self._running -= 1
                continue
            ttype = self.registry.get(h.task.type)
            assert ttype is not None
            token = h.ctx.bind()
            try:
                result = ttype.handler(h.ctx)
                self._handled(h, result, None)
            except BaseException as e:
                self._handled(h, None, e)
            finally:
                TaskContext.unbind(token)

    async def _run_async(self, ttype: TaskType, h: Held) -> None:
        token = h.ctx.bind()
        try:
            result = await ttype.handler(h.ctx)
            self._handled(h, result, None)
        except BaseException as e:  # CancelledError too: a timeout or shutdown decided it
            self._handled(h, None, e)
        finally:
            TaskContext.unbind(token)

    def _handled(self, h: Held, result: JSON, exc: BaseException | None) -> None:
        """A handler returned or raised: decide the outcome (unless already decided)."""
        with self._lock:
            self._running -= 1
            took = time.monotonic() - h.started
            self._avg_duration += (took - self._avg_duration) * 0.05
        self._slot_freed.set()
        if exc is None:
            try:
                encode_json(result, f"result of task {h.task.id}")
                outcome = Outcome(h.task, result=result)
                ok = True
            except ValueError as e:
                outcome, ok = Outcome(h.task, error=str(e), final=True), False
        elif isinstance(exc, TaskFailed):
            outcome, ok = Outcome(h.task, error=str(exc) or "task failed", final=True), False
        elif isinstance(exc, TaskCancelled | LeaseLost | TaskFinished | TaskNotFound):
            self._drop(h, f"handler stopped: {type(exc).__name__}")
            return
        elif isinstance(exc, asyncio.CancelledError):
            self._drop(h, "handler cancelled")
            return
        else:
            log.debug("task %s raised", h.task.id, exc_info=exc)
            outcome, ok = Outcome(h.task, error=str(exc) or type(exc).__name__), False
        self._decide(h, outcome, ok)

    def _decide(self, h: Held, outcome: Outcome, ok: bool) -> None:
        with self._lock:
            if h.done:
                return
            h.done = True
        self._outcomes.put((h, outcome, ok))

    def _drop(self, h: Held, why: str) -> None:
        """Forget a task whose outcome this worker must not write (cancelled, lost).
        An outcome already decided (a timeout, shutdown) stays held until written."""
        with self._lock:
            if h.done:
                return
            h.done = True
            self._held.pop(h.task.id, None)
        events.info("task dropped: %s", why, extra=_fields(h.task))

    def _report(self, task: Task, value: JSON) -> None:
        """``ctx.progress``: write now under this claim (raises TaskCancelled etc.)."""
        try:
            self.dequeuer.heartbeat(task, value)
        except (LeaseLost, TaskFinished, TaskNotFound) as e:
            raise TaskCancelled(task.id) from e

    # ---- completing ----------------------------------------------------------------

    def _complete_loop(self) -> None:
        pending: list[tuple[Held, Outcome, bool]] = []
        backoff = 0.2
        while True:
            if not pending:
                try:
                    pending.append(self._outcomes.get(timeout=0.5))
                except queue.Empty:
                    if self.stopped.is_set():
                        return
                    continue
            while len(pending) < COMPLETE_BATCH:
                try:
                    pending.append(self._outcomes.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(pending)
                pending = []
                backoff = 0.2
            except Exception as e:
                log.warning("cannot write %d outcome(s) (%s); retrying", len(pending),
                            _first_line(e))  # fmt: skip
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _write(self, batch: list[tuple[Held, Outcome, bool]]) -> None:
        finishes = [o for _, o, ok in batch if ok]
        fails = [o for _, o, ok in batch if not ok]
        errors: dict[str, Exception] = {}
        if finishes:
            errors.update(self.dequeuer.finish_many(finishes))
        if fails:
            errors.update(self.dequeuer.fail_many(fails))
        with self._lock:
            for h, _, _ in batch:
                self._held.pop(h.task.id, None)
        self._slot_freed.set()
        if not events.isEnabledFor(logging.INFO) and not errors:
            return
        for h, o, ok in batch:
            err = errors.get(h.task.id)
            f = _fields(h.task)
            f["duration"] = round(time.monotonic() - h.started, 4)
            if err is not None:
                events.info("task outcome refused: %s", err, extra=f)
            elif ok:
                events.info("task finished", extra=f | {"status": "finished"})
            else:
                f["error"] = str(o.error)[:200]
                retry = not o.final and h.task.attempts < h.task.max_attempts
                f["status"] = "waiting" if retry else "failed"
                events.info("task failed; will retry" if retry else "task failed", extra=f)
        self._slot_freed.set()

    def _flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(h.done for h in self._held.values())
            if self._outcomes.empty() and not busy:
                return
            time.sleep(0.05)

    # ---- heartbeats, timeouts, worker row --------------------------------------------

    def _beat_interval(self) -> float:
        """A quarter of the shortest heartbeat timeout (or per-task timeout) held, so
        heartbeats and timeouts stay on time; at most 10 s and a quarter of the
        worker staleness window."""
        with self._lock:
            limits = [h.task.heartbeat_timeout for h in self._held.values()]
            limits += [t for h in self._held.values() if (t := self._timeout(h.task))]
        shortest = min(limits, default=60.0)
        return max(0.1, min(shortest / 4, self.config.worker_stale / 4, 10.0))

    def _heartbeat_loop(self) -> None:
        failing = False
        last_beat = time.monotonic()
        while not self.stopped.is_set():
            # Wake often (the interval shrinks as soon as a task with a short heartbeat
            # timeout is claimed); write only when the interval has passed.
            interval = self._beat_interval()
            self.stopped.wait(min(interval, 0.5))
            if self.stopped.is_set():
                return
            self._enforce_timeouts()
            if time.monotonic() - last_beat < self._beat_interval():
                continue
            last_beat = time.monotonic()
            with self._lock:
                held = list(self._held.values())
                running = self._running
            try:
                if held:
                    errors = self.dequeuer.heartbeat_many((h.task, None) for h in held)
                    for h in held:
                        err = errors.get(h.task.id)
                        if err is not None:
                            h.ctx.mark_cancelled()
                            if isinstance(err, TaskCancelled):
                                events.info("task cancelled; telling its handler",
                                            extra=_fields(h.task))  # fmt: skip
                with self.db.connection() as conn:
                    rows = self.q.worker(conn, "seen", id=self.identity.id, running=running)
                if rows and rows[0].get("count") == 0:
                    self._register()
                if failing:
                    log.warning("heartbeats written again")
                failing = False
            except Exception as e:
                if not failing:
                    log.warning("cannot write heartbeats (%s); retrying", _first_line(e))
                failing = True

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [
                (h, limit) for h in self._held.values()
                if not h.done and (limit := self._timeout(h.task)) is not None
                and now - h.started > limit
            ]  # fmt: skip
        for h, limit in late:
            # Decide first: the cancelled handler must find its outcome already taken.
            self._decide(h, Outcome(h.task, error=f"timed out after {limit:g} s"), False)
            h.ctx.mark_cancelled()
            if h.future is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(h.future.cancel)

    def _timeout(self, task: Task) -> float | None:
        """The task's own timeout, else its registered type's."""
        if task.timeout is not None:
            return task.timeout
        options = self.registry.options(task.type)
        return options.timeout if options is not None else None

    # ---- introspection for tests and the CLI ---------------------------------------

    def held_ids(self) -> list[str]:
        with self._lock:
            return list(self._held)


def _fields(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "queue": task.queue,
        "task_type": task.type,
        "attempt": task.attempts,
        "max_attempts": task.max_attempts,
    }


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
