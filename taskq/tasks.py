"""Looking at tasks and controlling them: ``Tasks``."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.db import Database, Db
from taskq.errors import TaskFinished, TaskNotFound, TaskqError
from taskq.notify import Listener
from taskq.queries import Queries
from taskq.types import FINAL_STATUSES, JSON, Task, TaskStatus
from taskq.workflow import after_final

DEFAULT_POLL = 2.0
"""Seconds between re-reads while waiting when no notification arrives (safety net)."""


@dataclass(frozen=True, slots=True)
class Workflow:
    """A chain or group as it is now: overall status and members in request order."""

    id: str
    status: TaskStatus
    tasks: tuple[Task, ...]

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)

    @property
    def current(self) -> Task | None:
        """The first member that has not ended (a chain's current link), if any."""
        return next((t for t in self.tasks if not t.status.is_final), None)

    @property
    def finished(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.status is TaskStatus.FINISHED)


def overall_status(tasks: Sequence[Task]) -> TaskStatus:
    """FINISHED when all finished; FAILED once one failed for good; CANCELLED when all
    ended and one was cancelled; RUNNING while one runs or some have ended; else WAITING."""
    statuses = [t.status for t in tasks]
    if statuses and all(s is TaskStatus.FINISHED for s in statuses):
        return TaskStatus.FINISHED
    if TaskStatus.FAILED in statuses:
        return TaskStatus.FAILED
    if statuses and all(s.is_final for s in statuses):
        return TaskStatus.CANCELLED
    if TaskStatus.RUNNING in statuses or any(s.is_final for s in statuses):
        return TaskStatus.RUNNING
    return TaskStatus.WAITING


class Tasks:
    """Reads and controls tasks: get, list, cancel, retry, wait, watch, delete."""

    def __init__(self, db: Db = None, *, schema: str | None = None, pool_size: int = 5) -> None:
        self._db = db if isinstance(db, Database) else Database(db, schema, max_size=pool_size)
        self._q = Queries(self._db.schema)
        self._listener: Listener | None = None
        self._lock = threading.Lock()

    @property
    def schema(self) -> str:
        return self._db.schema

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._db.close()

    def __enter__(self) -> Tasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, task_id: str) -> Task:
        """The task as it is now; TaskNotFound if there is none."""
        task_id = _check_id(task_id)
        with self._db.connection() as conn:
            task = self._q.get(conn, task_id)
        if task is None:
            raise TaskNotFound(task_id)
        return task

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
    ) -> list[Task]:
        """Tasks matching every filter given, newest first, at most ``limit``.

        ``status`` may be one status or several. Page with ``created_before`` set to
        the last task's ``created_at``.
        """
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        filters: dict[str, Any] = {}
        for name, value in (("queue", queue), ("type", type), ("user_id", user_id),
                            ("title", title)):  # fmt: skip
            if value is not None:
                filters[name] = value
        if status is not None:
            if isinstance(status, str):
                filters["status"] = TaskStatus(status).value
            else:
                filters["status"] = [TaskStatus(s).value for s in status]
        with self._db.connection() as conn:
            return self._q.list_tasks(conn, filters, limit, created_before)

    def cancel(self, task_id: str) -> Task:
        """Cancel a task and return it.

        A waiting task is cancelled at once; a running one is marked cancelled and its
        worker learns it at its next heartbeat. Cancelling a cancelled task returns it
        unchanged. A finished or failed task raises TaskFinished; no task, TaskNotFound.
        """
        task_id = _check_id(task_id)
        with self._db.transaction() as conn:
            task = self._q.cancel(conn, task_id)
            if task is not None:
                after_final(conn, self._q, [_row(task)])
                return task
            current = self._q.get(conn, task_id)
        if current is None:
            raise TaskNotFound(task_id)
        if current.status is TaskStatus.CANCELLED:
            return current
        raise TaskFinished(task_id, current.status.value)

    def retry(self, task_id: str) -> Task:
        """Put a failed or cancelled task back to waiting with its attempts reset."""
        task_id = _check_id(task_id)
        with self._db.connection() as conn:
            task = self._q.retry(conn, task_id)
            if task is not None:
                return task
            current = self._q.get(conn, task_id)
        if current is None:
            raise TaskNotFound(task_id)
        raise TaskqError(
            f"task {task_id} is {current.status.value}: only failed or cancelled tasks are retried"
        )

    def delete(self, task_id: str) -> None:
        """Delete a task whatever its status; TaskNotFound if there is none."""
        task_id = _check_id(task_id)
        with self._db.connection() as conn:
            if not self._q.delete(conn, task_id):
                raise TaskNotFound(task_id)

    def purge(
        self, older_than: dt.timedelta, *, queue: str | None = None, batch: int = 1000
    ) -> int:
        """Delete finished, failed and cancelled tasks that ended more than
        ``older_than`` ago, ``batch`` rows per statement; returns how many."""
        if older_than < dt.timedelta(0):
            raise ValueError("older_than cannot be negative")
        total = 0
        with self._db.connection() as conn:
            before = conn.execute("SELECT now() - %s::interval", (older_than,)).fetchone()
            assert before is not None
            while True:
                n = self._q.purge(conn, before[0], batch, queue)
                total += n
                if n < batch:
                    return total

    def result(self, task_id: str) -> JSON:
        """A finished task's result; TaskqError while it has not finished."""
        task = self.get(task_id)
        if task.status is not TaskStatus.FINISHED:
            detail = f": {task.error}" if task.error else ""
            raise TaskqError(f"task {task_id} has no result: it is {task.status.value}{detail}")
        return task.result

    def get_chain(self, chain_id: str) -> Workflow:
        return self._workflow("chain", chain_id)

    def get_group(self, group_id: str) -> Workflow:
        return self._workflow("group", group_id)

    def _workflow(self, kind: str, workflow_id: str) -> Workflow:
        workflow_id = _check_id(workflow_id, kind)
        with self._db.connection() as conn:
            tasks = self._q.members(conn, kind, workflow_id)
        if not tasks:
            raise TaskqError(f"{kind} {workflow_id} not found")
        return Workflow(workflow_id, overall_status(tasks), tuple(tasks))

    # ---- waiting -------------------------------------------------------------------

    def _listen(self) -> Listener | None:
        url = self._db.listen_url()
        if url is None:
            return None
        with self._lock:
            if self._listener is None:
                self._listener = Listener(url, [self._q.events], name="taskq-events")
                self._listener.wait_connected(2.0)
            return self._listener

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[Task]:
        """Snapshots of a task: the current one, then one per change (progress, status),
        ending with the task in its final status. TimeoutError when ``timeout`` passes
        first. Woken by NOTIFY; it re-reads every few seconds as a safety net, so it
        keeps working while the notification connection is down."""
        task_id = _check_id(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self._listen()
        keys = [(self._q.events, task_id)]
        if listener is not None:
            listener.interest(keys)
        try:
            last: tuple[Any, ...] | None = None
            while True:
                mark = listener.mark(keys) if listener is not None else None
                task = self.get(task_id)
                # A heartbeat or a chain release touches updated_at without changing
                # anything a watcher sees: only status, attempt and progress count.
                seen = (task.status, task.attempts, task.progress)
                if seen != last:
                    last = seen
                    yield task
                if task.status in FINAL_STATUSES:
                    return
                wait = DEFAULT_POLL
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
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


def _check_id(value: str, what: str = "task") -> str:
    if not isinstance(value, str):
        if isinstance(value, Task):
            return value.id
        raise TypeError(f"a {what} id must be a string, got {type(value).__name__}")
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise (
            TaskNotFound(value)
            if what == "task"
            else TaskqError(f"{what} {value!r} not found (not a valid id)")
        ) from None


def _row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.status.value,
        "chain_id": task.chain_id,
        "group_id": task.group_id,
        "on_success": task.on_success,
        "result": task.result,
    }
