"""Names taskq's tables reserve: built-in columns and limits. No imports, so the
runtime path can use them without loading SQLAlchemy."""

from __future__ import annotations

STATUSES = ("waiting", "running", "cancelled", "finished", "failed")
FINAL = ("cancelled", "finished", "failed")

MAX_NAME_LENGTH = 200
"""Longest queue, type, unique_key, title or user_id accepted (characters)."""

TASK_BUILTIN_COLUMNS = frozenset(
    {
        "id", "seq", "queue", "type", "status", "spec", "progress", "result", "error",
        "priority", "attempts", "max_attempts", "heartbeat_timeout", "timeout",
        "retry_delay", "run_at", "created_at", "updated_at", "started_at", "finished_at",
        "last_heartbeat_at", "lease", "worker_id", "unique_key", "title", "user_id",
        "chain_id", "chain_index", "depends_on", "group_id", "on_success",
        "previous_result", "schedule_id", "errors",
    }
)  # fmt: skip

SCHEDULE_BUILTIN_COLUMNS = frozenset(
    {
        "id", "queue", "type", "spec", "cron_schedule", "timezone", "reference_key",
        "next_run_at", "last_run_at", "enabled", "skip_missed", "created_at", "updated_at",
    }
)  # fmt: skip

MAX_IDENTIFIER = 63
"""PostgreSQL cuts identifiers, NOTIFY channel names included, to 63 bytes."""


def channel(schema: str, suffix: str = "") -> str:
    """The NOTIFY channel ``taskq_<schema><suffix>``, or, when that would be longer than
    PostgreSQL allows (a schema name of up to 63 characters is valid), the same with the
    schema replaced by a digest of it, so every channel of every schema stays distinct."""
    name = f"taskq_{schema}{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    import hashlib

    digest = hashlib.sha1(schema.encode()).hexdigest()[:16]  # noqa: S324 - a name, not a secret
    return f"taskq_{digest}{suffix}"


def wake_channel(schema: str) -> str:
    """Payload: a queue name that got runnable work (wakes dequeuers)."""
    return channel(schema)


def events_channel(schema: str) -> str:
    """Payload: comma-separated ids of tasks that changed (wakes watchers)."""
    return channel(schema, "_events")


def schedules_channel(schema: str) -> str:
    """Payload: a queue whose schedules changed (wakes scheduler processes)."""
    return channel(schema, "_schedules")
