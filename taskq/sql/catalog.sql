-- Runtime SQL that reads PostgreSQL itself rather than taskq's tables, and the
-- per-transaction settings taskq uses. Each statement starts with "-- name: NAME" and
-- the next line says what it is for. Nothing here changes a session: settings are
-- local to the transaction (set_config(..., true)), so they are safe behind a pooler in
-- transaction mode.

-- name: table_columns
-- The column names of one of taskq's tables (to check reference names before any SQL
-- uses them).
SELECT a.attname
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0
  AND NOT a.attisdropped;

-- name: statement_timeout
-- Bound every later statement of the current transaction to `ms` milliseconds.
SELECT set_config('statement_timeout', %(ms)s, true);

-- name: ping
-- The database answers (health checks).
SELECT 1;

-- name: plan_once
-- Plan each prepared statement once per session (a worker's pool: see
-- taskq.db.database.plan_once). Never run behind a transaction-mode pooler.
SET plan_cache_mode = force_generic_plan;

-- name: listen
-- Receive the notifications of one channel on this connection. LISTEN is session
-- state: it runs only on a direct connection, never through a transaction pooler.
LISTEN {channel};

-- name: missing_privileges
-- Which of the given privileges (one table and one privilege per pair) the current
-- role lacks on taskq's tables; `absent` says the table does not exist at all.
SELECT p.table_name, p.privilege,
       to_regclass(format('%%I.%%I', %(schema)s::text, p.table_name)) IS NULL AS absent
FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS p(table_name, privilege)
WHERE to_regclass(format('%%I.%%I', %(schema)s::text, p.table_name)) IS NULL
   OR NOT has_table_privilege(format('%%I.%%I', %(schema)s::text, p.table_name), p.privilege);
