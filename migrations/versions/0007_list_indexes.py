"""list indexes and list_tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Listing tasks newest first (``Tasks.list``, ``taskq list``, the API and the dashboard)
read the whole table once it held millions of rows: with no index in listing order
(0003 dropped ``tasks_created_idx``), every listing, filtered or not, scanned and
sorted every matching row (0.6-1.2 s on 4 million rows). Three indexes in listing
order, each led by the columns a listing filters on, let every listing
(taskq/sql/listing.sql: one ordered branch per status, merged) read about one page:

- ``(status, created_at DESC, seq DESC)``: no filter, or status alone;
- ``(queue, status, created_at DESC, seq DESC)``: a queue, with or without statuses;
- ``(type, status, created_at DESC, seq DESC)``: a type, with or without statuses.

Their text columns are indexed under the "C" collation, which only the listing asks for
(``status COLLATE "C" = 'failed'``): no other statement can use them. Plainly on
``status``, the status index became the planner's pick for the writes to held tasks
(``status >= 'running' AND status <= 'running'``, which must find them by primary key,
tests/test_core_plans.py) and for the gauges, which must not read finished rows.

Each index costs every insert and every status change (a non-HOT update) an entry:
see the commit that added this revision for enqueue timings before and after.

``list_query`` writes the listing for the filters given (only those: a filter written
"(x IS NULL OR col = x)" is never an index condition), one branch per status, each
ordered by its index and cut at the limit, under a Merge Append that pulls only the
rows it returns; values are quoted literals, so each call is planned for its values. A
queue (else a type) filter leads: written as the range "queue >= q AND queue <= q"
and leading the ORDER BY, so that only the index led by that column yields rows in
that order (with the equality, ORDER BY queue is redundant and the planner may walk
tasks_list_status_idx through every queue's rows). ``list_tasks`` runs it with
sequential scans, bitmap scans and sorts (incremental ones too) off, as 0005's claims do: with statistics
older than a burst the planner otherwise read every finished row by bitmap and sorted
them (tests/test_list_plans.py).
"""

from alembic import op

from taskq.db.migrate import run_ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen DDL of this revision; {s} is the taskq schema, composed as an identifier.
UPGRADE = """
CREATE INDEX tasks_list_status_idx ON {s}.tasks
    (status COLLATE "C", created_at DESC, seq DESC);
CREATE INDEX tasks_list_queue_idx ON {s}.tasks
    (queue COLLATE "C", status COLLATE "C", created_at DESC, seq DESC);
CREATE INDEX tasks_list_type_idx ON {s}.tasks
    (type COLLATE "C", status COLLATE "C", created_at DESC, seq DESC);

CREATE FUNCTION {s}.list_query(
    p_table regclass, p_statuses text[], p_queue text, p_type text, p_user_id text,
    p_title text, p_before timestamptz, p_before_seq bigint, p_limit bigint
) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    lead text := CASE WHEN p_queue IS NOT NULL THEN 'queue'
                      WHEN p_type IS NOT NULL THEN 'type' ELSE '' END;
    filters text := '';
    ord text;
    branches text[] := ARRAY[]::text[];
    st text;
BEGIN
    IF lead = 'queue' THEN
        filters := format(' AND queue COLLATE "C" >= %L AND queue COLLATE "C" <= %L',
                          p_queue, p_queue);
    ELSIF lead = 'type' THEN
        filters := format(' AND type COLLATE "C" >= %L AND type COLLATE "C" <= %L',
                          p_type, p_type);
    END IF;
    IF p_type IS NOT NULL AND lead <> 'type' THEN
        filters := filters || format(' AND type = %L', p_type);
    END IF;
    IF p_user_id IS NOT NULL THEN
        filters := filters || format(' AND user_id = %L', p_user_id);
    END IF;
    IF p_title IS NOT NULL THEN
        filters := filters || format(' AND title = %L', p_title);
    END IF;
    IF p_before IS NOT NULL AND p_before_seq IS NOT NULL THEN
        filters := filters || format(' AND (created_at, seq) < (%L::timestamptz, %s::bigint)',
                                     p_before, p_before_seq);
    ELSIF p_before IS NOT NULL THEN
        filters := filters || format(' AND created_at < %L::timestamptz', p_before);
    END IF;
    ord := CASE WHEN lead = '' THEN '' ELSE lead || ' COLLATE "C", ' END
           || 'created_at DESC, seq DESC';
    FOREACH st IN ARRAY coalesce(
        p_statuses, ARRAY['waiting', 'running', 'cancelled', 'finished', 'failed']
    ) LOOP
        IF NOT format('%L', st) = ANY(branches) THEN
            branches := branches || format('%L', st);
        END IF;
    END LOOP;
    IF cardinality(branches) = 0 OR p_limit <= 0 THEN
        RETURN format('SELECT * FROM %s WHERE false', p_table);
    END IF;
    SELECT array_agg(format('(SELECT * FROM %s WHERE status COLLATE "C" = %s%s ORDER BY %s LIMIT %s)',
                            p_table, b, filters, ord, p_limit))
    INTO branches FROM unnest(branches) AS b;
    RETURN format('SELECT * FROM (%s) AS listed ORDER BY %s LIMIT %s',
                  array_to_string(branches, ' UNION ALL '), ord, p_limit);
END
$$;

CREATE FUNCTION {s}.list_tasks(
    p_statuses text[], p_queue text, p_type text, p_user_id text, p_title text,
    p_before timestamptz, p_before_seq bigint, p_limit bigint
) RETURNS SETOF {s}.tasks
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET jit = off
AS $$
BEGIN
    RETURN QUERY EXECUTE {s}.list_query(
        (SELECT typrelid::regclass FROM pg_catalog.pg_type
         WHERE oid = pg_catalog.pg_typeof(NULL::{s}.tasks)), p_statuses, p_queue, p_type, p_user_id, p_title,
        p_before, p_before_seq, p_limit);
END
$$;
"""

DOWNGRADE = """
DROP FUNCTION {s}.list_tasks(text[], text, text, text, text, timestamptz, bigint, bigint);
DROP FUNCTION {s}.list_query(regclass, text[], text, text, text, text, timestamptz, bigint,
                             bigint);
DROP INDEX {s}.tasks_list_type_idx;
DROP INDEX {s}.tasks_list_queue_idx;
DROP INDEX {s}.tasks_list_status_idx;
"""


def upgrade() -> None:
    run_ddl(op, UPGRADE)


def downgrade() -> None:
    run_ddl(op, DOWNGRADE)
