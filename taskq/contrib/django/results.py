"""taskq's tasks as Django's ``TaskResult``, and handler exceptions as the error text
taskq stores (so a failure read back names its exception class and traceback).

Statuses: waiting is READY, running RUNNING, finished SUCCESSFUL, failed FAILED, and
cancelled (which Django's framework has no word for) FAILED with a
``taskq.TaskCancelled`` error. ``errors`` holds one entry per failed attempt, from
taskq's error history (its exception class and traceback).
"""

from __future__ import annotations

import re
import traceback
from typing import Any

from taskq.contrib.django.compat import (
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
    module_path,
)
from taskq.core.types import AttemptError, TaskStatus
from taskq.core.types import Task as TaskqTask

STATUSES = {
    TaskStatus.WAITING: TaskResultStatus.READY,
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.FINISHED: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}

GENERIC_ERROR = "taskq.core.errors.TaskqError"
"""The class named for failures taskq itself decided (a timeout, a rescue)."""

CANCELLED_ERROR = "taskq.core.errors.TaskCancelled"

_CLASS_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


def exception_error(exc: BaseException) -> TaskError:
    """Django's TaskError for ``exc`` raised by a task, as the worker sees it."""
    text = "".join(traceback.format_exception(exc))
    return TaskError(exception_class_path=module_path(type(exc)), traceback=text)


def history_error(entry: AttemptError) -> TaskError:
    """Django's TaskError for one failed attempt of taskq's error history. Failures taskq
    decided itself (a timeout, a rescue) are named ``taskq.core.errors.TaskqError``."""
    path = entry.type or GENERIC_ERROR
    if "." not in path:
        path = f"builtins.{path}"
    if not _CLASS_PATH.match(path):
        path = GENERIC_ERROR
    return TaskError(exception_class_path=path, traceback=entry.traceback or entry.message)


def spec_of(args: Any, kwargs: Any, backend: str) -> dict[str, Any]:
    """What a Django task's taskq spec holds (arguments already normalised to JSON)."""
    return {"args": args, "kwargs": kwargs, "backend": backend}


def arguments(spec: Any) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments a Django task's spec holds."""
    if not isinstance(spec, dict):
        return [], {}
    args, kwargs = spec.get("args") or [], spec.get("kwargs") or {}
    return list(args), dict(kwargs)


def to_result(task: Task, row: TaskqTask, alias: str) -> TaskResult:
    """``row`` (a taskq task of Django task ``task``) as Django's TaskResult."""
    status = STATUSES[row.status]
    errors = [history_error(e) for e in row.errors]
    if row.status == TaskStatus.CANCELLED:
        errors.append(TaskError(exception_class_path=CANCELLED_ERROR,
                                traceback=f"task {row.id} was cancelled"))  # fmt: skip
    args, kwargs = arguments(row.spec)
    result = TaskResult(
        task=task,
        id=row.id,
        status=status,
        enqueued_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at if row.status.is_final else None,
        last_attempted_at=row.started_at,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        worker_ids=_worker_ids(row),
    )
    if row.status == TaskStatus.FINISHED:
        object.__setattr__(result, "_return_value", row.result)
    return result


def _worker_ids(row: TaskqTask) -> list[str]:
    """One entry per attempt (Django counts attempts this way): the workers of the
    failed attempts from the error history, then the latest claim's."""
    if row.attempts <= 0:
        return []
    failed = {e.attempt: e.worker_id or "" for e in row.errors}
    ids = [failed.get(n, "") for n in range(1, row.attempts)]
    return ids + [row.worker_id or failed.get(row.attempts, "")]
