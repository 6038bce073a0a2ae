"""Chains and groups as values: what ``enqueue_chain``/``enqueue_group`` return, and
what ``get_chain``/``get_group`` read back. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskq.core.types import Task, TaskStatus

BLOCKED = "9999-12-31T00:00:00+00:00"
"""The run_at of a chain link until the previous one finishes: no claim reaches it, and,
unlike 'infinity', psycopg (and every other driver) reads it back as a datetime."""


@dataclass(frozen=True, slots=True)
class Chain:
    id: str
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    task_ids: tuple[str, ...]


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
