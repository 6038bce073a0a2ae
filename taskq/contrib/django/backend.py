"""``TaskqBackend``: Django's Tasks framework on taskq.

``TASKS = {"default": {"BACKEND": "taskq.contrib.django.TaskqBackend"}}``. A Django
task becomes a taskq task whose type is the task function's dotted path, whose queue
is its ``queue_name``, priority its ``priority``, ``run_at`` its ``run_after``, and
whose spec holds its arguments (``{"args", "kwargs", "backend"}``).

It is stored on Django's own connection (``OPTIONS["DATABASE"]``, default
"default"): inside ``transaction.atomic()`` the task commits or rolls back with the
block, so a worker sees it exactly when the caller's data is committed (what
``enqueue_on_commit`` promised, without the window where a commit happened and the
enqueue did not). Outside a transaction it is durable when ``enqueue`` returns.

``OPTIONS`` (all optional): ``DATABASE``; ``SCHEMA`` (default ``TASKQ_SCHEMA``, else
"taskq"); ``TASK_MODULES``, modules outside the installed apps' ``tasks`` modules
that define tasks (for the worker); and taskq's per-task settings ``MAX_ATTEMPTS``
(default 1: Django's tasks run once), ``HEARTBEAT_TIMEOUT``, ``TIMEOUT`` and
``RETRY_DELAY`` (seconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg
from django.core import checks
from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string

from taskq.contrib.django.compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    task_enqueued,
)
from taskq.contrib.django.results import spec_of, to_result
from taskq.core.config import resolve_schema
from taskq.core.errors import TaskNotFound
from taskq.core.types import Task as TaskqTask
from taskq.core.types import TaskEnqueueRequest
from taskq.queuer import Queuer
from taskq.tasks import Tasks

_NUMBERS = {
    "MAX_ATTEMPTS": "max_attempts",
    "HEARTBEAT_TIMEOUT": "heartbeat_timeout",
    "TIMEOUT": "timeout",
    "RETRY_DELAY": "retry_delay",
}


class TaskqBackend(BaseTaskBackend):
    """A Django Tasks backend that stores tasks in taskq, on Django's connection."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = {str(k).upper(): v for k, v in (self.options or {}).items()}
        self.params = params
        self.database: str = options.get("DATABASE", "default")
        self.schema_option: str | None = options.get("SCHEMA")
        self.schema: str = resolve_schema(self.schema_option)
        self.task_modules: tuple[str, ...] = tuple(options.get("TASK_MODULES", ()))
        self.task_settings: dict[str, Any] = {
            field: options[name] for name, field in _NUMBERS.items() if name in options
        }

    # ---- the connection ----------------------------------------------------------------

    def connection(self) -> psycopg.Connection[Any]:
        """Django's psycopg connection for ``DATABASE`` (this thread's), connected, in
        whatever transaction Django has open."""
        wrapper = connections[self.database]
        wrapper.ensure_connection()
        wrapper.validate_no_broken_transaction()
        raw = wrapper.connection
        if not isinstance(raw, psycopg.Connection):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"taskq needs DATABASES[{self.database!r}] on PostgreSQL with psycopg 3, "
                f"got a {type(raw).__module__} connection"
            )
        return raw

    # ---- the framework's methods ---------------------------------------------------------

    def enqueue(self, task: Task, args: Iterable[Any], kwargs: dict[str, Any]) -> TaskResult:
        """Store ``task`` called with ``args`` and ``kwargs``; they must survive a JSON
        round trip (Django's own TypeError or ValueError otherwise, nothing stored)."""
        self.validate_task(task)
        spec = spec_of(normalize_json(list(args)), normalize_json(dict(kwargs)), self.alias)
        run_at = task.run_after
        if isinstance(run_at, dt.datetime) and timezone.is_naive(run_at):
            run_at = timezone.make_aware(run_at)
        request = TaskEnqueueRequest(
            queue=task.queue_name, type=task.module_path, spec=spec, priority=task.priority,
            run_at=run_at, **self.task_settings,
        )  # fmt: skip
        row = Queuer(self.connection(), schema=self.schema).enqueue(request)
        result = to_result(task, row, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task ``result_id`` as it is now, read on Django's connection (so inside
        a transaction it sees that transaction's own uncommitted tasks)."""
        try:
            row = Tasks(self.connection(), schema=self.schema).get(str(result_id))
        except TaskNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return to_result(self.task_of(row), row, self.alias)

    def task_of(self, row: TaskqTask) -> Task:
        """The Django task a taskq task runs, with the queue, priority and run time it
        was stored with; TaskResultDoesNotExist when it is not a Django task."""
        try:
            task = import_string(row.type)
        except ImportError:
            raise TaskResultDoesNotExist(
                f"task {row.id} is of type {row.type!r}, which names no Django task here"
            ) from None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(
                f"task {row.id} is of type {row.type!r}, which is not a Django task"
            )
        run_after = row.run_at if row.run_at > row.created_at else None
        try:
            found: Task = task.using(priority=row.priority, queue_name=row.queue,
                                     run_after=run_after, backend=self.alias)  # fmt: skip
            return found
        except InvalidTask:  # stored under settings that no longer hold: as defined
            return task

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        if self.database not in connections.settings:
            yield checks.Error(
                f"TASKS[{self.alias!r}] stores tasks in DATABASES[{self.database!r}], "
                "which is not configured",
                hint="Set OPTIONS['DATABASE'] to an alias of settings.DATABASES.",
                id="taskq.E001",
            )
        elif connections[self.database].vendor != "postgresql":
            yield checks.Error(
                f"taskq needs PostgreSQL: DATABASES[{self.database!r}] is "
                f"{connections[self.database].vendor}",
                id="taskq.E002",
            )
        if "ENQUEUE_ON_COMMIT" in self.params:
            yield checks.Warning(
                "ENQUEUE_ON_COMMIT has no effect on taskq: a task enqueued inside a "
                "transaction is stored in it, so workers see it when it commits and "
                "never if it rolls back",
                hint="Remove the setting.",
                id="taskq.W001",
            )
