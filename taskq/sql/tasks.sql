-- Runtime SQL for <schema>.tasks and <schema>.groups.
--
-- Each statement starts with "-- name: NAME", each reusable piece with
-- "-- fragment: NAME", and the next comment line says what it is for. Braces hold
-- identifiers ({tasks}, {groups}, {workers}) and fragments, composed with psycopg.sql
-- when the schema's statements are built (never user text); %(x)s are bound
-- parameters. taskq/sql/tasks.py has exactly one typed function per statement.
--
-- Every state change is one guarded statement: zero rows means the guard failed, and
-- the caller asks `diagnose` why. A statement that changes tasks names the changed
-- rows `changed`, so the two fragments below can tell watchers and wake workers.
--
-- Writes to tasks a worker holds find them by primary key ("t.id = ANY(ids)", beside
-- the join to the per-row values) and test "status >= 'running' AND status <=
-- 'running'" rather than "status = 'running'": the equality would let the planner walk
-- the partial index tasks_running_idx, which statistics taken when nothing ran call
-- empty, reading every running row per write (tests/test_core_plans.py checks this
-- with a generic plan).

-- fragment: tell_watchers
-- Tell watchers (Tasks.watch/wait) which tasks changed: comma-separated ids on the
-- events channel, 200 ids (7,400 bytes) per notification. A NOTIFY payload may not
-- exceed 8,000 bytes, and one that did would fail the whole statement.
told AS (
    SELECT pg_notify(%(events)s, string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () / 200 AS chunk FROM changed) AS n
    GROUP BY chunk
)

-- fragment: wake_workers
-- Wake the dequeuers of each queue that got runnable work: one NOTIFY per queue per
-- statement (PostgreSQL folds equal ones in a transaction), the payload the queue name.
woken AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM changed
          WHERE status = 'waiting' AND run_at <= now()) AS q
)

-- fragment: history
-- The task's error history with `{entry}` (a JSON object) added as the newest, stamped
-- with the attempt, the time and the worker; the oldest of 20 is dropped.
(CASE WHEN jsonb_array_length(coalesce(t.errors, '[]')) >= 20
      THEN coalesce(t.errors, '[]') - 0 ELSE coalesce(t.errors, '[]') END)
|| jsonb_build_array({entry} || jsonb_build_object(
       'attempt', t.attempts, 'at', now(), 'worker_id', t.worker_id))

-- name: enqueue
-- Insert a batch (one JSON array of rows, in order) and wake the dequeuers of each
-- queue that got runnable work. {ref_columns}/{ref_select} are the reference columns
-- the batch sets (composed identifiers), empty when none.
WITH changed AS (
    INSERT INTO {tasks} (
        id, queue, type, spec, priority, run_at, max_attempts, heartbeat_timeout, timeout,
        retry_delay, unique_key, title, user_id, on_success, chain_id, chain_index,
        depends_on, group_id, schedule_id, previous_result {ref_columns}
    )
    SELECT coalesce(r.id, gen_random_uuid()), r.queue, r.type, r.spec, r.priority,
           coalesce(r.run_at, now()), r.max_attempts, r.heartbeat_timeout, r.timeout,
           r.retry_delay, r.unique_key, r.title, r.user_id, r.on_success, r.chain_id,
           r.chain_index, r.depends_on, r.group_id, r.schedule_id, r.previous_result
           {ref_select}
    FROM jsonb_populate_recordset(NULL::{tasks}, %(rows)s::jsonb) WITH ORDINALITY AS r
    ORDER BY r.ordinality
    RETURNING *
),
{wake_workers}
SELECT changed.*, (SELECT count(*) FROM woken) AS _woken FROM changed ORDER BY changed.seq;

-- name: dequeue_any
-- Claim up to `limit` runnable tasks of any queue: highest priority, then earliest
-- run_at, then enqueue order, read in that order from tasks_dequeue_any_idx. The claim
-- runs inside {claim_any} (migration 0005), whose planner settings leave that ordered
-- index scan as the only plan, whatever the statistics say (stale ones once made it
-- sort every waiting row). SKIP LOCKED lets concurrent claimers pass each other; each
-- claim gets a fresh lease that fences the claimer's later writes.
SELECT * FROM {claim_any}(%(limit)s::bigint, %(worker_id)s::uuid, true);

