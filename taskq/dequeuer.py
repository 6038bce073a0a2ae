"""The worker side: claiming tasks and writing their outcome under a fenced lease.

Leases. ``dequeue`` gives every claim a fresh random token (``lease``) stored on the
row and carried by the returned Task. ``heartbeat``, ``finish`` and ``fail`` given that
Task change the row only where ``status = 'running' AND lease = <token>``: once the
rescue has taken the task back (it clears the lease) or another worker has claimed it
(a new lease), the stale worker's writes match nothing and raise ``LeaseLost``. Given
only an id they act on whichever claim is current. A row in a final status never
matches, so nothing overwrites a final status. All times come from the database clock.

Every write is one statement; when it matches no row, one more query (``diagnose``)
tells which error to raise.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq.db import Database, Db
from taskq.errors import TaskNotFound, TaskqError
from taskq.notify import ANY, Listener
from taskq.queries import Conn, Queries
from taskq.requests import encode_json
from taskq.types import JSON, Task
from taskq.workflow import after_final

if TYPE_CHECKING:
    from taskq.metrics import Metrics

MAX_ERROR_LENGTH = 8000
"""Longest error text stored by ``fail`` (characters); longer text is cut."""

DEFAULT_POLL_INTERVAL = 2.0
"""Seconds between claim attempts while no NOTIFY arrives (the safety net)."""

DEFAULT_WORKER_STALE = 30.0
"""Seconds after which a worker process not seen is presumed dead by the rescue."""

TaskRef = Task | str


def clean_error(error: object) -> str | None:
    """``error`` as text PostgreSQL can store: no NUL characters, bounded length."""
    if error is None:
        return None
    text = error if isinstance(error, str) else str(error)
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_LENGTH:
        suffix = " ... (error truncated)"
        text = text[: MAX_ERROR_LENGTH - len(suffix)] + suffix
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _ref(task: TaskRef) -> tuple[str, str | None]:
    """The canonical id and the lease (None for a bare id) of ``task``.

    An id is normalised to PostgreSQL's text form, so the rows a statement returns
    match it; one that is not a UUID at all names no task (TaskNotFound).
    """
    if isinstance(task, Task):
        return task.id, task.lease
    if not isinstance(task, str):
        raise TypeError(f"expected a Task or a task id string, got {type(task).__name__}")
    try:
        return str(uuid.UUID(task)), None
    except ValueError:
        raise TaskNotFound(task) from None


def _progress(value: JSON, task_id: str) -> str | None:
    return None if value is None else encode_json(value, f"progress of task {task_id}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One task's outcome in a batch write."""

    task: TaskRef
    progress: JSON = None
    result: JSON = None
    error: object = None
    final: bool = False


