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
        "previous_result", "schedule_id",
    }
)  # fmt: skip

SCHEDULE_BUILTIN_COLUMNS = frozenset(
    {
        "id", "queue", "type", "spec", "cron_schedule", "timezone", "reference_key",
        "next_run_at", "last_run_at", "enabled", "skip_missed", "created_at", "updated_at",
    }
)  # fmt: skip
