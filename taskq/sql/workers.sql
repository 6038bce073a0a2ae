-- Runtime SQL for <schema>.workers: one row per worker process start. Each statement
-- starts with "-- name: NAME" and the next line says what it is for; taskq/sql/workers.py
-- has exactly one typed function per statement.

-- name: register
-- A worker process announces itself (a fresh id per start).
INSERT INTO {workers} (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s);

-- name: seen
-- The worker is alive and runs `running` tasks; also heartbeats those tasks.
WITH w AS (
    UPDATE {workers} SET last_seen_at = now(), running = %(running)s
    WHERE id = %(id)s
    RETURNING id
)
SELECT count(*) FROM w;

-- name: stopped
-- The worker stopped cleanly.
UPDATE {workers} SET stopped_at = now(), running = 0, last_seen_at = now()
WHERE id = %(id)s;

-- name: list_workers
-- Worker processes, newest first; `alive` says whether each was seen recently.
SELECT id, host, pid, queues, concurrency, running, started_at, last_seen_at, stopped_at,
       (stopped_at IS NULL AND last_seen_at >= now() - make_interval(secs => %(stale)s))
           AS alive
FROM {workers}
ORDER BY started_at DESC
LIMIT %(limit)s;

-- name: forget
-- Remove up to `limit` rows of workers that stopped or vanished more than `older_than`
-- seconds before `now` (NULL: the database clock).
DELETE FROM {workers}
WHERE id IN (
    SELECT id FROM {workers}
    WHERE coalesce(stopped_at, last_seen_at)
          < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(older_than)s)
    LIMIT %(limit)s
)
RETURNING id;
