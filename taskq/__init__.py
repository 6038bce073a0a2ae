"""taskq: a durable job queue on PostgreSQL.

Enqueue inside your own transaction, claim with ``FOR UPDATE SKIP LOCKED``, write
outcomes under a fenced lease, schedule with cron. ``__all__`` is the public API.
"""

from taskq.dequeuer import Dequeuer, Outcome
from taskq.errors import (
    InvalidReference,
    InvalidSchedule,
    InvalidTask,
    LeaseLost,
    NotScheduled,
    QueueNotSpecified,
    TaskAlreadyExists,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskNotFound,
    TaskNotRunning,
    TaskqError,
    TypeNotSpecified,
)
from taskq.metrics import Metrics
from taskq.queuer import Chain, Group, Queuer
from taskq.references import add_reference_column, drop_reference_column
from taskq.registry import Registry, TaskContext, TaskOptions, current_task, current_task_id
from taskq.scheduler import Scheduler
from taskq.tasks import Tasks, Workflow
from taskq.types import (
    Progress,
    Schedule,
    Task,
    TaskEnqueueRequest,
    TaskScheduleRequest,
    TaskStatus,
)

__version__ = "0.1.0"


def migrate(url: str | None = None, schema: str | None = None, revision: str = "head") -> None:
    """Upgrade taskq's tables to ``revision`` (idempotent; concurrent callers take
    turns). Loads Alembic only when called."""
    from taskq.migrations import migrate as run

    run(url, schema, revision)


__all__ = [
    "Chain",
    "Dequeuer",
    "Group",
    "InvalidReference",
    "InvalidSchedule",
    "InvalidTask",
    "LeaseLost",
    "Metrics",
    "NotScheduled",
    "Outcome",
    "Progress",
    "QueueNotSpecified",
    "Queuer",
    "Registry",
    "Schedule",
    "Scheduler",
    "Task",
    "TaskAlreadyExists",
    "TaskCancelled",
    "TaskContext",
    "TaskEnqueueRequest",
    "TaskFailed",
    "TaskFinished",
    "TaskNotFound",
    "TaskNotRunning",
    "TaskOptions",
    "TaskScheduleRequest",
    "TaskStatus",
    "TaskqError",
    "Tasks",
    "TypeNotSpecified",
    "Workflow",
    "__version__",
    "add_reference_column",
    "current_task",
    "current_task_id",
    "drop_reference_column",
    "migrate",
]
