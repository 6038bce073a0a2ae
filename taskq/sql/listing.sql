-- Runtime SQL that lists tasks: `Tasks.list`, `taskq list`, the API's and the
-- dashboard's task pages.
--
-- A listing is newest first (created_at DESC, seq DESC) and reads about one page of
-- rows however large the table, for any mix of the filters: {list_tasks} (migration
-- 0007) writes the query for the filters given, one branch per status asked for, each
-- read in order from an index (tasks_list_status_idx, tasks_list_queue_idx or
-- tasks_list_type_idx) and cut at `limit`, merged by a Merge Append that pulls only the
-- rows it returns; it runs it with sequential scans, bitmap scans and sorts off, so
-- statistics older than a burst cannot make it read and sort every matching row.
-- tests/test_list_plans.py checks the rows read.

-- name: list_tasks
-- Tasks matching every filter given (a NULL filter matches all), newest first, from
-- after the keyset (`before`, `before_seq`) of the last task of the previous page, or
-- created before `before` when `before_seq` is NULL. The function returns them in
-- that order; the ORDER BY sorts at most `limit` rows.
SELECT * FROM {list_tasks}(%(statuses)s::text[], %(queue)s::text, %(type)s::text,
                           %(user_id)s::text, %(title)s::text, %(before)s::timestamptz,
                           %(before_seq)s::bigint, %(limit)s::bigint)
ORDER BY created_at DESC, seq DESC;
