-- Runtime SQL for <schema>.workers: one row per worker process start.

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

-- name: list
-- Worker processes, newest first; `alive` says whether each was seen recently.
SELECT id, host, pid, queues, concurrency, running, started_at, last_seen_at, stopped_at,
       (stopped_at IS NULL AND last_seen_at >= now() - make_interval(secs => %(stale)s))
           AS alive
FROM {workers}
ORDER BY started_at DESC
LIMIT %(limit)s;

-- name: forget
-- Remove rows of workers that stopped or vanished before `before`.
DELETE FROM {workers}
WHERE id IN (
    SELECT id FROM {workers}
    WHERE coalesce(stopped_at, last_seen_at) < %(before)s
    LIMIT %(limit)s
);