-- fragment: claim_one
-- The CTEs `next` and `claimed` of a claim of up to `limit` tasks of one queue (see
-- dequeue_one). With `charge` false the claim only reserves the tasks for a worker's
-- slots: no attempt is charged and started_at stays NULL until the handler really
-- starts (see exchange_one).
next AS (
    SELECT id
    FROM {tasks}
    WHERE status = 'waiting' AND run_at <= now()
      AND queue >= %(queue)s AND queue <= %(queue)s
    ORDER BY queue, priority DESC, run_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE {tasks} AS t
    SET status = 'running',
        attempts = t.attempts + CASE WHEN %(charge)s::boolean THEN 1 ELSE 0 END,
        started_at = CASE WHEN %(charge)s::boolean THEN now() END,
        last_heartbeat_at = now(), updated_at = now(), finished_at = NULL,
        lease = gen_random_uuid(), worker_id = %(worker_id)s
    WHERE t.id = ANY(ARRAY(SELECT id FROM next))
    RETURNING t.*
)

-- name: dequeue_one
-- Claim up to `limit` runnable tasks of one queue, in claiming order. The equality is
-- written as the range "queue >= q AND queue <= q" with "queue" leading the ORDER BY,
-- so that only tasks_dequeue_idx yields rows in that order and the scan starts and
-- stops at this queue's entries: with "queue = q" the planner treats ORDER BY queue as
-- redundant and may walk tasks_dequeue_any_idx through every other queue's backlog
-- (tests/test_core_plans.py checks the plan, with stale statistics too). The UPDATE
-- finds the claimed rows by primary key only (= ANY(ARRAY(...))): a join to `next`
-- could hash a scan of the whole table in a generic plan.
-- UPDATE ... RETURNING has no order of its own, so the claimed rows are sorted again.
WITH {claim_one}
SELECT * FROM claimed ORDER BY priority DESC, run_at, seq;

-- name: dequeue_many
-- Claim up to `limit` runnable tasks of several queues, in claiming order: the first
-- `limit` of each queue, each read like dequeue_one's from its own range of
-- tasks_dequeue_idx, merged, the first `limit` of them taken, all inside {claim_many}
-- (migration 0005), whose planner settings keep every inner scan an ordered index scan
-- of its own queue. No plan reads another queue's backlog ("queue = ANY(...)" walked
-- tasks_dequeue_any_idx through it) or sorts a whole queue.
SELECT * FROM {claim_many}(%(queues)s::text[], %(limit)s::bigint, %(worker_id)s::uuid, true);

-- name: heartbeat
-- Record progress and the heartbeat time of running tasks, each only under its own
-- claim when a lease is given. Watchers are told.
WITH changed AS (
    UPDATE {tasks} AS t
    SET progress = coalesce(v.progress, t.progress),
        last_heartbeat_at = now(),
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[])
         AS v(id, lease, progress)
    WHERE t.id = ANY(%(ids)s::uuid[]) AND t.id = v.id
      AND t.status >= 'running' AND t.status <= 'running'
      AND (v.lease IS NULL OR t.lease = v.lease)
    RETURNING t.id
),
{tell_watchers}
SELECT changed.id, (SELECT count(*) FROM told) AS _told FROM changed;

-- fragment: finish_rows
-- Finish running tasks under their claims (a data-modifying CTE body). A task a worker
-- reserved and ran before its start was recorded is charged its attempt here, started
-- `ago` seconds before now.
UPDATE {tasks} AS t
SET status = 'finished',
    attempts = t.attempts + (t.started_at IS NULL)::int,
    started_at = coalesce(t.started_at, now() - make_interval(secs => coalesce(v.ago, 0))),
    progress = coalesce(v.progress, t.progress),
    result = v.result,
    finished_at = now(),
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[],
            %(results)s::jsonb[], %(agos)s::float8[]) AS v(id, lease, progress, result, ago)
WHERE t.id = ANY(%(ids)s::uuid[]) AND t.id = v.id
  AND t.status >= 'running' AND t.status <= 'running'
  AND (v.lease IS NULL OR t.lease = v.lease)
RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.chain_index, t.group_id,
          t.on_success, t.result, t.started_at, t.finished_at, t.run_at

-- name: finish
-- Finish running tasks under their claims. Follow-ups (chains, groups, on_success)
-- are run by the caller in the same transaction for the rows this returns.
WITH changed AS ({finish_rows}),
{tell_watchers}
SELECT changed.*, (SELECT count(*) FROM told) AS _told FROM changed;

