"""Where handlers run: sync handlers on slot threads, ``async def`` handlers on one
event loop through the asyncio face (their progress writes never block the loop).

Both start a held task (``Ledger.start``: only a task still ``claimed`` starts, so a
task released by a shutdown never runs), run its handler with its ``TaskContext``
bound, and turn what the handler did into an outcome (``judge``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskq.actions.outcomes import Outcome
from taskq.core.encode import encode_json
from taskq.core.errors import LeaseLost, TaskCancelled, TaskFailed, TaskFinished, TaskNotFound
from taskq.core.types import JSON, Task
from taskq.registry import Registry, TaskContext
from taskq.worker.ledger import Held, Ledger

if TYPE_CHECKING:
    from taskq.aio import AsyncDequeuer

events = logging.getLogger("taskq.events")
log = logging.getLogger("taskq.worker")

STOPPED_BY = (TaskCancelled, LeaseLost, TaskFinished, TaskNotFound, asyncio.CancelledError)
"""A handler ending with one of these was told to stop: nothing is written for it."""


def judge(task: Task, result: JSON, exc: BaseException | None) -> tuple[Outcome | None, bool]:
    """The outcome of a handler that returned ``result`` or raised ``exc``, and whether
    it is a finish; (None, False) when nothing must be written (it was told to stop)."""
    if exc is None:
        try:
            encode_json(result, f"result of task {task.id}")
        except ValueError as e:
            return Outcome(task, error=e, final=True), False
        return Outcome(task, result=result), True
    if isinstance(exc, TaskFailed):
        return Outcome(task, error=exc, final=True), False
    if isinstance(exc, STOPPED_BY):
        return None, False
    return Outcome(task, error=exc), False


class HandlerRunner:
    """Runs handlers and records what they did in the ledger (and how long they took,
    in ``ran``, for the prefetch)."""

    def __init__(
        self, registry: Registry, ledger: Ledger, ran: Callable[[float], None] | None = None
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.ran = ran

    def finish_run(self, h: Held, result: JSON, exc: BaseException | None) -> None:
        self.ledger.returned(h)
        if self.ran is not None and h.started is not None:
            self.ran(time.monotonic() - h.started)
        outcome, ok = judge(h.task, result, exc)
        if outcome is None:
            if self.ledger.drop(h):
                events.info("task dropped: %s", type(exc).__name__, extra=fields(h.task))
            return
        if exc is not None and not isinstance(exc, TaskFailed):
            log_exception(h.task, exc)
        self.ledger.decide(h, outcome, ok)


class SlotThreads(HandlerRunner):
    """``slots`` threads taking held tasks of sync handlers from one queue."""

    def __init__(
        self,
        registry: Registry,
        ledger: Ledger,
        slots: int,
        ran: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(registry, ledger, ran)
        self._queue: queue.SimpleQueue[Held | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"taskq-slot-{i}", daemon=True)
            for i in range(slots)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, h: Held) -> None:
        self._queue.put(h)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _loop(self) -> None:
        while (h := self._queue.get()) is not None:
            if not self.ledger.start(h):
                continue  # released before it started
            handler = self.registry.get(h.task.type)
            assert handler is not None
            token = h.ctx.bind()
            try:
                result = handler.handler(h.ctx)
            except BaseException as e:
                self.finish_run(h, None, e)
            else:
                self.finish_run(h, result, None)
            finally:
                TaskContext.unbind(token)


class EventLoop(HandlerRunner):
    """One event loop on its own thread for ``async def`` handlers; their progress goes
    through an ``AsyncDequeuer`` on that loop."""

    def __init__(
        self,
        registry: Registry,
        ledger: Ledger,
        dequeuer: Callable[[], AsyncDequeuer],
        ran: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(registry, ledger, ran)
        self.loop = asyncio.new_event_loop()
        self._make_dequeuer = dequeuer
        self.dequeuer: AsyncDequeuer | None = None
        self._thread = threading.Thread(target=self._run, name="taskq-asyncio", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(30)

    async def _open(self) -> None:
        self.dequeuer = self._make_dequeuer()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def report(self, task: Task, value: JSON) -> None:
        """``ctx.aprogress``: write now under this claim, on the loop."""
        assert self.dequeuer is not None
        try:
            await self.dequeuer.heartbeat(task, value)
        except (LeaseLost, TaskFinished, TaskNotFound) as e:
            raise TaskCancelled(task.id) from e

    def submit(self, h: Held) -> None:
        future = asyncio.run_coroutine_threadsafe(self._run_one(h), self.loop)

        def cancel() -> None:
            self.loop.call_soon_threadsafe(future.cancel)

        h.cancel = cancel

    async def _run_one(self, h: Held) -> None:
        if not self.ledger.start(h):
            return
        handler = self.registry.get(h.task.type)
        assert handler is not None
        token = h.ctx.bind()
        try:
            result = await handler.handler(h.ctx)
        except BaseException as e:  # CancelledError too: a timeout or shutdown decided it
            self.finish_run(h, None, e)
        else:
            self.finish_run(h, result, None)
        finally:
            TaskContext.unbind(token)

    def stop(self) -> None:
        async def close() -> None:
            if self.dequeuer is not None:
                await self.dequeuer.close()

        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
            except Exception:  # closing anyway
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)


def fields(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "queue": task.queue,
        "task_type": task.type,
        "attempt": task.attempts,
        "max_attempts": task.max_attempts,
    }


def log_exception(task: Task, exc: BaseException) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("task %s raised", task.id, exc_info=exc)
