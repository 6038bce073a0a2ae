"""Looking at tasks and controlling them: ``Tasks``.

The plans (``taskq.actions.control``) are shared with ``taskq.aio.AsyncTasks``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Any

from taskq.actions import control as plans
from taskq.clients import Client
from taskq.core.defaults import PURGE_BATCH
from taskq.core.fencing import parse_id
from taskq.core.types import JSON, Task, TaskStatus
from taskq.core.waiting import Deadline
from taskq.core.workflows import Workflow


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return limit


def statuses_of(status: TaskStatus | str | Sequence[TaskStatus | str] | None) -> list[str] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return [TaskStatus(status).value]
    return [TaskStatus(s).value for s in status]


def seconds_of(older_than: dt.timedelta) -> float:
    if older_than < dt.timedelta(0):
        raise ValueError("older_than cannot be negative")
    return older_than.total_seconds()


def snapshot_key(task: Task) -> tuple[Any, ...]:
    """What a watcher sees change: a heartbeat or a chain release touches updated_at
    without changing anything a watcher shows, so only status, attempt and progress
    count."""
    return (task.status, task.attempts, task.progress)


class Tasks(Client):
    """Reads and controls tasks: get, list, cancel, retry, wait, watch, delete.

    ``read_url`` (or ``TASKQ_READ_URL``): ``get`` and ``list`` read from that replica,
    which may lag the primary by its replication delay; ``wait``, ``watch`` and every
    change use the primary.
    """

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

    def get(self, task_id: str) -> Task:
        """The task as it is now; TaskNotFound if there is none."""
        return self._db.run(plans.get(self._stmts, parse_id(task_id)), read=True)

    def list(
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
        """Tasks matching every filter given, newest first, at most ``limit``.

        ``status`` may be one status or several. Page with ``before`` set to the last
        task of the previous page (every task is seen exactly once), or with
        ``created_before``.
        """
        query = self._stmts.listing.list_tasks(
            limit=check_limit(limit), queue=queue, statuses=statuses_of(status), type=type,
            user_id=user_id, title=title,
            before=before.created_at if before is not None else created_before,
            before_seq=before.seq if before is not None else None,
        )  # fmt: skip
        return self._db.query(query, read=True)

    def cancel(self, task_id: str) -> Task:
        """Cancel a task and return it.

        A waiting task is cancelled at once; a running one is marked cancelled and its
        worker learns it at its next heartbeat. Cancelling a cancelled task returns it
        unchanged. A finished or failed task raises TaskFinished; no task, TaskNotFound.
        Later links of its chain that have not started are cancelled with it.
        """
        return self._db.run(plans.cancel(self._stmts, self._db.settings.columns, parse_id(task_id)))

    def retry(self, task_id: str) -> Task:
        """Put a failed or cancelled task back to waiting with its attempts reset."""
        return self._db.run(plans.retry(self._stmts, parse_id(task_id)))

    def delete(self, task_id: str) -> None:
        """Delete a task whatever its status; TaskNotFound if there is none."""
        self._db.run(plans.delete(self._stmts, parse_id(task_id)))

    def purge(
        self, older_than: dt.timedelta, *, queue: str | None = None, batch: int = PURGE_BATCH
    ) -> int:
        """Delete finished, failed and cancelled tasks that ended more than
        ``older_than`` ago, ``batch`` rows per statement; returns how many."""
        seconds = seconds_of(older_than)
        total = 0
        while True:
            n = self._db.run(plans.purge(self._stmts, seconds, queue, batch))
            total += n
            if n < batch:
                return total

    def result(self, task_id: str) -> JSON:
        """A finished task's result; TaskqError while it has not finished."""
        return plans.result_of(self.get(task_id))

    def get_chain(self, chain_id: str) -> Workflow:
        return self._db.run(plans.workflow(self._stmts, "chain", parse_id(chain_id, "chain")))

    def get_group(self, group_id: str) -> Workflow:
        return self._db.run(plans.workflow(self._stmts, "group", parse_id(group_id, "group")))

    # ---- waiting -------------------------------------------------------------------

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[Task]:
        """Snapshots of a task: the current one, then one per change (progress, status,
        attempt), ending with the task in its final status. TimeoutError when
        ``timeout`` passes first. Woken by NOTIFY; it re-reads every few seconds as a
        safety net, so it keeps working while the notification connection is down."""
        task_id = parse_id(task_id)
        deadline = Deadline(timeout, self._db.settings.poll_interval)
        listener = self._db.listener()
        keys = [(self._stmts.tasks.events, task_id)]
        if listener is not None:
            listener.interest(keys)
        try:
            last: tuple[Any, ...] | None = None
            while True:
                mark = listener.mark(keys) if listener is not None else None
                task = self._db.run(plans.get(self._stmts, task_id))
                if snapshot_key(task) != last:
                    last = snapshot_key(task)
                    yield task
                if task.status.is_final:
                    return
                wait = deadline.next_wait()
                if wait is None:
                    raise TimeoutError(f"task {task_id} did not end within {timeout} s")
                if listener is not None and mark is not None:
                    listener.wait(keys, mark, wait)
                else:
                    time.sleep(wait)
        finally:
            if listener is not None:
                listener.forget(keys)

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task reaches a final status and return it; TimeoutError when
        ``timeout`` passes first."""
        last: Task | None = None
        for snapshot in self.watch(task_id, timeout):
            last = snapshot
        assert last is not None
        return last


__all__ = ["Tasks", "Workflow"]