-- fragment: start_rows
-- Record that reserved tasks started (`ago` seconds before now): their attempt is
-- charged from here on, so a crash after this counts (a data-modifying CTE body).
UPDATE {tasks} AS t
SET attempts = t.attempts + 1,
    started_at = now() - make_interval(secs => v.ago),
    updated_at = now()
FROM unnest(%(start_ids)s::uuid[], %(start_leases)s::uuid[], %(start_agos)s::float8[])
     AS v(id, lease, ago)
WHERE t.id = ANY(%(start_ids)s::uuid[]) AND t.id = v.id
  AND t.status >= 'running' AND t.status <= 'running'
  AND t.lease = v.lease AND t.started_at IS NULL
RETURNING t.id

-- name: exchange_one
-- A worker's round trip, in one statement: finish the tasks whose handlers returned
-- (plain tasks: no follow-ups to run), record the starts of reserved tasks that run
-- on, and reserve up to `limit` more tasks of one queue for its slots (no attempt
-- charged until each starts; with `charge`, claimed and charged at once, for a worker
-- that claims only what its free slots start now). The first row carries the finished and started ids
-- (`_done`, `_started`); rows with a NULL id carry no reserved task.
WITH changed AS ({finish_rows}),
{tell_watchers},
began AS ({start_rows}),
{claim_one},
fin AS (SELECT (SELECT array_agg(id::text) FROM changed) AS done,
               (SELECT array_agg(id::text) FROM began) AS started)
SELECT fin.done AS _done, fin.started AS _started, (SELECT count(*) FROM told) AS _told, c.*
FROM fin LEFT JOIN claimed AS c ON true
ORDER BY c.priority DESC, c.run_at, c.seq;

-- name: exchange_many
-- exchange_one for several queues (the reservation is dequeue_many's claim).
WITH changed AS ({finish_rows}),
{tell_watchers},
began AS ({start_rows}),
claimed AS (
    SELECT * FROM {claim_many}(%(queues)s::text[], %(limit)s::bigint, %(worker_id)s::uuid,
                               %(charge)s::boolean)
),
fin AS (SELECT (SELECT array_agg(id::text) FROM changed) AS done,
               (SELECT array_agg(id::text) FROM began) AS started)
SELECT fin.done AS _done, fin.started AS _started, (SELECT count(*) FROM told) AS _told, c.*
FROM fin LEFT JOIN claimed AS c ON true
ORDER BY c.priority DESC, c.run_at, c.seq;

-- name: exchange_any
-- exchange_one for any queue (the reservation is dequeue_any's claim).
WITH changed AS ({finish_rows}),
{tell_watchers},
began AS ({start_rows}),
claimed AS (
    SELECT * FROM {claim_any}(%(limit)s::bigint, %(worker_id)s::uuid, %(charge)s::boolean)
),
fin AS (SELECT (SELECT array_agg(id::text) FROM changed) AS done,
               (SELECT array_agg(id::text) FROM began) AS started)
SELECT fin.done AS _done, fin.started AS _started, (SELECT count(*) FROM told) AS _told, c.*
FROM fin LEFT JOIN claimed AS c ON true
ORDER BY c.priority DESC, c.run_at, c.seq;

-- name: fail
-- Fail running tasks under their claims: back to waiting after a jittered exponential
-- backoff while attempts remain (and the failure is not final), else failed for good.
-- The backoff is retry_delay * 2^(attempts-1), capped at an hour, times 0.75..1.25.
-- Each failure's `entry` (kind, type, message, traceback) joins the error history. A
-- reserved task whose start was not recorded yet is charged its attempt here.
WITH changed AS (
    UPDATE {tasks} AS t
    SET status = CASE WHEN t.attempts + (t.started_at IS NULL)::int < t.max_attempts AND NOT v.final
                      THEN 'waiting' ELSE 'failed' END,
        run_at = CASE WHEN t.attempts + (t.started_at IS NULL)::int < t.max_attempts AND NOT v.final
                      THEN now() + make_interval(secs => least(3600.0,
                               t.retry_delay * power(2.0, greatest(t.attempts + (t.started_at IS NULL)::int - 1, 0)))
                               * (0.75 + random() * 0.5))
                      ELSE t.run_at END,
        finished_at = CASE WHEN t.attempts + (t.started_at IS NULL)::int < t.max_attempts AND NOT v.final
                           THEN NULL ELSE now() END,
        lease = CASE WHEN t.attempts + (t.started_at IS NULL)::int < t.max_attempts AND NOT v.final
                     THEN NULL ELSE t.lease END,
        worker_id = CASE WHEN t.attempts + (t.started_at IS NULL)::int < t.max_attempts AND NOT v.final
                         THEN NULL ELSE t.worker_id END,
        attempts = t.attempts + (t.started_at IS NULL)::int,
        started_at = coalesce(t.started_at, now() - make_interval(secs => coalesce(v.ago, 0))),
        progress = coalesce(v.progress, t.progress),
        error = v.error,
        errors = {history_of_v},
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(progress)s::jsonb[],
                %(errors)s::text[], %(finals)s::boolean[], %(entries)s::jsonb[],
                %(agos)s::float8[])
         AS v(id, lease, progress, error, final, entry, ago)
    WHERE t.id = ANY(%(ids)s::uuid[]) AND t.id = v.id
      AND t.status >= 'running' AND t.status <= 'running'
      AND (v.lease IS NULL OR t.lease = v.lease)
    RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.chain_index, t.group_id,
              t.on_success, t.result, t.started_at, t.finished_at, t.run_at,
              now() AS ended_at
),
{tell_watchers},
{wake_workers}
SELECT changed.*, (SELECT count(*) FROM told) + (SELECT count(*) FROM woken) AS _told
FROM changed;

-- name: release
-- Give running tasks back to waiting without charging an attempt (clean shutdown, or a
-- reserved task no slot started in time): a started one gets its attempt back, a
-- reserved one was never charged.
WITH changed AS (
    UPDATE {tasks} AS t
    SET status = 'waiting',
        attempts = greatest(t.attempts - (t.started_at IS NOT NULL)::int, 0),
        lease = NULL,
        worker_id = NULL,
        started_at = NULL,
        run_at = now(),
        updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[]) AS v(id, lease)
    WHERE t.id = ANY(%(ids)s::uuid[]) AND t.id = v.id
      AND t.status >= 'running' AND t.status <= 'running'
      AND t.lease = v.lease
    RETURNING t.id, t.queue, t.status, t.run_at
),
{wake_workers}
SELECT changed.id, (SELECT count(*) FROM woken) AS _woken FROM changed;

