"""The declared schema: SQLAlchemy table metadata for a given PostgreSQL schema.

Alembic's revisions create exactly this (a test compares the two). Runtime SQL does
not go through SQLAlchemy; it lives in ``taskq/sql/*.sql``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from taskq.core.names import (  # noqa: F401 - re-exported for the schema's readers
    FINAL,
    MAX_NAME_LENGTH,
    SCHEDULE_BUILTIN_COLUMNS,
    STATUSES,
    TASK_BUILTIN_COLUMNS,
)

_now = sa.text("now()")


def _status_in(values: tuple[str, ...]) -> sa.TextClause:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.text(f"status IN ({quoted})")


def metadata(schema: str) -> sa.MetaData:
    """The tables of taskq in ``schema``."""
    md = sa.MetaData(schema=schema)
    sa.Table(
        "tasks",
        md,
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="waiting"),
        sa.Column("spec", pg.JSONB),
        sa.Column("progress", pg.JSONB),
        sa.Column("result", pg.JSONB),
        sa.Column("error", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("heartbeat_timeout", sa.Float, nullable=False, server_default="60"),
        sa.Column("timeout", sa.Float),
        sa.Column("retry_delay", sa.Float, nullable=False, server_default="1"),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("lease", pg.UUID(as_uuid=False)),
        sa.Column("worker_id", pg.UUID(as_uuid=False)),
        sa.Column("unique_key", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("chain_id", pg.UUID(as_uuid=False)),
        sa.Column("chain_index", sa.Integer),
        sa.Column("depends_on", pg.UUID(as_uuid=False)),
        sa.Column("group_id", pg.UUID(as_uuid=False)),
        sa.Column("on_success", pg.JSONB),
        sa.Column("previous_result", pg.JSONB),
        sa.Column("schedule_id", pg.UUID(as_uuid=False)),
        sa.Column("errors", pg.JSONB),
        sa.CheckConstraint(_status_in(STATUSES), name="tasks_status_check"),
        sa.CheckConstraint(
            f"length(queue) BETWEEN 1 AND {MAX_NAME_LENGTH}", name="tasks_queue_check"
        ),
        sa.CheckConstraint(
            f"length(type) BETWEEN 1 AND {MAX_NAME_LENGTH}", name="tasks_type_check"
        ),
        sa.CheckConstraint("attempts >= 0", name="tasks_attempts_check"),
        sa.CheckConstraint("max_attempts >= 1", name="tasks_max_attempts_check"),
        sa.CheckConstraint("heartbeat_timeout > 0", name="tasks_heartbeat_timeout_check"),
        sa.CheckConstraint("timeout IS NULL OR timeout > 0", name="tasks_timeout_check"),
        sa.CheckConstraint("retry_delay >= 0", name="tasks_retry_delay_check"),
        sa.CheckConstraint(
            "errors IS NULL OR jsonb_typeof(errors) = 'array'", name="tasks_errors_check"
        ),
        sa.Index(
            "tasks_dequeue_idx", "queue", sa.text("priority DESC"), "run_at", "seq",
            postgresql_where=sa.text("status = 'waiting'"),
        ),
        sa.Index(
            "tasks_dequeue_any_idx", sa.text("priority DESC"), "run_at", "seq",
            postgresql_where=sa.text("status = 'waiting'"),
        ),
        sa.Index(
            "tasks_running_idx", "worker_id", postgresql_where=sa.text("status = 'running'")
        ),
        sa.Index(
            "tasks_unique_key_idx", "unique_key", unique=True,
            postgresql_where=sa.text(
                "unique_key IS NOT NULL AND status IN ('waiting', 'running')"
            ),
        ),
        sa.Index("tasks_final_idx", "finished_at", postgresql_where=_status_in(FINAL)),
        sa.Index("tasks_chain_idx", "chain_id", postgresql_where=sa.text("chain_id IS NOT NULL")),
        sa.Index("tasks_group_idx", "group_id", postgresql_where=sa.text("group_id IS NOT NULL")),
        sa.Index(
            "tasks_depends_on_idx", "depends_on",
            postgresql_where=sa.text("depends_on IS NOT NULL"),
        ),
        # listing order (migration 0007); the text columns under the "C" collation
        sa.Index("tasks_list_status_idx", "status", sa.text("created_at DESC"),
                 sa.text("seq DESC"), postgresql_ops={"status": 'COLLATE "C"'}),
        sa.Index("tasks_list_queue_idx", "queue", "status", sa.text("created_at DESC"),
                 sa.text("seq DESC"),
                 postgresql_ops={"queue": 'COLLATE "C"', "status": 'COLLATE "C"'}),
        sa.Index("tasks_list_type_idx", "type", "status", sa.text("created_at DESC"),
                 sa.text("seq DESC"),
                 postgresql_ops={"type": 'COLLATE "C"', "status": 'COLLATE "C"'}),
        postgresql_with={
            "fillfactor": "80",
            "autovacuum_vacuum_scale_factor": "0.02",
            "autovacuum_analyze_scale_factor": "0.02",
        },
    )  # fmt: skip
    sa.Table(
        "schedules",
        md,
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("spec", pg.JSONB),
        sa.Column("cron_schedule", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("reference_key", pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("skip_missed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.UniqueConstraint("queue", "type", "reference_key", name="schedules_identity_key"),
        sa.CheckConstraint(
            f"length(queue) BETWEEN 1 AND {MAX_NAME_LENGTH}", name="schedules_queue_check"
        ),
        sa.CheckConstraint(
            f"length(type) BETWEEN 1 AND {MAX_NAME_LENGTH}", name="schedules_type_check"
        ),
        sa.CheckConstraint(
            "jsonb_typeof(reference_key) = 'object'", name="schedules_reference_key_check"
        ),
        sa.CheckConstraint(
            "last_run_at IS NULL OR next_run_at > last_run_at", name="schedules_advance_check"
        ),
        sa.Index("schedules_due_idx", "next_run_at", postgresql_where=sa.text("enabled")),
    )  # fmt: skip
    sa.Table(
        "workers",
        md,
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    sa.Table(
        "groups",
        md,
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("on_complete", pg.JSONB),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )  # fmt: skip
    sa.Table(
        "api_tokens",
        md,
        sa.Column("prefix", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name="api_tokens_name_check"),
        sa.CheckConstraint(
            "scope IN ('read', 'write', 'admin')", name="api_tokens_scope_check"
        ),
        sa.Index(
            "api_tokens_name_idx", "name", unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )  # fmt: skip
    return md
