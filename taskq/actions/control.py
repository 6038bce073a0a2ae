"""Looking at tasks and controlling them, as plans: cancel, retry, delete, purge,
chains and groups. Reads of one row need no plan of their own (``plan.just``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from taskq.actions.enqueue import ColumnCache
from taskq.actions.followups import after_final
from taskq.actions.plan import Plan, atomic, just, run
from taskq.core.errors import TaskAlreadyExists, TaskFinished, TaskNotFound, TaskqError
from taskq.core.types import Task, TaskStatus
from taskq.core.workflows import Workflow, overall_status
from taskq.sql import Statements


def row_of(task: Task) -> dict[str, Any]:
    """What the follow-up logic reads of a task that just changed status."""
    return {
        "id": task.id,
        "status": task.status.value,
        "chain_id": task.chain_id,
        "chain_index": task.chain_index,
        "group_id": task.group_id,
        "on_success": task.on_success,
        "result": task.result,
    }


def get(stmts: Statements, task_id: str) -> Plan[Task]:
    task = yield from run(stmts.tasks.get(task_id))
    if task is None:
        raise TaskNotFound(task_id)
    return task


def cancel(stmts: Statements, cache: ColumnCache, task_id: str) -> Plan[Task]:
    """Cancel a waiting or running task (and what its chain then cancels). A cancelled
    task comes back unchanged; a finished or failed one raises TaskFinished."""

    def go() -> Plan[Task | None]:
        task = yield from run(stmts.tasks.cancel(task_id))
        if task is not None:
            yield from after_final(stmts, cache, [row_of(task)])
        return task

    task = yield from atomic(go())
    if task is not None:
        return task
    current = yield from get(stmts, task_id)
    if current.status is TaskStatus.CANCELLED:
        return current
    raise TaskFinished(task_id, current.status.value)


def retry(stmts: Statements, task_id: str) -> Plan[Task]:
    """Put a failed or cancelled task back to waiting with its attempts reset.
    TaskAlreadyExists (naming this task and its queue) when another waiting or running
    task holds its unique_key; the caller's transaction stays usable then."""
    try:
        task = yield from atomic(just(stmts.tasks.retry(task_id)), single=True)
    except TaskAlreadyExists as e:
        current = yield from get(stmts, task_id)
        raise TaskAlreadyExists(current.queue, e.unique_key, task_id=task_id) from None
    if task is not None:
        return task
    current = yield from get(stmts, task_id)
    raise TaskqError(
        f"task {task_id} is {current.status.value}: only failed or cancelled tasks are retried"
    )


def delete(stmts: Statements, task_id: str) -> Plan[None]:
    if not (yield from run(stmts.tasks.delete(task_id))):
        raise TaskNotFound(task_id)


def purge(
    stmts: Statements,
    older_than: float,
    queue: str | None,
    batch: int,
    now: dt.datetime | None = None,
) -> Plan[int]:
    """One batch of deletions of ended tasks; the caller loops while it returns ``batch``."""
    return (yield from run(stmts.tasks.purge(older_than, batch, queue, now)))


def workflow(stmts: Statements, kind: str, workflow_id: str) -> Plan[Workflow]:
    """The chain or group ``workflow_id`` (``kind`` "chain" or "group")."""
    members = stmts.tasks.chain_members if kind == "chain" else stmts.tasks.group_members
    tasks = yield from run(members(workflow_id))
    if not tasks:
        raise TaskqError(f"{kind} {workflow_id} not found")
    return Workflow(workflow_id, overall_status(tasks), tuple(tasks))


def result_of(task: Task) -> Any:
    """A finished task's result; TaskqError while it has not finished."""
    if task.status is not TaskStatus.FINISHED:
        detail = f": {task.error}" if task.error else ""
        raise TaskqError(f"task {task.id} has no result: it is {task.status.value}{detail}")
    return task.result
