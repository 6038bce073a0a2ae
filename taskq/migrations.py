"""Running taskq's Alembic migrations from Python and from ``taskq migrate``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from taskq.config import resolve_schema, sqlalchemy_url


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed package, or the repository's folder."""
    here = Path(__file__).resolve().parent
    packaged = here / "_migrations"
    return packaged if packaged.is_dir() else here.parent / "migrations"


def alembic_config(url: str | None = None, schema: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["schema"] = resolve_schema(schema)
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


# Alembic keeps the running migration context in a module global: threads of one
# process take turns here (processes take turns on an advisory lock in env.py).
_lock = threading.Lock()


def migrate(url: str | None = None, schema: str | None = None, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (idempotent; concurrent callers take turns)."""
    with _lock:
        command.upgrade(alembic_config(url, schema), revision)


def downgrade(url: str | None = None, schema: str | None = None, revision: str = "base") -> None:
    with _lock:
        command.downgrade(alembic_config(url, schema), revision)


def current(url: str | None = None, schema: str | None = None) -> Any:
    """The revision the schema is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    name = resolve_schema(schema)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
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
