"""Running taskq's Alembic migrations from Python and from ``taskq migrate``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from taskq.core.config import database_url, resolve_schema


def sqlalchemy_url(url: str | None) -> str:
    """A SQLAlchemy URL (psycopg 3 driver) for ``url`` or the configured/embedded one."""
    resolved = database_url(url)
    if resolved is None:
        from taskq.db.embedded import embedded_url

        resolved = embedded_url()
    scheme, _, rest = resolved.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return resolved


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed package, or the repository's folder."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_migrations"
    return packaged if packaged.is_dir() else package.parent / "migrations"


def alembic_config(url: str | None = None, schema: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["schema"] = resolve_schema(schema)
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


NO_PREPARE = {"prepare_threshold": None}
"""Migrations prepare nothing on the server, so they are safe through a pooler too."""

# Alembic keeps the running migration context in a module global: threads of one
# process take turns here (processes take turns on an advisory lock in env.py).
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Migrated:
    """What ``migrate`` did: the revision before and after (equal: nothing to do)."""

    schema: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def head() -> str | None:
    """The newest revision taskq ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()


def migrate(url: str | None = None, schema: str | None = None, revision: str = "head") -> Migrated:
    """Upgrade the schema to ``revision`` (idempotent; concurrent callers take turns).

    A schema already there is left alone without taking a lock or running any DDL, so
    any role that may read ``alembic_version`` can run this on an up-to-date schema.
    """
    name = resolve_schema(schema)
    target = head() if revision == "head" else revision
    with _lock, driver_errors():
        before = current(url, name)
        if before == target:
            return Migrated(name, before, before)
        command.upgrade(alembic_config(url, name), revision)
        return Migrated(name, before, current(url, name))


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """psycopg's own error instead of SQLAlchemy's wrapper (which quotes the statement
    and its parameters): callers translate those in one line."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DBAPIError as e:
        if isinstance(e.orig, BaseException):
            raise e.orig.with_traceback(None) from None
        raise


def downgrade(url: str | None = None, schema: str | None = None, revision: str = "base") -> None:
    with _lock, driver_errors():
        command.downgrade(alembic_config(url, schema), revision)


def drop_schema(url: str | None, schema: str) -> None:
    """Drop the schema and everything in it (tasks, schedules, Alembic's version):
    for test fixtures that made a schema of their own (so ``schema`` is never
    implied by the environment). Nothing else is touched."""
    from psycopg import sql

    from taskq.db.connection import connect

    name = resolve_schema(schema)
    target = database_url(url)
    if target is None:
        from taskq.db.embedded import embedded_url

        target = embedded_url()
    with _lock, connect(target) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def current(url: str | None = None, schema: str | None = None) -> Any:
    """The revision the schema is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    name = resolve_schema(schema)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool, connect_args=NO_PREPARE)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": name})
        rev = ctx.get_current_revision()
    engine.dispose()
    return rev


def run_ddl(op: Any, ddl: str) -> None:
    """In a revision: run ``ddl`` with ``{s}`` composed as the taskq schema's identifier.

    The schema is the one the version table lives in (set by env.py); literal braces in
    the DDL are doubled, as ``psycopg.sql.SQL.format`` wants them.
    """
    from psycopg import sql

    schema = op.get_context().version_table_schema
    assert schema is not None
    conn = op.get_bind().connection.driver_connection
    op.execute(sql.SQL(ddl).format(s=sql.Identifier(schema)).as_string(conn))
