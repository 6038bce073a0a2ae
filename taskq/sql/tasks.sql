-- Runtime SQL for <schema>.tasks. Each block starts with "-- name: NAME" and a line
-- saying what it is for. Placeholders in braces are identifiers composed with
-- psycopg.sql when the module loads (never user text); %(x)s are bound parameters.
-- Every state change is one guarded statement: zero rows means the guard failed, and
-- the caller asks `diagnose` why.
-- Watchers are told which tasks changed on the events channel, 200 ids (7,400 bytes)
-- per notification: a NOTIFY payload may not exceed 8,000 bytes, and one that did
-- would fail the whole statement (a batch finish, or a rescue of many tasks).

-- name: enqueue
-- Insert a batch (one JSON array of rows) and wake the dequeuers of each queue that got
-- runnable work, in one statement. NOTIFY is sent once per queue per transaction.
WITH ins AS (
    INSERT INTO {tasks} (
        id, queue, type, spec, priority, run_at, max_attempts, heartbeat_timeout, timeout,
        retry_delay, unique_key, title, user_id, on_success, chain_id, chain_index,
        depends_on, group_id, schedule_id, previous_result {ref_columns}
    )
    SELECT coalesce(r.id, gen_random_uuid()), r.queue, r.type, r.spec, r.priority, coalesce(r.run_at, now()), r.max_attempts,
           r.heartbeat_timeout, r.timeout, r.retry_delay, r.unique_key, r.title, r.user_id,
           r.on_success, r.chain_id, r.chain_index, r.depends_on, r.group_id, r.schedule_id,
           r.previous_result
           {ref_select}
    FROM jsonb_populate_recordset(NULL::{tasks}, %(rows)s::jsonb) WITH ORDINALITY AS r
    ORDER BY r.ordinality
    RETURNING *
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE run_at <= now()) AS q
)
SELECT ins.*, (SELECT count(*) FROM woken) AS _woken FROM ins ORDER BY ins.seq;

-- name: dequeue
-- Claim up to `limit` runnable tasks: highest priority, then earliest run_at, then
-- enqueue order. SKIP LOCKED lets concurrent claimers pass each other instead of
-- queueing on the same rows; each claim gets a fresh lease that fences later writes.
-- {queue_filter} is empty (any queue: tasks_dequeue_any_idx), "AND queue = ANY(...)"
-- (several queues), or, for one queue, the equality written as the range
-- "queue >= q AND queue <= q" with {queue_order} "queue, " so that only
-- tasks_dequeue_idx yields rows in the ORDER BY. With "queue = q" the planner treats
-- ORDER BY queue as redundant, judges queue selectivity from the whole table's
-- statistics, and may walk tasks_dequeue_any_idx through every other queue's backlog
-- to find a quiet queue's first task (a test checks the plan).
-- UPDATE ... RETURNING has no order of its own, so the claimed rows are sorted again.
WITH next AS (
    SELECT id
    FROM {tasks}
    WHERE status = 'waiting' AND run_at <= now() {queue_filter}
    ORDER BY {queue_order}priority DESC, run_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE {tasks} AS t
    SET status = 'running',
        attempts = t.attempts + 1,
        started_at = now(),
        last_heartbeat_at = now(),
        updated_at = now(),
        finished_at = NULL,
        lease = gen_random_uuid(),
        worker_id = %(worker_id)s
    FROM next
    WHERE t.id = next.id
    RETURNING t.*
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, seq;

-- name: heartbeat
-- Record progress and the heartbeat time of running tasks, each only under its own
-- claim when a lease is given. Watchers are told, once per statement.
WITH beat AS (
    UPDATE {tasks} AS t
    SET progress = coalesce(v.progress, t.progress),
        last_heartbeat_at = now(),
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[])
         AS v(id, lease, progress)
    WHERE t.id = v.id AND t.status = 'running' AND (v.lease IS NULL OR t.lease = v.lease)
    RETURNING t.id
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM beat) AS n GROUP BY chunk
)
SELECT beat.id, (SELECT count(*) FROM told) AS _told FROM beat;

