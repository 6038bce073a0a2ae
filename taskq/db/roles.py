"""Least-privilege roles: the grants each kind of taskq process needs, and nothing more.

The owner (the role that runs ``taskq migrate`` the first time) creates the schema and
owns its tables. Every other role needs ``USAGE`` on the schema and the table
privileges below; none needs to own anything, create anything, or be a superuser.

========= ========================================================================
kind      what it runs
========= ========================================================================
producer  ``Queuer`` (enqueue, chains, groups) and ``Tasks.get/list/wait/watch``
worker    ``taskq worker`` / ``Dequeuer``: claim, heartbeat, finish, fail (with
          follow-ups: chains, groups, on_success), release, the rescue
scheduler ``taskq scheduler``: the cron tick, the rescue, retention, ``Scheduler``
reader    read only: ``taskq list/show/workers``, metrics gauges, a dashboard
operator  everything a person at ``taskq`` does: cancel, retry, delete, purge,
          schedules (no DDL)
========= ========================================================================

Every kind may read ``alembic_version``, so ``taskq migrate`` run by any of them on an
up-to-date schema says so instead of failing. Grants are composed with
``psycopg.sql`` (identifiers are never formatted in by hand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from psycopg import sql

from taskq.core.config import resolve_schema
from taskq.db.database import Database

TABLES = ("tasks", "groups", "workers", "schedules", "alembic_version")

KINDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "producer": {
        "tasks": ("SELECT", "INSERT"),
        "groups": ("INSERT",),
    },
    "worker": {
        # INSERT: follow-ups (a chain's next link is updated, on_success and a group's
        # on_complete are inserted); groups: completion locks and marks the group.
        "tasks": ("SELECT", "INSERT", "UPDATE"),
        "groups": ("SELECT", "UPDATE"),
        "workers": ("SELECT", "INSERT", "UPDATE"),
    },
    "scheduler": {
        "tasks": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "groups": ("SELECT", "UPDATE"),
        "workers": ("SELECT", "DELETE"),
        "schedules": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    },
    "reader": {
        "tasks": ("SELECT",),
        "groups": ("SELECT",),
        "workers": ("SELECT",),
        "schedules": ("SELECT",),
    },
    "operator": {
        "tasks": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "groups": ("SELECT", "INSERT", "UPDATE"),
        "workers": ("SELECT", "DELETE"),
        "schedules": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    },
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown role kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def grants(kind: str, role: str, schema: str | None = None) -> list[sql.Composed]:
    """The statements that give ``role`` what a ``kind`` of taskq process needs."""
    s = resolve_schema(schema)
    who = sql.Identifier(role)
    out = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(s), who)]
    for table, privileges in KINDS[check_kind(kind)].items():
        out.append(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in privileges),
                sql.Identifier(s, table),
                who,
            )
        )
    out.append(
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(s, "alembic_version"), who)
    )
    if "UPDATE" in KINDS[kind].get("tasks", ()):  # the claims (migration 0005)
        for name, args in (
            ("claim_any", "bigint, uuid, boolean"),
            ("claim_many", "text[], bigint, uuid, boolean"),
        ):
            out.append(
                sql.SQL("GRANT EXECUTE ON FUNCTION {}({}) TO {}").format(
                    sql.Identifier(s, name), sql.SQL(args), who
                )
            )
    return out


def revokes(role: str, schema: str | None = None) -> list[sql.Composed]:
    """The statements that take back every taskq privilege from ``role``."""
    s = resolve_schema(schema)
    who = sql.Identifier(role)
    out = [sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(s, t), who) for t in TABLES]
    out.append(sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(sql.Identifier(s), who))
    return out


def needed(kind: str) -> dict[str, tuple[str, ...]]:
    """Table -> privileges a kind needs (for a check before a process starts)."""
    return {t: tuple(p) for t, p in KINDS[check_kind(kind)].items()}


def missing(db: Database, kind: str) -> list[str]:
    """What the connected role lacks to run as ``kind`` ("UPDATE on taskq.tasks", ...);
    empty when it has everything."""
    pairs = [(t, p) for t, privileges in needed(kind).items() for p in privileges]
    lacking = db.query(db.settings.stmts.catalog.missing_privileges(pairs))
    return [f"{p} on {db.schema}.{t}" for t, p, _ in lacking]


def apply(db: Database, statements: Sequence[sql.Composed]) -> None:
    """Run grant or revoke statements in one transaction (as a role allowed to grant)."""
    with db.connection() as conn:
        db.executor(conn).ddl(statements)
