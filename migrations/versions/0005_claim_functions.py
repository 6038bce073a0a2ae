"""claim_any, claim_many: claims planned the same whatever the statistics say

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

With statistics older than a burst (taken while the table was nearly empty), the
planner believes there are a handful of waiting rows and may claim "any queue" by a
bitmap scan of every waiting row and a sort, instead of reading the first `limit`
entries of tasks_dequeue_any_idx in order: 40 ms and more per claim on a 30,000-row
backlog. No query shape rules that plan out, but planner settings can, and settings
given to a function hold only while it runs: inside a caller's transaction, behind a
transaction pooler, after a savepoint is released (SET LOCAL would outlive the
savepoint). With sequential and bitmap scans off, the ordered index scan is the only
plan left. (enable_sort stays on: the final ORDER BY always sorts the claimed rows,
and disabling it pushes every plan past jit_above_cost on PostgreSQL 15, where JIT
then costs ~300 ms per claim; jit is off as a second guard.)

claim_many claims from several queues: the first `limit` of each queue, each read from
its own range of tasks_dequeue_idx, merged in claiming order. The queue name is a
parameter of the inner scan, so its plan cannot follow any queue's statistics, and with
bitmap scans off it cannot read a whole queue and sort it either (measured: with fresh
statistics, a claim of 100 read and sorted all 20,000 tasks of a busy queue). The
inner scans lock up to (queues - 1) x limit rows they do not claim; they stay waiting
and are unlocked when the statement's transaction ends.

The statements that call them are the `dequeue_any`, `dequeue_many`, `exchange_any` and
`exchange_many` blocks of taskq/sql/tasks.sql; the bodies are the same claim as the
`claim_one` fragment (p_charge false: a worker's reservation, charged when it starts).
"""

from alembic import op

from taskq.db.migrate import run_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION {s}.claim_any(p_limit bigint, p_worker_id uuid, p_charge boolean)
RETURNS SETOF {s}.tasks
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH next AS (
        SELECT id
        FROM {s}.tasks
        WHERE status = 'waiting' AND run_at <= now()
        ORDER BY priority DESC, run_at, seq
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE {s}.tasks AS t
        SET status = 'running',
            attempts = t.attempts + CASE WHEN p_charge THEN 1 ELSE 0 END,
            started_at = CASE WHEN p_charge THEN now() END,
            last_heartbeat_at = now(), updated_at = now(), finished_at = NULL,
            lease = gen_random_uuid(), worker_id = p_worker_id
        WHERE t.id = ANY(ARRAY(SELECT id FROM next))
        RETURNING t.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, run_at, seq;
END
$$;

CREATE FUNCTION {s}.claim_many(
    p_queues text[], p_limit bigint, p_worker_id uuid, p_charge boolean
)
RETURNS SETOF {s}.tasks
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH next AS (
        SELECT c.id
        FROM unnest(p_queues) AS q(name)
        CROSS JOIN LATERAL (
            SELECT id, priority, run_at, seq
            FROM {s}.tasks
            WHERE status = 'waiting' AND run_at <= now()
              AND queue >= q.name AND queue <= q.name
            ORDER BY queue, priority DESC, run_at, seq
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.run_at, c.seq
        LIMIT p_limit
    ),
    claimed AS (
        UPDATE {s}.tasks AS t
        SET status = 'running',
            attempts = t.attempts + CASE WHEN p_charge THEN 1 ELSE 0 END,
            started_at = CASE WHEN p_charge THEN now() END,
            last_heartbeat_at = now(), updated_at = now(), finished_at = NULL,
            lease = gen_random_uuid(), worker_id = p_worker_id
        WHERE t.id = ANY(ARRAY(SELECT id FROM next))
        RETURNING t.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, run_at, seq;
END
$$;
"""

DOWNGRADE = """
DROP FUNCTION {s}.claim_many(text[], bigint, uuid, boolean);
DROP FUNCTION {s}.claim_any(bigint, uuid, boolean);
"""


def upgrade() -> None:
    run_ddl(op, UPGRADE)


def downgrade() -> None:
    run_ddl(op, DOWNGRADE)
