-- Runtime SQL for <schema>.schedules. Each statement starts with "-- name: NAME", each
-- reusable piece with "-- fragment: NAME", and the next line says what it is for.
-- Placeholders in braces are identifiers or fragments composed with psycopg.sql (never
-- user text); %(x)s are bound parameters. taskq/sql/schedules.py has exactly one typed
-- function per statement.
-- A schedule's identity is (queue, type, reference_key): reference_key is the JSON of
-- its reference columns *after* PostgreSQL cast the given values to the columns' types,
-- so {"account_id": "7"} and {"account_id": 7} name the same schedule of a bigint column.

-- fragment: reference_key
-- The canonical reference_key of {record} (a row of the schedules type); only
-- the columns named in %(ref_names)s count, and NULL values are left out.
(SELECT coalesce(jsonb_object_agg(e.key, e.value), '{{}}'::jsonb)
 FROM jsonb_each(to_jsonb({record})) AS e
 WHERE e.key = ANY(%(ref_names)s::text[]) AND e.value <> 'null'::jsonb)

-- fragment: given_record
-- The references given in %(refs)s as a row of the schedules type (their
-- values cast to the columns' types; an impossible value fails here).
jsonb_populate_record(NULL::{schedules}, %(refs)s::jsonb)

-- name: upsert
-- Create the schedule, or update the one with the same identity. An unchanged cron
-- expression and time zone keep the pending next_run_at (an application that calls
-- schedule() at every start neither skips nor repeats a tick); a changed one takes the
-- new next_run_at. enabled is left alone on update, so an operator's pause holds.
-- Sleeping scheduler processes are woken (NOTIFY is delivered at commit).
WITH r AS (
    SELECT * FROM jsonb_populate_record(NULL::{schedules}, %(row)s::jsonb)
),
up AS (
    INSERT INTO {schedules} AS s (
        queue, type, spec, cron_schedule, timezone, reference_key, next_run_at, skip_missed
        {ref_columns}
    )
    SELECT r.queue, r.type, r.spec, r.cron_schedule, r.timezone, {reference_key},
           r.next_run_at, r.skip_missed {ref_select}
    FROM r
    ON CONFLICT (queue, type, reference_key) DO UPDATE
    SET spec = excluded.spec,
        skip_missed = excluded.skip_missed,
        next_run_at = CASE WHEN s.cron_schedule = excluded.cron_schedule
                            AND s.timezone = excluded.timezone
                           THEN s.next_run_at ELSE excluded.next_run_at END,
        cron_schedule = excluded.cron_schedule,
        timezone = excluded.timezone,
        updated_at = now()
    RETURNING s.*, (s.xmax = 0) AS _created
),
told AS (
    SELECT pg_notify(%(channel)s, queue) FROM up
)
SELECT up.*, (SELECT count(*) FROM told) AS _told FROM up;

-- name: find
-- The schedule with this identity, locked against concurrent changes and ticks.
SELECT * FROM {schedules}
WHERE queue = %(queue)s AND type = %(type)s AND reference_key = {reference_key}
FOR UPDATE;

-- name: exists
-- Whether a schedule with this identity exists.
SELECT EXISTS (
    SELECT 1 FROM {schedules}
    WHERE queue = %(queue)s AND type = %(type)s AND reference_key = {reference_key}
);

-- name: delete
-- Remove the schedule with this identity; the tasks it already enqueued stay.
WITH d AS (
    DELETE FROM {schedules}
    WHERE queue = %(queue)s AND type = %(type)s AND reference_key = {reference_key}
    RETURNING id, queue
),
told AS (
    SELECT pg_notify(%(channel)s, queue) FROM d
)
SELECT d.id, (SELECT count(*) FROM told) AS _told FROM d;

-- name: set_enabled
-- Pause or resume one schedule; resuming sets the next tick (no catch-up for the time
-- it was paused). Guarded by id, under the lock `find` took.
WITH u AS (
    UPDATE {schedules}
    SET enabled = %(enabled)s,
        next_run_at = coalesce(%(next_run_at)s, next_run_at),
        updated_at = now()
    WHERE id = %(id)s
    RETURNING *
),
told AS (
    SELECT pg_notify(%(channel)s, queue) FROM u
)
SELECT u.*, (SELECT count(*) FROM told) AS _told FROM u;

-- name: list_schedules
-- Every schedule, or those of one queue, in a stable order.
SELECT * FROM {schedules}
WHERE %(queue)s::text IS NULL OR queue = %(queue)s
ORDER BY queue, type, reference_key, created_at;

-- name: now
-- The clock a tick or a new schedule goes by: the given instant, else the database's.
SELECT coalesce(%(now)s::timestamptz, now());

-- name: claim_due
-- Claim up to `limit` enabled schedules whose tick has come (served by
-- schedules_due_idx). SKIP LOCKED lets every scheduler process pass the rows another one
-- holds; the claimer enqueues and advances them in the same transaction, so a tick is
-- fired once however many processes run. Under READ COMMITTED a row advanced by a
-- transaction that committed after this one began is re-checked against the WHERE
-- clause before it is locked, so an already-fired tick is not claimed again.
SELECT s.*, coalesce(%(now)s::timestamptz, now()) AS _now
FROM {schedules} AS s
WHERE s.enabled AND s.next_run_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY s.next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: advance
-- Move claimed schedules to their next tick, recording the tick fired (NULL: none
-- fired, e.g. skip_missed). Guarded by the tick that was claimed; schedules_advance_check
-- keeps ticks moving forward.
UPDATE {schedules} AS s
SET next_run_at = v.next_run_at,
    last_run_at = coalesce(v.fired, s.last_run_at),
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(ticks)s::timestamptz[], %(nexts)s::timestamptz[],
            %(fired)s::timestamptz[]) AS v(id, tick, next_run_at, fired)
WHERE s.id = v.id AND s.next_run_at = v.tick
RETURNING s.id;

-- name: next_due
-- Seconds until the earliest enabled schedule is due (negative: overdue; NULL: none).
SELECT extract(epoch FROM min(next_run_at) - now())::float8
FROM {schedules}
WHERE enabled;
