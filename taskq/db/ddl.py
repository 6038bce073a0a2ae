"""References: columns an application adds to taskq's tables for cascade deletes.

Call these from your own Alembic migration (``op`` is alembic's operations object)::

    from taskq import add_reference_column

    def upgrade():
        add_reference_column(op, "account_id", "bigint", "accounts(id)")

Then ``references={"account_id": 7}`` on enqueue or schedule sets the column, and
deleting account 7 deletes its tasks and schedules.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql

from taskq.core.config import resolve_schema
from taskq.core.names import SCHEDULE_BUILTIN_COLUMNS, TASK_BUILTIN_COLUMNS

_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$")
_TARGET_RE = re.compile(
    r"^(?:(?P<schema>[A-Za-z_][A-Za-z0-9_]*)\.)?(?P<table>[A-Za-z_][A-Za-z0-9_]*)"
    r"\s*\(\s*(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*\)$"
)


def reference_ddl(
    column: str,
    column_type: str,
    target: str,
    *,
    schema: str | None = None,
    tables: tuple[str, ...] = ("tasks", "schedules"),
    on_delete: str = "CASCADE",
) -> list[sql.Composed]:
    """The statements that add ``column`` to taskq's tables, referencing ``target``
    (``"table(column)"`` or ``"schema.table(column)"``), with an index each."""
    s = resolve_schema(schema)
    if column in TASK_BUILTIN_COLUMNS or column in SCHEDULE_BUILTIN_COLUMNS:
        raise ValueError(f"{column!r} is a built-in taskq column and cannot be a reference")
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", column):
        raise ValueError(f"invalid reference column name {column!r}")
    if not _TYPE_RE.match(column_type):
        raise ValueError(f"invalid column type {column_type!r}")
    m = _TARGET_RE.match(target.strip())
    if not m:
        raise ValueError(f"invalid reference target {target!r}: use 'table(column)'")
    action = on_delete.upper()
    if action not in ("CASCADE", "SET NULL", "RESTRICT", "NO ACTION"):
        raise ValueError(f"invalid ON DELETE action {on_delete!r}")
    ref_table = (
        sql.Identifier(m["schema"], m["table"]) if m["schema"] else sql.Identifier(m["table"])
    )
    out = []
    for table in tables:
        out.append(
            sql.SQL(
                "ALTER TABLE {t} ADD COLUMN {c} {type} REFERENCES {rt} ({rc}) ON DELETE {a}"
            ).format(
                t=sql.Identifier(s, table),
                c=sql.Identifier(column),
                type=sql.SQL(column_type),  # checked against _TYPE_RE above
                rt=ref_table,
                rc=sql.Identifier(m["column"]),
                a=sql.SQL(action),
            )
        )
        out.append(
            sql.SQL("CREATE INDEX {i} ON {t} ({c})").format(
                i=sql.Identifier(f"{table}_{column}_idx"[:63]),
                t=sql.Identifier(s, table),
                c=sql.Identifier(column),
            )
        )
    return out


def _tables(op: Any, schema: str) -> tuple[str, ...]:
    from sqlalchemy import inspect

    names = set(inspect(op.get_bind()).get_table_names(schema=schema))
    return tuple(t for t in ("tasks", "schedules") if t in names)


def add_reference_column(
    op: Any,
    column: str,
    column_type: str,
    target: str,
    *,
    schema: str | None = None,
    on_delete: str = "CASCADE",
) -> None:
    """In an Alembic migration: add a reference column to taskq's tables."""
    s = resolve_schema(schema)
    conn = op.get_bind().connection.driver_connection
    for stmt in reference_ddl(column, column_type, target, schema=s, tables=_tables(op, s),
                              on_delete=on_delete):  # fmt: skip
        op.execute(stmt.as_string(conn))


def drop_reference_column(op: Any, column: str, *, schema: str | None = None) -> None:
    """In an Alembic migration: drop a reference column from taskq's tables."""
    s = resolve_schema(schema)
    conn = op.get_bind().connection.driver_connection
    for table in _tables(op, s):
        op.execute(
            sql.SQL("ALTER TABLE {t} DROP COLUMN IF EXISTS {c}")
            .format(t=sql.Identifier(s, table), c=sql.Identifier(column))
            .as_string(conn)
        )
