-- Runtime SQL for <schema>.api_tokens: the bearer tokens of the HTTP service
-- (taskq serve). A token is "taskq_<prefix>_<secret>"; a row keeps its public prefix
-- (the lookup key) and the SHA-256 of the whole token, never the token itself.
-- Each statement starts with "-- name: NAME" and the next line says what it is for;
-- taskq/sql/tokens.py has exactly one typed function per statement.

-- name: create
-- Store a new token; no row comes back when an active token already has that name.
INSERT INTO {api_tokens} (prefix, name, hash, scope)
VALUES (%(prefix)s, %(name)s, %(hash)s, %(scope)s)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING prefix, name, scope, created_at, revoked_at;

-- name: find
-- The active token with this prefix: its hash and scope (compared by the caller).
SELECT prefix, name, hash, scope
FROM {api_tokens}
WHERE prefix = %(prefix)s AND revoked_at IS NULL;

-- name: list_tokens
-- Every token, active first, newest first; revoked ones only when asked.
SELECT prefix, name, scope, created_at, revoked_at
FROM {api_tokens}
WHERE %(revoked)s OR revoked_at IS NULL
ORDER BY revoked_at IS NOT NULL, created_at DESC;

-- name: revoke
-- Revoke the active token of this name, and tell the servers (their token caches
-- drop it when the notification arrives, at commit).
WITH r AS (
    UPDATE {api_tokens}
    SET revoked_at = now()
    WHERE name = %(name)s AND revoked_at IS NULL
    RETURNING prefix, name, scope, created_at, revoked_at
),
told AS (
    SELECT pg_notify(%(channel)s, prefix) FROM r
)
SELECT r.*, (SELECT count(*) FROM told) AS _told FROM r;

-- name: count_active
-- How many tokens are active (taskq serve refuses a public address with none).
SELECT count(*) FROM {api_tokens} WHERE revoked_at IS NULL;
