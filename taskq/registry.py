"""Task types and their handlers: ``Registry`` and the ``TaskContext`` a handler gets."""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from taskq.errors import TaskCancelled
from taskq.types import JSON, Progress, Task

Handler = Callable[["TaskContext"], Any]
Validator = Callable[[JSON], None]

_TASK_LOGGER = logging.getLogger("taskq.task")

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current_task", default=None
)


def current_task() -> TaskContext | None:
    """The TaskContext of the task running in this thread or coroutine, if any."""
    return _current.get()


def current_task_id() -> str | None:
    """The id of the task running in this thread or coroutine, if any."""
    ctx = _current.get()
    return ctx.task.id if ctx is not None else None


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Defaults for one task type, used where a producer does not set them.

    ``timeout`` bounds one attempt (seconds, None for none); ``retry_delay`` is the
    base of the exponential retry backoff (seconds).
    """

    queue: str | None = None
    max_attempts: int | None = None
    heartbeat_timeout: float | None = None
    timeout: float | None = None
    retry_delay: float | None = None
    validator: Validator | None = None


@dataclass(frozen=True, slots=True)
class TaskType:
    name: str
    handler: Handler
    options: TaskOptions
    is_async: bool


class Registry:
    """The task types a worker can run, and their defaults for producers.

    >>> registry = Registry()
    >>> @registry.task("email.send", max_attempts=5, timeout=30)
    ... def send(ctx): ...
    """

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def task(
        self,
        name: str,
        *,
        queue: str | None = None,
        max_attempts: int | None = None,
        heartbeat_timeout: float | None = None,
        timeout: float | None = None,
        retry_delay: float | None = None,
        validator: Validator | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of task type ``name``."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a task type name cannot be blank")
        options = TaskOptions(queue, max_attempts, heartbeat_timeout, timeout, retry_delay,
                              validator)  # fmt: skip
        _check_options(name, options)

        def register(fn: Handler) -> Handler:
            if name in self._types:
                raise ValueError(f"task type {name!r} is registered twice")
            self._types[name] = TaskType(name, fn, options, inspect.iscoroutinefunction(fn))
            return fn

        return register

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def options(self, name: str) -> TaskOptions | None:
        t = self._types.get(name)
        return t.options if t is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


def _check_options(name: str, o: TaskOptions) -> None:
    if o.max_attempts is not None and (not isinstance(o.max_attempts, int) or o.max_attempts < 1):
        raise ValueError(f"task type {name!r}: max_attempts must be an integer of at least 1")
    for field in ("heartbeat_timeout", "timeout"):
        v = getattr(o, field)
        if v is not None and not (isinstance(v, int | float) and v > 0):
            raise ValueError(f"task type {name!r}: {field} must be a number above 0")
    if o.retry_delay is not None and not (
        isinstance(o.retry_delay, int | float) and o.retry_delay >= 0
    ):
        raise ValueError(f"task type {name!r}: retry_delay must be a number of at least 0")


class TaskContext:
    """What a handler is given: its task, a way to report progress, and cancellation.

    ``progress(value)`` writes the progress to the database at once (watchers see it)
    under the worker's claim, and raises ``TaskCancelled`` once the task is cancelled.
    ``cancelled`` turns true when the worker learns of a cancellation (at a heartbeat
    or a progress report) or the attempt's timeout passes.
    """

    def __init__(
        self,
        task: Task,
        report: Callable[[Task, JSON], None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.task = task
        self._report = report
        self._cancelled = threading.Event()
        self._base_logger = logger
        self._logger: logging.LoggerAdapter[Any] | None = None

    @property
    def logger(self) -> logging.LoggerAdapter[Any]:
        """A logger whose records carry the task's id, type and queue."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                self._base_logger or _TASK_LOGGER,
                {"task_id": self.task.id, "task_type": self.task.type, "queue": self.task.queue},
            )
        return self._logger

    @property
    def spec(self) -> JSON:
        return self.task.spec

    @property
    def previous_result(self) -> JSON:
        """The result of the previous link of this task's chain (None for the first),
        or of the task this one follows as its ``on_success``; for a group's
        follow-up, the members' outcomes ``{"id", "status", "result", "error"}`` in
        request order."""
        return self.task.previous_result

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def mark_cancelled(self) -> None:
        self._cancelled.set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, returning early (True) once cancelled."""
        return self._cancelled.wait(timeout)

    def progress(self, value: JSON | Progress) -> None:
        """Record progress now; raises TaskCancelled once the task is cancelled."""
        if isinstance(value, Progress):
            value = value.to_json()
        if self._cancelled.is_set():
            raise TaskCancelled(self.task.id)
        try:
            self._report(self.task, value)
        except TaskCancelled:
            self._cancelled.set()
            raise

    def bind(self) -> contextvars.Token[TaskContext | None]:
        return _current.set(self)

    @staticmethod
    def unbind(token: contextvars.Token[TaskContext | None]) -> None:
        _current.reset(token)
