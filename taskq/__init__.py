"""taskq: a durable job queue on PostgreSQL.

Enqueue inside your own transaction, claim with ``FOR UPDATE SKIP LOCKED``, write
outcomes under a fenced lease, schedule with cron. ``__all__`` is the public API.
"""

from typing import Any

from taskq.actions.outcomes import Outcome
from taskq.core.errors import (
    EmbeddedUnavailable,
    InvalidProgress,
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
    UnknownTaskType,
)
from taskq.core.types import (
    Progress,
    Schedule,
    Task,
    TaskEnqueueRequest,
    TaskScheduleRequest,
    TaskStatus,
)
from taskq.core.workflows import Chain, Group, Workflow
from taskq.db.ddl import add_reference_column, drop_reference_column
from taskq.dequeuer import Dequeuer
from taskq.ops.metrics import Metrics
from taskq.queuer import Queuer
from taskq.registry import (
    RegisteredTask,
    Registry,
    TaskContext,
    TaskOptions,
    current_task,
    current_task_id,
)
from taskq.scheduler import Scheduler
from taskq.tasks import Tasks

__version__ = "0.1.0"


def migrate(url: str | None = None, schema: str | None = None, revision: str = "head") -> Any:
    """Upgrade taskq's tables to ``revision`` (idempotent; concurrent callers take
    turns; an up-to-date schema is left alone). Returns what changed
    (``taskq.db.migrate.Migrated``). Loads Alembic only when called."""
    from taskq.db.migrate import migrate as run

    return run(url, schema, revision)


__all__ = [
    "Chain",
    "Dequeuer",
    "EmbeddedUnavailable",
    "Group",
    "InvalidProgress",
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
    "RegisteredTask",
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
    "UnknownTaskType",
    "Workflow",
    "__version__",
    "add_reference_column",
    "current_task",
    "current_task_id",
    "drop_reference_column",
    "migrate",
]
