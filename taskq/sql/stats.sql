-- Runtime SQL of the read-only summaries that the HTTP service and its dashboard show.
-- Each statement starts with "-- name: NAME" and the next line says what it is for;
-- taskq/sql/stats.py has exactly one typed function per statement.

-- name: queue_counts
-- Tasks per queue and status, counted exactly. It reads every row of the table, so
-- callers cache the answer for a few seconds rather than run it per request.
SELECT queue, status, count(*) AS n
FROM {tasks}
GROUP BY queue, status
ORDER BY queue, status;

-- name: throughput
-- Tasks that ended per queue and status over the last `minutes` minutes, by minute
-- counted back from now (`ago` 0 is the last 60 seconds), read through tasks_final_idx.
SELECT queue, status,
       floor(extract(epoch FROM now() - finished_at) / 60)::int AS ago,
       count(*) AS n
FROM {tasks}
WHERE status IN ('finished', 'failed', 'cancelled')
  AND finished_at > now() - make_interval(mins => %(minutes)s)
GROUP BY queue, status, ago
ORDER BY queue, status, ago;