-- name: finish
-- Finish running tasks under their claims. Follow-ups (chains, groups, on_success)
-- are handled by the caller in the same transaction for the rows this returns.
WITH done AS (
    UPDATE {tasks} AS t
    SET status = 'finished',
        progress = coalesce(v.progress, t.progress),
        result = v.result,
        finished_at = now(),
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[], %(results)s::jsonb[])
         AS v(id, lease, progress, result)
    WHERE t.id = v.id AND t.status = 'running' AND (v.lease IS NULL OR t.lease = v.lease)
    RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.group_id,
              t.on_success, t.result, t.started_at, t.finished_at
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM done) AS n GROUP BY chunk
)
SELECT done.*, (SELECT count(*) FROM told) AS _told FROM done;

-- name: fail
-- Fail running tasks under their claims: back to waiting after a jittered exponential
-- backoff while attempts remain (and the failure is not final), else failed for good.
-- The backoff is retry_delay * 2^(attempts-1), capped at an hour, times 0.75..1.25.
WITH failed AS (
    UPDATE {tasks} AS t
    SET status = CASE WHEN t.attempts < t.max_attempts AND NOT v.final
                      THEN 'waiting' ELSE 'failed' END,
        run_at = CASE WHEN t.attempts < t.max_attempts AND NOT v.final
                      THEN now() + make_interval(secs => least(3600.0,
                               t.retry_delay * power(2.0, greatest(t.attempts - 1, 0)))
                               * (0.75 + random() * 0.5))
                      ELSE t.run_at END,
        finished_at = CASE WHEN t.attempts < t.max_attempts AND NOT v.final
                           THEN NULL ELSE now() END,
        lease = CASE WHEN t.attempts < t.max_attempts AND NOT v.final
                     THEN NULL ELSE t.lease END,
        worker_id = CASE WHEN t.attempts < t.max_attempts AND NOT v.final
                         THEN NULL ELSE t.worker_id END,
        progress = coalesce(v.progress, t.progress),
        error = v.error,
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[], %(errors)s::text[],
                %(finals)s::boolean[])
         AS v(id, lease, progress, error, final)
    WHERE t.id = v.id AND t.status = 'running' AND (v.lease IS NULL OR t.lease = v.lease)
    RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.group_id,
              t.on_success, t.result, t.started_at, t.finished_at, t.run_at, now() AS ended_at
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM failed) AS n GROUP BY chunk
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM failed WHERE status = 'waiting' AND run_at <= now()) AS q
)
SELECT failed.*, (SELECT count(*) FROM told) + (SELECT count(*) FROM woken) AS _told
FROM failed;

-- name: release
-- Give running tasks back to waiting without charging an attempt (clean shutdown).
WITH back AS (
    UPDATE {tasks} AS t
    SET status = 'waiting',
        attempts = greatest(t.attempts - 1, 0),
        lease = NULL,
        worker_id = NULL,
        started_at = NULL,
        run_at = now(),
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[]) AS v(id, lease)
    WHERE t.id = v.id AND t.status = 'running' AND t.lease = v.lease
    RETURNING t.id, t.queue
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM back) AS q
)
SELECT back.id, (SELECT count(*) FROM woken) AS _woken FROM back;

-- name: diagnose
-- Why a guarded write matched nothing: the row's status and lease, if it exists.
SELECT id, status, lease FROM {tasks} WHERE id = ANY(%(ids)s::uuid[]);

-- name: rescue
-- Return stale running tasks to waiting (or fail them when no attempts remain): their
-- heartbeat is older than their heartbeat_timeout, or the worker process that holds
-- them stopped or has not been seen for `worker_stale` seconds. Times are the database
-- clock's. Bounded, and SKIP LOCKED so any number of processes may run it at once.
WITH stale AS (
    SELECT t.id
    FROM {tasks} AS t
    WHERE t.status = 'running'
      AND (t.last_heartbeat_at < now() - make_interval(secs => t.heartbeat_timeout)
           OR t.worker_id IN (
               SELECT w.id FROM {workers} AS w
               WHERE w.stopped_at IS NOT NULL
                  OR w.last_seen_at < now() - make_interval(secs => %(worker_stale)s)))
    ORDER BY t.last_heartbeat_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE {tasks} AS t
    SET status = CASE WHEN t.attempts < t.max_attempts THEN 'waiting' ELSE 'failed' END,
        finished_at = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE now() END,
        error = format('rescued: no heartbeat for %%s s (heartbeat_timeout %%s s) on attempt %%s of %%s',
                       round(extract(epoch FROM now() - t.last_heartbeat_at)::numeric, 1),
                       t.heartbeat_timeout, t.attempts, t.max_attempts),
        lease = NULL,
        worker_id = NULL,
        run_at = now(),
        updated_at = now()
    FROM stale
    WHERE t.id = stale.id
    RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.group_id,
              t.on_success, t.result, t.started_at, t.finished_at, t.error
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM rescued) AS n GROUP BY chunk
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'waiting') AS q
)
SELECT rescued.*, (SELECT count(*) FROM told) + (SELECT count(*) FROM woken) AS _told
FROM rescued;

