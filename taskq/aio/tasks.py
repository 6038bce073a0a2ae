"""``AsyncTasks``: see ``taskq.aio``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from taskq.actions import control
from taskq.clients import AsyncClient
from taskq.core.defaults import PURGE_BATCH
from taskq.core.fencing import parse_id
from taskq.core.types import (
    JSON,
    Task,
    TaskStatus,
)
from taskq.core.waiting import Deadline
from taskq.core.workflows import Workflow
from taskq.tasks import check_limit, seconds_of, snapshot_key, statuses_of

if TYPE_CHECKING:
    pass


class AsyncTasks(AsyncClient):
    """Reads and controls tasks (see ``taskq.Tasks``); ``watch`` is an async iterator."""

    def __init__(
        self,
        db: Any = None,
        *,
        schema: str | None = None,
        pool_size: int = 5,
        pooler: str | None = None,
        listen_url: str | None = None,
        read_url: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__(db, schema=schema, pool_size=pool_size, pooler=pooler,
                         listen_url=listen_url, read_url=read_url,
                         poll_interval=poll_interval)  # fmt: skip

    async def get(self, task_id: str) -> Task:
        return await self._db.run(control.get(self._stmts, parse_id(task_id)), read=True)

    async def list(
        self,
        queue: str | None = None,
        status: TaskStatus | str | Sequence[TaskStatus | str] | None = None,
        type: str | None = None,
        limit: int = 100,
        *,
        user_id: str | None = None,
        title: str | None = None,
        created_before: dt.datetime | None = None,
        before: Task | None = None,
    ) -> list[Task]:
        query = self._stmts.listing.list_tasks(
            limit=check_limit(limit), queue=queue, statuses=statuses_of(status), type=type,
            user_id=user_id, title=title,
            before=before.created_at if before is not None else created_before,
            before_seq=before.seq if before is not None else None,
        )  # fmt: skip
        return await self._db.query(query, read=True)

    async def cancel(self, task_id: str) -> Task:
        plan = control.cancel(self._stmts, self._db.settings.columns, parse_id(task_id))
        return await self._db.run(plan)

    async def retry(self, task_id: str) -> Task:
        return await self._db.run(control.retry(self._stmts, parse_id(task_id)))

    async def delete(self, task_id: str) -> None:
        await self._db.run(control.delete(self._stmts, parse_id(task_id)))

    async def purge(
        self, older_than: dt.timedelta, *, queue: str | None = None, batch: int = PURGE_BATCH
    ) -> int:
        seconds = seconds_of(older_than)
        total = 0
        while True:
            n = await self._db.run(control.purge(self._stmts, seconds, queue, batch))
            total += n
            if n < batch:
                return total

    async def result(self, task_id: str) -> JSON:
        return control.result_of(await self.get(task_id))

    async def get_chain(self, chain_id: str) -> Workflow:
        return await self._db.run(
            control.workflow(self._stmts, "chain", parse_id(chain_id, "chain"))
        )

    async def get_group(self, group_id: str) -> Workflow:
        return await self._db.run(
            control.workflow(self._stmts, "group", parse_id(group_id, "group"))
        )

    async def watch(self, task_id: str, timeout: float | None = None) -> AsyncIterator[Task]:
        """Snapshots of a task, one per change, ending with its final status (see
        ``Tasks.watch``); TimeoutError when ``timeout`` passes first."""
        task_id = parse_id(task_id)
        deadline = Deadline(timeout, self._db.settings.poll_interval)
        listener = await self._db.listener()
        keys = [(self._stmts.tasks.events, task_id)]
        if listener is not None:
            listener.interest(keys)
        try:
            last: tuple[Any, ...] | None = None
            while True:
                mark = listener.mark(keys) if listener is not None else None
                task = await self._db.run(control.get(self._stmts, task_id))
                if snapshot_key(task) != last:
                    last = snapshot_key(task)
                    yield task
                if task.status.is_final:
                    return
                wait = deadline.next_wait()
                if wait is None:
                    raise TimeoutError(f"task {task_id} did not end within {timeout} s")
                if listener is not None and mark is not None:
                    await listener.wait(keys, mark, wait)
                else:
                    await asyncio.sleep(wait)
        finally:
            if listener is not None:
                listener.forget(keys)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        last: Task | None = None
        async for snapshot in self.watch(task_id, timeout):
            last = snapshot
        assert last is not None
        return last
