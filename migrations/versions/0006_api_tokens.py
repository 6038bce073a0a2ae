"""api_tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The bearer tokens of the HTTP service (``taskq serve``). A token is
``taskq_<prefix>_<secret>``: the row is found by its public prefix and holds the
SHA-256 of the whole token (a token carries 256 random bits, so a fast hash is enough;
the comparison is constant-time), never the token. A revoked token keeps its row
(``revoked_at``) so ``taskq token list --all`` can show it; its name may be reused.
"""

from alembic import op

from taskq.db.migrate import run_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen DDL of this revision; {s} is the taskq schema, composed as an identifier.
UPGRADE = """
CREATE TABLE {s}.api_tokens (
    prefix text PRIMARY KEY,
    name text NOT NULL,
    hash text NOT NULL,
    scope text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT api_tokens_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'write', 'admin'))
);
CREATE UNIQUE INDEX api_tokens_name_idx ON {s}.api_tokens (name) WHERE revoked_at IS NULL;
"""

DOWNGRADE = """
DROP TABLE {s}.api_tokens;
"""


def upgrade() -> None:
    run_ddl(op, UPGRADE)


def downgrade() -> None:
    run_ddl(op, DOWNGRADE)
