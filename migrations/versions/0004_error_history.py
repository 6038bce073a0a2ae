"""error history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Every failed attempt keeps an entry in ``tasks.errors`` (a JSON array, the newest
last, at most 20 entries): the attempt, when, which worker, the exception's type,
message and traceback, or what the rescue or a timeout saw. ``error`` keeps the last
message, as before.
"""

from alembic import op

from taskq.db.migrate import run_ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE {s}.tasks ADD COLUMN errors jsonb;
ALTER TABLE {s}.tasks ADD CONSTRAINT tasks_errors_check
    CHECK (errors IS NULL OR jsonb_typeof(errors) = 'array');
"""

DOWNGRADE = """
ALTER TABLE {s}.tasks DROP COLUMN errors;
"""


def upgrade() -> None:
    run_ddl(op, UPGRADE)


def downgrade() -> None:
    run_ddl(op, DOWNGRADE)
