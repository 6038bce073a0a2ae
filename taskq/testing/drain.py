"""``drain``: run every runnable task in this process, for tests.

It claims tasks the way a worker does (highest priority first, under a lease, so every
write is fenced), runs each one's handler from the registry in this thread, and writes
the outcome with the worker's rules: a return value finishes the task, an exception
fails it (retried while attempts remain), ``taskq.TaskFailed`` fails it at once, and a
handler that learns of its cancellation leaves the task cancelled. Follow-ups become
runnable when the task that releases them ends (the next link of a chain, an
``on_success`` request, a group's ``on_complete``), so one ``drain`` runs them too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from taskq.actions.outcomes import Outcome
from taskq.core.encode import encode_json
from taskq.core.errors import LeaseLost, TaskCancelled, TaskFailed, TaskFinished, TaskNotFound
from taskq.core.types import JSON, Task, TaskStatus
from taskq.dequeuer import Dequeuer
from taskq.registry import Registry, TaskContext, TaskType
from taskq.tasks import Tasks

MAX_TASKS = 10_000
"""Most handler runs one ``drain`` makes before it decides the work never ends."""

_STOPPED = (TaskCancelled, LeaseLost, TaskFinished, TaskNotFound)


def drain(
    registry: Registry,
    db: Any,
    queues: Iterable[str] | None = None,
    *,
    skip_backoff: bool = False,
    raise_errors: bool = False,
    max_tasks: int = MAX_TASKS,
    schema: str | None = None,
) -> list[Task]:
    """Run every runnable task of ``queues`` (every queue when None) in this process
    until none is left; return the tasks it ran, in the order it ran them, each as
    stored right after its run (finished, failed, cancelled, or waiting for a retry).

    ``db`` is what any taskq class takes (the ``taskq_db`` fixture, a URI, a pool, or
    your own connection or SQLAlchemy session: then tasks enqueued in your uncommitted
    transaction run too, and their outcomes are part of it). A failed task with
    attempts left waits out its retry backoff as usual, so it is not run again here;
    with ``skip_backoff`` it is due at once and runs again until it finishes or runs
    out of attempts. Tasks whose ``run_at`` is still ahead are left alone.

    ``raise_errors``: re-raise a handler's exception once its failure is stored.
    RuntimeError after ``max_tasks`` runs (a handler that always enqueues more work).
    """
    names = tuple(queues) if queues is not None else ()
    dequeuer = Dequeuer(db, schema=schema, pool_size=2)
    tasks = Tasks(dequeuer.database)
    database = dequeuer.database
    ran: list[Task] = []
    try:
        while True:
            task = dequeuer.dequeue(*names, timeout=0)
            if task is None:
                return ran
            if len(ran) >= max_tasks:
                dequeuer.release([task])
                raise RuntimeError(
                    f"drain ran {max_tasks} tasks and more keep coming (a handler that "
                    "always enqueues more work?); raise max_tasks if that is expected"
                )
            error = _run(registry, dequeuer, task)
            after = tasks.get(task.id)
            ran.append(after)
            if skip_backoff and after.status == TaskStatus.WAITING:
                database.query(database.settings.stmts.tasks.make_due([task.id]))
            if raise_errors and error is not None:
                raise error
    finally:
        dequeuer.close()


def _run(registry: Registry, dequeuer: Dequeuer, task: Task) -> BaseException | None:
    """Run one claimed task's handler and write its outcome; returns what it raised."""

    def report(t: Task, value: JSON) -> None:
        try:
            dequeuer.heartbeat(t, value)
        except (LeaseLost, TaskFinished, TaskNotFound) as e:
            raise TaskCancelled(t.id) from e

    ttype = registry.get(task.type)
    if ttype is None:
        error = f"no handler registered for task type {task.type!r} in this registry"
        dequeuer.fail_many([Outcome(task, error=error)])
        return None
    ctx = TaskContext(task, report)
    token = ctx.bind()
    try:
        result = _call(ttype, ctx)
    except _STOPPED:
        return None  # cancelled or taken away: nothing of this run is written
    except TaskFailed as e:
        dequeuer.fail_many([Outcome(task, error=e, final=True)])
        return e
    except Exception as e:
        dequeuer.fail_many([Outcome(task, error=e)])
        return e
    except BaseException:
        dequeuer.release([task])
        raise
    finally:
        TaskContext.unbind(token)
    try:
        encode_json(result, f"result of task {task.id}")
    except ValueError as e:
        dequeuer.fail_many([Outcome(task, error=str(e), final=True)])
        return e
    dequeuer.finish_many([Outcome(task, result=result)])
    return None


def _call(ttype: TaskType, ctx: TaskContext) -> Any:
    if not ttype.is_async:
        return ttype.handler(ctx)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(ttype.handler(ctx))
    # Called from a coroutine (an async test): run the handler on a loop of its own.
    box: dict[str, Any] = {}

    def run() -> None:
        token = ctx.bind()
        try:
            box["result"] = asyncio.run(ttype.handler(ctx))
        except BaseException as e:
            box["error"] = e
        finally:
            TaskContext.unbind(token)

    thread = threading.Thread(target=run, name="taskq-drain-async")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