-- name: cancel
-- Cancel a waiting or running task. A running task's worker learns it at its next
-- heartbeat (its lease is kept, so that worker is told "cancelled", not "lease lost").
WITH c AS (
    UPDATE {tasks}
    SET status = 'cancelled', finished_at = now(), updated_at = now()
    WHERE id = %(id)s AND status IN ('waiting', 'running')
    RETURNING *
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM c) AS n GROUP BY chunk
)
SELECT c.*, (SELECT count(*) FROM told) AS _told FROM c;

-- name: cancel_chain_rest
-- Cancel the links of a chain that have not started, after one of its links ended
-- without finishing.
WITH c AS (
    UPDATE {tasks}
    SET status = 'cancelled', finished_at = now(), updated_at = now(),
        error = %(error)s
    WHERE chain_id = %(chain_id)s AND status = 'waiting'
    RETURNING id, queue, type, status, attempts, chain_id, group_id, on_success, result,
              started_at, finished_at
),
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM c) AS n GROUP BY chunk
)
SELECT c.*, (SELECT count(*) FROM told) AS _told FROM c;

-- name: release_chain_next
-- Make the next link of a chain runnable now, handing it the previous link's result.
WITH n AS (
    UPDATE {tasks}
    SET run_at = now(), previous_result = %(result)s::jsonb, updated_at = now()
    WHERE depends_on = %(id)s AND status = 'waiting'
    RETURNING id, queue
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM n) AS q
)
SELECT n.id, (SELECT count(*) FROM woken) AS _woken FROM n;

-- name: retry
-- Put a failed or cancelled task back to waiting, with its attempts reset.
WITH r AS (
    UPDATE {tasks}
    SET status = 'waiting', attempts = 0, run_at = now(), finished_at = NULL,
        started_at = NULL, lease = NULL, worker_id = NULL, error = NULL,
        updated_at = now()
    WHERE id = %(id)s AND status IN ('failed', 'cancelled')
    RETURNING *
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM r) AS q
)
SELECT r.*, (SELECT count(*) FROM woken) AS _woken FROM r;

-- name: get
-- One task by id.
SELECT * FROM {tasks} WHERE id = %(id)s;

-- name: get_many
-- Tasks by id, in no particular order.
SELECT * FROM {tasks} WHERE id = ANY(%(ids)s::uuid[]);

-- name: delete
-- Delete one task, whatever its status.
DELETE FROM {tasks} WHERE id = %(id)s RETURNING id;

-- name: purge
-- Delete up to `limit` tasks in a final status that ended before `before`. Callers
-- loop until it returns fewer than `limit`, so no statement holds locks for long.
DELETE FROM {tasks}
WHERE id IN (
    SELECT id FROM {tasks}
    WHERE status IN ('finished', 'failed', 'cancelled') AND finished_at < %(before)s
      {queue_filter}
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: counts
-- One cheap query per Prometheus scrape (see metrics_db.py). Waiting and running
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

-- name: group_create
-- Record a group and the request to enqueue when all its members have ended.
INSERT INTO {groups} (id, on_complete) VALUES (%(id)s, %(on_complete)s::jsonb);

-- name: group_lock
-- Serialise completion checks of one group: the second finisher waits for the first
-- to commit, then checks again with a fresh snapshot (see workflow.py).
SELECT id FROM {groups} WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE;

-- name: group_complete
-- Mark a group complete once no member is waiting or running; returns its follow-up
-- request exactly once.
UPDATE {groups} AS g
SET completed_at = now()
WHERE g.id = %(id)s AND g.completed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM {tasks} AS t
                  WHERE t.group_id = g.id AND t.status IN ('waiting', 'running'))
RETURNING g.on_complete;

-- name: members
-- The members of a chain or group, in request order.
SELECT * FROM {tasks} WHERE {member_column} = %(id)s ORDER BY chain_index, seq;