class Dequeuer:
    """Claims tasks and records heartbeats, results and failures.

    Built from a URI it owns a pool and a LISTEN connection (thread-safe; ``close()``
    it or use it as a context manager). ``worker_id`` ties claims to a worker process
    row, so the rescue can take back the tasks of a process that vanished.
    """

    def __init__(
        self,
        db: Db = None,
        *,
        schema: str | None = None,
        worker_id: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        pool_size: int = 10,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db if isinstance(db, Database) else Database(db, schema, max_size=pool_size)
        self._q = Queries(self._db.schema)
        self.worker_id = worker_id
        self.poll_interval = poll_interval
        self.metrics = metrics
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()

    @property
    def schema(self) -> str:
        return self._db.schema

    @property
    def queries(self) -> Queries:
        return self._q

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._db.close()

    def __enter__(self) -> Dequeuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- claiming ------------------------------------------------------------------

    def listener(self) -> Listener | None:
        """The LISTEN thread (started on first use), or None without a URI."""
        url = self._db.listen_url()
        if url is None:
            return None
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(url, [self._q.channel, self._q.events])
                self._listener.wait_connected(2.0)
            return self._listener

    def dequeue(self, *queues: str, timeout: float | None = None) -> Task | None:
        """Claim one runnable task from ``queues`` (any queue when none is named).

        Highest priority first, then earliest ``run_at``, then enqueue order. Blocks
        until a task is available (woken by NOTIFY, with a slow poll as safety net);
        with ``timeout`` returns None once it has passed.
        """
        tasks = self.dequeue_many(queues, 1, timeout=timeout)
        return tasks[0] if tasks else None

    def dequeue_many(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        timeout: float | None = 0.0,
        stop: threading.Event | None = None,
    ) -> list[Task]:
        """Claim up to ``limit`` tasks; wait up to ``timeout`` (None: forever) for any."""
        if limit < 1:
            return []
        for q in queues:
            if not isinstance(q, str) or not q:
                raise ValueError(f"queue names must be non-empty strings, got {q!r}")
        queues = list(dict.fromkeys(queues))
        tasks = self._claim(queues, limit)
        if tasks or (timeout is not None and timeout <= 0):
            return tasks
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.listener()
        keys = [(self._q.channel, q) for q in queues] or [(self._q.channel, ANY)]
        if listener is not None:
            listener.interest(keys)
        try:
            while True:
                if stop is not None and stop.is_set():
                    return []
                mark = listener.mark(keys) if listener is not None else None
                tasks = self._claim(queues, limit)
                if tasks:
                    return tasks
                wait = self.poll_interval
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return []
                if stop is not None and stop.is_set():
                    return []
                if listener is not None and mark is not None:
                    listener.wait(keys, mark, min(wait, 1.0) if stop is not None else wait)
                elif stop is not None:
                    stop.wait(wait)
                else:
                    time.sleep(wait)
        finally:
            if listener is not None:
                listener.forget(keys)

    def _claim(self, queues: Sequence[str], limit: int) -> list[Task]:
        with self._db.connection() as conn:
            tasks = self._q.dequeue(conn, queues, limit, self.worker_id)
        if tasks and self.metrics is not None:
            self.metrics.observe_claimed(tasks)
        return tasks

    # ---- fenced writes -------------------------------------------------------------

    def heartbeat(self, task: TaskRef, progress: JSON = None) -> None:
        """Record ``progress`` and the heartbeat time of a running task.

        Raises TaskCancelled (stop working on it), TaskFinished, TaskNotRunning,
        TaskNotFound, or LeaseLost (given the claimed Task, when it was rescued since).
        """
        errors = self.heartbeat_many([(task, progress)])
        if errors:
            raise next(iter(errors.values()))

    def heartbeat_many(self, items: Iterable[tuple[TaskRef, JSON]]) -> dict[str, TaskqError]:
        """Heartbeat many tasks in one statement; returns an error per task that failed."""
        ids: list[str] = []
        leases: list[str | None] = []
        progress: list[str | None] = []
        unknown: dict[str, TaskqError] = {}
        for task, value in items:
            try:
                task_id, lease = _ref(task)
            except TaskNotFound as e:
                unknown[e.task_id] = e
                continue
            ids.append(task_id)
            leases.append(lease)
            progress.append(_progress(value, task_id))
        if not ids:
            return unknown
        with self._db.connection() as conn:
            beaten = self._q.heartbeat(conn, ids, leases, progress)
            errors = unknown | self._explain(conn, ids, leases, beaten)
        if self.metrics is not None:
            self.metrics.observe_heartbeats(len(beaten))
        return errors

    def finish(self, task: TaskRef, progress: JSON = None, result: JSON = None) -> None:
        """Mark a running task finished with ``result``; raises like ``heartbeat``."""
        errors = self.finish_many([Outcome(task, progress, result)])
        if errors:
            raise next(iter(errors.values()))

    def finish_many(self, outcomes: Sequence[Outcome]) -> dict[str, TaskqError]:
        """Finish many tasks in one statement; returns an error per task not finished."""

        def write(
            conn: Conn,
            ids: list[str],
            leases: list[str | None],
            progress: list[str | None],
            kept: list[Outcome],
        ) -> list[dict[str, Any]]:
            results: list[str | None] = [
                encode_json(o.result, f"result of task {i}") for i, o in zip(ids, kept, strict=True)
            ]
            return self._q.finish(conn, ids, leases, progress, results)

        return self._end_many(outcomes, write, strict_progress=True)

    def fail(
        self, task: TaskRef, progress: JSON = None, error: object = None, *, final: bool = False
    ) -> None:
        """Fail a running task: back to waiting after the retry backoff while attempts
        remain (and ``final`` is false), else failed for good. ``error`` is stored
        without NUL characters and cut to MAX_ERROR_LENGTH. Raises like ``heartbeat``.
        """
        errors = self.fail_many([Outcome(task, progress, error=error, final=final)])
        if errors:
            raise next(iter(errors.values()))

    def fail_many(self, outcomes: Sequence[Outcome]) -> dict[str, TaskqError]:
        """Fail many tasks in one statement; returns an error per task not failed."""

        def write(
            conn: Conn,
            ids: list[str],
            leases: list[str | None],
            progress: list[str | None],
            kept: list[Outcome],
        ) -> list[dict[str, Any]]:
            errors = [clean_error(o.error) for o in kept]
            return self._q.fail(conn, ids, leases, progress, errors, [o.final for o in kept])

        # a failure must not fail on its progress: unstorable progress is left out
        return self._end_many(outcomes, write, strict_progress=False)

    def _end_many(
        self,
        outcomes: Sequence[Outcome],
        write: Callable[
            [Conn, list[str], list[str | None], list[str | None], list[Outcome]],
            list[dict[str, Any]],
        ],
        *,
        strict_progress: bool,
    ) -> dict[str, TaskqError]:
        """Write outcomes in one statement (``write``), run follow-ups in the same
        transaction, and explain each outcome that matched no row."""
        ids: list[str] = []
        leases: list[str | None] = []
        progress: list[str | None] = []
        kept: list[Outcome] = []
        unknown: dict[str, TaskqError] = {}
        for o in outcomes:
            try:
                task_id, lease = _ref(o.task)
            except TaskNotFound as e:
                unknown[e.task_id] = e
                continue
            try:
                value = _progress(o.progress, task_id)
            except ValueError:
                if strict_progress:
                    raise
                value = None
            ids.append(task_id)
            leases.append(lease)
            progress.append(value)
            kept.append(o)
        if not ids:
            return unknown
        with self._write(outcomes) as conn:
            rows = write(conn, ids, leases, progress, kept)
            after_final(conn, self._q, rows)
            errors = unknown | self._explain(conn, ids, leases, {str(r["id"]) for r in rows})
        if self.metrics is not None:
            self.metrics.observe_ended(rows)
        return errors

    def release(self, tasks: Sequence[Task]) -> set[str]:
        """Give claimed tasks back to waiting without charging an attempt."""
        if not tasks:
            return set()
        with self._db.connection() as conn:
            back = self._q.release(conn, [t.id for t in tasks], [t.lease for t in tasks])
        if self.metrics is not None:
            self.metrics.observe_released([t for t in tasks if t.id in back])
        return back

    def rescue(self, *, worker_stale: float = DEFAULT_WORKER_STALE, limit: int = 1000) -> int:
        """Take back stale running tasks (see ``Rescuer``); returns how many."""
        from taskq.rescue import rescue_once

        return rescue_once(self._db, self._q, worker_stale=worker_stale, limit=limit,
                           metrics=self.metrics)  # fmt: skip

    # ---- internals -----------------------------------------------------------------

    def _write(self, outcomes: Sequence[Outcome]) -> Any:
        """One statement under autocommit when no outcome can start follow-up work;
        otherwise a transaction, so follow-ups commit with the status change."""
        plain = all(isinstance(o.task, Task) and not o.task.has_followups for o in outcomes)
        return self._db.connection() if plain else self._db.transaction()

    def _explain(
        self, conn: Conn, ids: list[str], leases: list[str | None], done: set[str]
    ) -> dict[str, TaskqError]:
        if len(done) == len(ids):
            return {}
        missing = [(i, lease) for i, lease in zip(ids, leases, strict=True) if i not in done]
        return self._q.diagnose(conn, [m[0] for m in missing], [m[1] for m in missing])


__all__ = ["Dequeuer", "Outcome", "clean_error"]
