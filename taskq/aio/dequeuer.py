"""``AsyncDequeuer``: see ``taskq.aio``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskq.actions import outcomes
from taskq.actions.outcomes import Outcome, Written
from taskq.clients import AsyncClient
from taskq.core.defaults import POOL_SIZE, RESCUE_BATCH, WORKER_STALE
from taskq.core.errors import TaskqError
from taskq.core.fencing import TaskRef
from taskq.core.types import (
    JSON,
    Task,
)
from taskq.core.waiting import Deadline, claim_queues, wake_keys
from taskq.dequeuer import log_rescued, raise_first

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics


class AsyncDequeuer(AsyncClient):
    """Claims tasks and writes their outcome under a fenced lease (see
    ``taskq.Dequeuer``)."""

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

    async def dequeue(self, *queues: str, timeout: float | None = None) -> Task | None:
        """Claim one runnable task (see ``Dequeuer.dequeue``)."""
        tasks = await self.dequeue_many(queues, 1, timeout=timeout)
        return tasks[0] if tasks else None

    async def dequeue_many(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        timeout: float | None = 0.0,
        stop: asyncio.Event | None = None,
    ) -> list[Task]:
        """Claim up to ``limit`` tasks; wait up to ``timeout`` (None: forever) for any,
        or until ``stop`` is set."""
        if limit < 1:
            return []
        names = claim_queues(queues)
        tasks = await self._claim(names, limit)
        if tasks or (timeout is not None and timeout <= 0):
            return tasks
        deadline = Deadline(timeout, self.poll_interval)
        listener = await self._db.listener()
        keys = wake_keys(self._stmts.tasks.channel, names)
        if listener is not None:
            listener.interest(keys)
        try:
            while stop is None or not stop.is_set():
                mark = listener.mark(keys) if listener is not None else None
                tasks = await self._claim(names, limit)
                if tasks:
                    return tasks
                wait = deadline.next_wait(cap=1.0 if stop is not None else None)
                if wait is None or (stop is not None and stop.is_set()):
                    return []
                if listener is not None and mark is not None:
                    await listener.wait(keys, mark, wait)
                else:
                    await asyncio.sleep(wait)
            return []
        finally:
            if listener is not None:
                listener.forget(keys)

    async def _claim(self, queues: Sequence[str], limit: int) -> list[Task]:
        # A cancellation (wait_for, a TaskGroup, shutdown) that lands after the server
        # claimed rows but before they arrived would lose them (running, held by no
        # one): the claim is shielded, and rows that arrive after all are given back.
        claim = asyncio.ensure_future(
            self._db.query(self._stmts.tasks.dequeue(queues, limit, self.worker_id))
        )
        try:
            tasks = await asyncio.shield(claim)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                taken = await claim
                if taken:
                    await self.release(taken)
            raise
        if tasks and self.metrics is not None:
            self.metrics.observe_claimed(tasks)
        return tasks

    async def heartbeat(self, task: TaskRef, progress: JSON = None) -> None:
        """Record progress and the heartbeat time (see ``Dequeuer.heartbeat``)."""
        raise_first(await self.heartbeat_many([(task, progress)]))

    async def heartbeat_many(self, items: Iterable[tuple[TaskRef, JSON]]) -> dict[str, TaskqError]:
        written = await self._db.run(outcomes.heartbeat(self._stmts, items))
        if self.metrics is not None:
            self.metrics.observe_heartbeats(len(written.rows))
        return written.errors

    async def finish(self, task: TaskRef, progress: JSON = None, result: JSON = None) -> None:
        raise_first(await self.finish_many([Outcome(task, progress, result)]))

    async def finish_many(self, items: Sequence[Outcome]) -> dict[str, TaskqError]:
        return await self._end("finish", items)

    async def fail(
        self, task: TaskRef, progress: JSON = None, error: object = None, *, final: bool = False
    ) -> None:
        raise_first(await self.fail_many([Outcome(task, progress, error=error, final=final)]))

    async def fail_many(self, items: Sequence[Outcome]) -> dict[str, TaskqError]:
        return await self._end("fail", items)

    async def _end(self, kind: str, items: Sequence[Outcome]) -> dict[str, TaskqError]:
        written: Written = await self._db.run(
            outcomes.end(self._stmts, self._db.settings.columns, kind, items)
        )
        if self.metrics is not None:
            self.metrics.observe_ended(written.rows)
        return written.errors

    async def release(self, tasks: Sequence[Task]) -> set[str]:
        back = await self._db.run(outcomes.release(self._stmts, tasks))
        if self.metrics is not None:
            self.metrics.observe_released([t for t in tasks if t.id in back])
        return back

    async def rescue(self, *, worker_stale: float = WORKER_STALE, limit: int = RESCUE_BATCH) -> int:
        """Take back stale running tasks; returns how many."""
        s = self._db.settings
        total = 0
        while True:
            written = await self._db.run(outcomes.rescue(s.stmts, s.columns, worker_stale, limit))
            total += len(written.rows)
            log_rescued(written)
            if self.metrics is not None and written.rows:
                self.metrics.observe_rescued(written.rows)
            if len(written.rows) + len(written.errors) < limit or not written.rows:
                return total