-- name: make_due
-- Make waiting tasks runnable now: skip a retry's backoff or a future run_at (for
-- tests that drain a queue in this process, see taskq.testing.drain).
WITH changed AS (
    UPDATE {tasks} AS t
    SET run_at = now(), updated_at = now()
    WHERE t.id = ANY(%(ids)s::uuid[]) AND t.status = 'waiting' AND t.run_at > now()
    RETURNING t.id, t.queue, t.status, t.run_at
),
{wake_workers}
SELECT changed.id, (SELECT count(*) FROM woken) AS _woken FROM changed;

-- name: diagnose
-- Why a guarded write matched nothing: the row's status and lease, if it exists.
SELECT id, status, lease FROM {tasks} WHERE id = ANY(%(ids)s::uuid[]);

-- name: rescue
-- Return stale running tasks to waiting (or fail them when no attempts remain): their
-- heartbeat is older than their heartbeat_timeout, or the worker process that holds
-- them stopped or has not been seen for `worker_stale` seconds, as of `now` (NULL: the
-- database clock, as in production; tests pass a later time instead of sleeping).
-- Bounded, and SKIP LOCKED so any number of processes may run it at once.
-- `ids`, when not NULL, limits it to those tasks (one at a time, to isolate a task
-- whose rescue the database refuses).
WITH stale AS (
    SELECT t.id, w.id AS holder, w.stopped_at AS holder_stopped,
           w.last_seen_at AS holder_seen,
           w.stopped_at IS NOT NULL
               OR w.last_seen_at < coalesce(%(now)s::timestamptz, now())
                                   - make_interval(secs => %(worker_stale)s) AS holder_gone
    FROM {tasks} AS t
    LEFT JOIN {workers} AS w ON w.id = t.worker_id
    WHERE t.status = 'running'
      AND (%(ids)s::uuid[] IS NULL OR t.id = ANY(%(ids)s::uuid[]))
      AND (t.last_heartbeat_at < coalesce(%(now)s::timestamptz, now())
                                 - make_interval(secs => t.heartbeat_timeout)
           OR w.stopped_at IS NOT NULL
           OR w.last_seen_at < coalesce(%(now)s::timestamptz, now())
                               - make_interval(secs => %(worker_stale)s))
    ORDER BY t.last_heartbeat_at
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
),
why AS (
    -- A task reserved by its worker but never recorded as started goes back without an
    -- attempt charged, at most twice ("unstarted" entries in its history); a third
    -- time it is charged like a started one, so a handler that kills its worker before
    -- its start could be recorded still ends after max_attempts.
    SELECT stale.id, c.charge, t.attempts + (c.charge AND t.started_at IS NULL)::int AS eff,
           CASE
        WHEN NOT c.charge THEN format(
            'rescued before it started: worker %%s %%s; no attempt charged',
            stale.holder, CASE WHEN stale.holder_stopped IS NOT NULL THEN 'stopped'
                               ELSE 'stopped heartbeating' END)
        WHEN stale.holder_stopped IS NOT NULL THEN format(
            'rescued: worker %%s stopped without ending attempt %%s of %%s',
            stale.holder, t.attempts, t.max_attempts)
        WHEN stale.holder_gone THEN format(
            'rescued: worker %%s not seen for %%s s (attempt %%s of %%s)', stale.holder,
            round(extract(epoch FROM now() - stale.holder_seen)::numeric, 1),
            t.attempts, t.max_attempts)
        ELSE format(
            'rescued: no heartbeat for %%s s (heartbeat_timeout %%s s) on attempt %%s of %%s',
            round(extract(epoch FROM now() - t.last_heartbeat_at)::numeric, 1),
            t.heartbeat_timeout, t.attempts, t.max_attempts)
        END AS message
    FROM stale JOIN {tasks} AS t ON t.id = stale.id
    CROSS JOIN LATERAL (
        SELECT t.started_at IS NOT NULL OR (
            SELECT count(*) FROM jsonb_array_elements(coalesce(t.errors, '[]')) AS e
            WHERE e->>'kind' = 'unstarted') >= 2 AS charge
    ) AS c
),
changed AS (
    UPDATE {tasks} AS t
    SET status = CASE WHEN NOT why.charge OR why.eff < t.max_attempts
                      THEN 'waiting' ELSE 'failed' END,
        finished_at = CASE WHEN NOT why.charge OR why.eff < t.max_attempts
                           THEN NULL ELSE now() END,
        attempts = why.eff,
        started_at = CASE WHEN why.charge THEN coalesce(t.started_at, now()) END,
        error = why.message,
        errors = {history_of_why},
        lease = NULL,
        worker_id = NULL,
        run_at = now(),
        updated_at = now()
    FROM why
    WHERE t.id = why.id
    RETURNING t.id, t.queue, t.type, t.status, t.attempts, t.chain_id, t.chain_index, t.group_id,
              t.on_success, t.result, t.started_at, t.finished_at, t.error, t.run_at
),
{tell_watchers},
{wake_workers}
SELECT changed.*, (SELECT count(*) FROM told) + (SELECT count(*) FROM woken) AS _told
FROM changed;

