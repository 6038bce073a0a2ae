"""Task types and their handlers: ``Registry`` and the ``TaskContext`` a handler gets."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from taskq.core.encode import check_request
from taskq.core.errors import TaskCancelled
from taskq.core.types import JSON, Progress, Task, TaskEnqueueRequest, checked_progress

Handler = Callable[["TaskContext"], Any]
Validator = Callable[[JSON], None]
R = TypeVar("R")

_TASK_LOGGER = logging.getLogger("taskq.task")

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current_task", default=None
)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


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


class RegisteredTask(Generic[R]):
    """What ``@registry.task(...)`` makes of a handler: still the handler (calling it
    calls the function), and the typed way to enqueue its task type with the type's
    registered defaults (queue, max_attempts, heartbeat_timeout, timeout, retry_delay)
    and its validator, whatever registry the Queuer was given (or none):

    >>> queuer.enqueue(send_email, {"to": "a@example.com"})  # or AsyncQueuer: await
    >>> queuer.enqueue(send_email, {"to": "a@example.com"}, priority=5, max_attempts=2)
    >>> queuer.enqueue_chain([resize.request({"id": 7}), notify.request({"id": 7})])

    Options given explicitly override the registered defaults.
    """

    def __init__(self, registry: Registry, task_type: TaskType) -> None:
        self.registry = registry
        self.type = task_type
        self.fn: Callable[[TaskContext], R] = task_type.handler
        functools.update_wrapper(self, task_type.handler)

    @property
    def name(self) -> str:
        """The task type's name."""
        return self.type.name

    @property
    def options(self) -> TaskOptions:
        """The type's registered defaults."""
        return self.type.options

    def __call__(self, ctx: TaskContext) -> R:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"<RegisteredTask {self.name!r} handled by {self.fn.__qualname__}>"

    def request(
        self,
        spec: JSON = None,
        *,
        queue: str | None = None,
        references: Mapping[str, Any] | None = None,
        priority: int = 0,
        run_at: dt.datetime | None = None,
        max_attempts: int | None = None,
        heartbeat_timeout: float | None = None,
        timeout: float | None = None,
        retry_delay: float | None = None,
        unique_key: str | None = None,
        title: str | None = None,
        user_id: str | None = None,
        on_success: TaskEnqueueRequest | None = None,
    ) -> TaskEnqueueRequest:
        """A request for this type, checked now: the registered defaults fill what is
        left as None, and the validator has passed (InvalidTask otherwise). For
        ``enqueue_many``, ``enqueue_chain``, ``enqueue_group`` and ``on_success``."""
        request = TaskEnqueueRequest(
            queue=queue if queue is not None else "",  # blank: the registered queue
            type=self.name,
            spec=spec,
            references=references if references is not None else {},
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            heartbeat_timeout=heartbeat_timeout,
            unique_key=unique_key,
            title=title,
            user_id=user_id,
            timeout=timeout,
            retry_delay=retry_delay,
            on_success=on_success,
        )
        return check_request(request, self.registry)


class Registry:
    """The task types a worker can run, and their defaults for producers.

    >>> registry = Registry()
    >>> @registry.task("email.send", max_attempts=5, timeout=30)
    ... def send(ctx): ...
    >>> queuer.enqueue(send, {"to": "a@example.com"})  # 5 attempts, 30 s timeout
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
    ) -> Callable[[Callable[[TaskContext], R]], RegisteredTask[R]]:
        """Register the decorated function as the handler of task type ``name``; the
        name it is bound to becomes a ``RegisteredTask`` (still callable as the handler)
        that ``Queuer.enqueue`` takes in place of a request."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a task type name cannot be blank")
        options = TaskOptions(queue, max_attempts, heartbeat_timeout, timeout, retry_delay,
                              validator)  # fmt: skip
        _check_options(name, options)

        def register(fn: Callable[[TaskContext], R]) -> RegisteredTask[R]:
            if name in self._types:
                raise ValueError(f"task type {name!r} is registered twice")
            if isinstance(fn, RegisteredTask):  # registered in another registry too
                fn = fn.fn
            task_type = TaskType(name, fn, options, inspect.iscoroutinefunction(fn))
            self._types[name] = task_type
            return RegisteredTask(self, task_type)

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
    In an ``async def`` handler, ``await ctx.aprogress(value)`` does the same without
    blocking the event loop (there ``progress`` sends the write on its way and returns).
    ``cancelled`` turns true when the worker learns of a cancellation (at a heartbeat
    or a progress report) or the attempt's timeout passes.
    """

    def __init__(
        self,
        task: Task,
        report: Callable[[Task, JSON], None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        *,
        areport: Callable[[Task, JSON], Awaitable[None]] | None = None,
    ) -> None:
        self.task = task
        self._report = report
        self._areport = areport
        self._writes: set[asyncio.Task[None]] = set()
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
        """Record progress now; raises TaskCancelled once the task is cancelled, and
        InvalidProgress (nothing written) for a percent outside 0.0 to 1.0 and such."""
        value = checked_progress(value, f"progress of task {self.task.id}")
        if self._cancelled.is_set():
            raise TaskCancelled(self.task.id)
        if self._areport is not None and _on_loop():
            # an async handler called the sync form: never block its event loop
            task = asyncio.get_running_loop().create_task(self._quiet(value))
            self._writes.add(task)  # a reference, so the write is not collected midway
            task.add_done_callback(self._writes.discard)
            return
        try:
            self._report(self.task, value)
        except TaskCancelled:
            self._cancelled.set()
            raise

    async def aprogress(self, value: JSON | Progress) -> None:
        """``progress`` for ``async def`` handlers: awaits the write on the event loop."""
        value = checked_progress(value, f"progress of task {self.task.id}")
        if self._cancelled.is_set():
            raise TaskCancelled(self.task.id)
        if self._areport is None:  # not run by a worker's event loop: a plain call
            self._report(self.task, value)
            return
        try:
            await self._areport(self.task, value)
        except TaskCancelled:
            self._cancelled.set()
            raise

    async def _quiet(self, value: JSON) -> None:
        try:
            await self.aprogress(value)
        except Exception:  # cancellation is recorded; the handler sees ctx.cancelled
            pass

    def bind(self) -> contextvars.Token[TaskContext | None]:
        return _current.set(self)

    @staticmethod
    def unbind(token: contextvars.Token[TaskContext | None]) -> None:
        _current.reset(token)
