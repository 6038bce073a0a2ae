-- Runtime SQL of the Prometheus gauges read from the database (taskq/ops/gauges.py).
-- Each statement starts with "-- name: NAME" and the next line says what it is for.

-- name: counts
-- One cheap query per Prometheus scrape (see taskq/ops/gauges.py). Waiting and running
-- tasks are counted exactly through their partial indexes (tasks_dequeue_idx is read
-- index-only), so the cost follows the backlog and the tasks in flight, never the
-- history: finished, failed and cancelled rows are not scanned. Rows by `kind`:
--   queue:    the `max_queues` queues with the most waiting + running tasks: waiting,
--             running, and the age in seconds of the oldest runnable waiting task;
--   other:    the remaining queues added together (only when there are more);
--   estimate: rows per status in the whole table, from the planner's statistics
--             (pg_class.reltuples times the status's most-common-value frequency, as
--             of the last ANALYZE; none before the first);
--   workers:  worker processes seen within `stale` seconds.
WITH waiting AS (
    SELECT queue, count(*) AS n, min(run_at) FILTER (WHERE run_at <= now()) AS oldest
    FROM {tasks}
    WHERE status = 'waiting'
    GROUP BY queue
),
running AS (
    SELECT queue, count(*) AS n
    FROM {tasks}
    WHERE status = 'running'
    GROUP BY queue
),
per_queue AS MATERIALIZED (
    SELECT coalesce(w.queue, r.queue) AS queue, coalesce(w.n, 0) AS waiting,
           coalesce(r.n, 0) AS running, w.oldest
    FROM waiting AS w FULL JOIN running AS r ON r.queue = w.queue
),
top AS MATERIALIZED (
    SELECT * FROM per_queue ORDER BY waiting + running DESC, queue LIMIT %(max_queues)s
),
-- Finished, failed and cancelled tasks per queue, exactly, only while the table is
-- small (at most `exact_bytes`): the uncorrelated size check is a one-time filter, so
-- on a large table the aggregate never runs and the estimate below stands in. Queues
-- with only ended tasks get series while there is room under `max_queues`.
final_counts AS MATERIALIZED (
    SELECT queue, status, count(*) AS n
    FROM {tasks}
    WHERE status IN ('finished', 'failed', 'cancelled')
      AND (SELECT pg_relation_size(c.oid) FROM pg_class AS c
           JOIN pg_namespace AS ns ON ns.oid = c.relnamespace
           WHERE ns.nspname = %(schema)s AND c.relname = 'tasks') <= %(exact_bytes)s
    GROUP BY queue, status
),
final_queues AS (
    SELECT queue FROM top
    UNION ALL
    (SELECT DISTINCT queue FROM final_counts
     WHERE queue NOT IN (SELECT queue FROM top)
     ORDER BY queue
     LIMIT greatest(%(max_queues)s - (SELECT count(*) FROM top), 0))
)
SELECT 'queue' AS kind, queue, NULL::text AS status, waiting::float8 AS waiting,
       running::float8 AS running, extract(epoch FROM now() - oldest)::float8 AS oldest_age
FROM top
UNION ALL
SELECT 'other', NULL, NULL, sum(waiting)::float8, sum(running)::float8,
       extract(epoch FROM now() - min(oldest))::float8
FROM per_queue
WHERE queue NOT IN (SELECT queue FROM top)
HAVING count(*) > 0
UNION ALL
SELECT 'estimate', NULL, s.status, round(c.reltuples * s.freq)::float8, NULL, NULL
FROM pg_class AS c
JOIN pg_namespace AS ns ON ns.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT unnest(st.most_common_vals::text::text[]) AS status,
           unnest(st.most_common_freqs) AS freq
    FROM pg_stats AS st
    WHERE st.schemaname = %(schema)s AND st.tablename = 'tasks' AND st.attname = 'status'
) AS s
WHERE ns.nspname = %(schema)s AND c.relname = 'tasks' AND c.reltuples >= 0
UNION ALL
SELECT 'final', f.queue, f.status, f.n::float8, NULL, NULL
FROM final_counts AS f
WHERE f.queue IN (SELECT queue FROM final_queues)
UNION ALL
SELECT 'workers', NULL, NULL, count(*)::float8, NULL, NULL
FROM {workers}
WHERE stopped_at IS NULL AND last_seen_at >= now() - make_interval(secs => %(stale)s);