-- name: stale
-- The ids of up to `limit` running tasks the rescue would take back now (see rescue).
SELECT t.id
FROM {tasks} AS t
WHERE t.status = 'running'
  AND (t.last_heartbeat_at < coalesce(%(now)s::timestamptz, now())
                             - make_interval(secs => t.heartbeat_timeout)
       OR t.worker_id IN (
           SELECT w.id FROM {workers} AS w
           WHERE w.stopped_at IS NOT NULL
              OR w.last_seen_at < coalesce(%(now)s::timestamptz, now())
                                  - make_interval(secs => %(worker_stale)s)))
ORDER BY t.last_heartbeat_at
LIMIT %(limit)s;

-- name: cancel
-- Cancel a waiting or running task. A running task's worker learns it at its next
-- heartbeat (its lease is kept, so that worker is told "cancelled", not "lease lost").
WITH changed AS (
    UPDATE {tasks}
    SET status = 'cancelled', finished_at = now(), updated_at = now()
    WHERE id = %(id)s AND status IN ('waiting', 'running')
    RETURNING *
),
{tell_watchers}
SELECT changed.*, (SELECT count(*) FROM told) AS _told FROM changed;

-- name: cancel_chain_rest
-- Cancel the links of a chain that come after `after_index` and have not started,
-- after the link at that index ended without finishing.
WITH changed AS (
    UPDATE {tasks}
    SET status = 'cancelled', finished_at = now(), updated_at = now(),
        error = %(error)s
    WHERE chain_id = %(chain_id)s AND chain_index > %(after_index)s AND status = 'waiting'
    RETURNING id, queue, type, status, attempts, chain_id, chain_index, group_id,
              on_success, result, started_at, finished_at
),
{tell_watchers}
SELECT changed.*, (SELECT count(*) FROM told) AS _told FROM changed;

