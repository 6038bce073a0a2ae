"""Database errors as taskq errors: the one place that reads constraint names.

The executors (``taskq.db``) pass every error a statement raises through
:func:`translate`; what has a meaning for taskq comes back as a taskq error (raised in
the plan at the statement), everything else unchanged.
"""

from __future__ import annotations

import re

import psycopg
import psycopg_pool
from psycopg import errors as pgerr

from taskq.core.errors import InvalidReference, InvalidTask, TaskAlreadyExists
from taskq.sql.query import Query

UNIQUE_KEY_INDEX = "tasks_unique_key_idx"


def _key_from_detail(detail: str | None) -> str:
    m = re.search(r"\)=\((.*)\) already exists", detail or "")
    return m.group(1) if m else "?"


def translate(error: BaseException, query: Query[object]) -> BaseException:
    """The taskq error ``error`` means for ``query``, else ``error`` itself."""
    if not isinstance(error, psycopg.Error):
        return error
    about = query.about
    diag = error.diag
    if isinstance(error, pgerr.UniqueViolation):
        if diag.constraint_name == UNIQUE_KEY_INDEX:
            return TaskAlreadyExists(about.get("queue", ""), _key_from_detail(diag.message_detail))
        return error
    if isinstance(error, pgerr.CheckViolation):
        return InvalidTask(
            f"refused by the database (constraint {diag.constraint_name}): {diag.message_primary}"
        )
    if isinstance(error, pgerr.ForeignKeyViolation):
        return InvalidReference(
            diag.column_name or str(diag.constraint_name),
            str(diag.table_name),
            diag.message_detail or diag.message_primary or "foreign key violation",
        )
    if isinstance(error, pgerr.UntranslatableCharacter | pgerr.CharacterNotInRepertoire):
        return InvalidTask(f"a value cannot be stored by PostgreSQL: {diag.message_primary}")
    refs = about.get("references")
    if refs is not None:
        table = about.get("table", "tasks")
        if isinstance(error, pgerr.UndefinedColumn):
            m = re.search(r'column "(.*)" of relation', diag.message_primary or "")
            return InvalidReference(
                m.group(1) if m else refs, table, "no such column (it was dropped)"
            )
        if isinstance(error, pgerr.DataError):
            return InvalidReference(
                refs or "?",
                table,
                f"the values {about.get('values', '')} do not fit the columns: "
                f"{diag.message_primary}",
            )
    return error


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached (rather than that it
    refused a statement): worth retrying the same work later."""
    return isinstance(
        error, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout
    )


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is the database refusing a statement (a missing grant, a
    constraint, a trigger): the same statement would fail again."""
    return isinstance(error, psycopg.Error) and not is_outage(error)
