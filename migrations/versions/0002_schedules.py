"""schedules

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

A schedule is identified by (queue, type, reference_key): reference_key is the
canonical JSON of its reference columns, so the database, not only the code, keeps
one schedule per identity. At most one task per (schedule, tick) is guaranteed by the
task's primary key: the scheduler derives the task id from the schedule id and the
tick (uuid5), so a second insert for the same tick is a primary-key violation. (A
unique index on tasks (schedule_id, run_at) would key on a column that retries,
rescues and releases move, so it could reject those unrelated writes.)
schedules_advance_check keeps a schedule's ticks moving forward.
"""

from alembic import op

from taskq.db.migrate import run_ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen DDL of this revision; {s} is the taskq schema, composed as an identifier.
UPGRADE = """
CREATE TABLE {s}.schedules (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue text NOT NULL,
    type text NOT NULL,
    spec jsonb,
    cron_schedule text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    reference_key jsonb NOT NULL DEFAULT '{{}}',
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    skip_missed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_identity_key UNIQUE (queue, type, reference_key),
    CONSTRAINT schedules_queue_check CHECK (length(queue) BETWEEN 1 AND 200),
    CONSTRAINT schedules_type_check CHECK (length(type) BETWEEN 1 AND 200),
    CONSTRAINT schedules_reference_key_check CHECK (jsonb_typeof(reference_key) = 'object'),
    CONSTRAINT schedules_advance_check
        CHECK (last_run_at IS NULL OR next_run_at > last_run_at)
);
CREATE INDEX schedules_due_idx ON {s}.schedules (next_run_at) WHERE enabled;
"""

DOWNGRADE = """
DROP TABLE {s}.schedules;
"""


def upgrade() -> None:
    run_ddl(op, UPGRADE)


def downgrade() -> None:
    run_ddl(op, DOWNGRADE)