-- name: release_chain_next
-- Make the next link of a chain runnable now, handing it the previous link's result.
WITH changed AS (
    UPDATE {tasks}
    SET run_at = now(), previous_result = %(result)s::jsonb, updated_at = now()
    WHERE depends_on = %(id)s AND status = 'waiting'
    RETURNING id, queue, status, run_at
),
{wake_workers}
SELECT changed.id, (SELECT count(*) FROM woken) AS _woken FROM changed;

-- name: retry
-- Put a failed or cancelled task back to waiting, with its attempts reset.
WITH changed AS (
    UPDATE {tasks}
    SET status = 'waiting', attempts = 0, run_at = now(), finished_at = NULL,
        started_at = NULL, lease = NULL, worker_id = NULL, error = NULL,
        updated_at = now()
    WHERE id = %(id)s AND status IN ('failed', 'cancelled')
    RETURNING *
),
{tell_watchers},
{wake_workers}
SELECT changed.*, (SELECT count(*) FROM told) + (SELECT count(*) FROM woken) AS _woken
FROM changed;

-- name: get
-- One task by id.
SELECT * FROM {tasks} WHERE id = %(id)s;

-- name: delete
-- Delete one task, whatever its status.
DELETE FROM {tasks} WHERE id = %(id)s RETURNING id;

-- name: purge
-- Delete up to `limit` tasks (of one queue, or of all when `queue` is NULL) in a final
-- status that ended more than `older_than` seconds before `now` (NULL: the database
-- clock). Callers
-- loop until it deletes fewer than `limit`, so no statement holds locks for long.
DELETE FROM {tasks}
WHERE id IN (
    SELECT id FROM {tasks}
    WHERE status IN ('finished', 'failed', 'cancelled')
      AND finished_at < coalesce(%(now)s::timestamptz, now())
                        - make_interval(secs => %(older_than)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: count_tasks
-- How many tasks match every filter given (a NULL filter matches all): what a bulk
-- cancel or retry by filter would look at (`taskq cancel --queue Q --dry-run`).
SELECT count(*) FROM {tasks}
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(type)s::text IS NULL OR type = %(type)s);

-- name: count_purgeable
-- How many tasks `purge` would delete now: its filter, without its limit.
SELECT count(*) FROM {tasks}
WHERE status IN ('finished', 'failed', 'cancelled')
  AND finished_at < coalesce(%(now)s::timestamptz, now())
                    - make_interval(secs => %(older_than)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s);

-- name: ids_with_prefix
-- Up to `limit` task ids that start with a hex prefix, as the range [low, high] of
-- the uuid order (the prefix padded with 0s, and with fs): uuids compare as their 16
-- bytes, so the range is exactly the ids with that prefix, and it is read from the
-- primary key's index. A LIKE on id::text would read every row.
SELECT id FROM {tasks}
WHERE id BETWEEN %(low)s::uuid AND %(high)s::uuid
ORDER BY id
LIMIT %(limit)s;

-- name: chain_members
-- The links of a chain, in request order.
SELECT * FROM {tasks} WHERE chain_id = %(id)s ORDER BY chain_index, seq;

-- name: group_members
-- The members of a group, in request order.
SELECT * FROM {tasks} WHERE group_id = %(id)s ORDER BY chain_index, seq;

-- name: group_create
-- Record a group and the request to enqueue when all its members have ended.
INSERT INTO {groups} (id, on_complete) VALUES (%(id)s, %(on_complete)s::jsonb);

-- name: group_lock
-- Serialise completion checks of the groups: the second finisher waits for the first
-- to commit, then checks again with a fresh snapshot (see taskq/actions/followups.py).
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
