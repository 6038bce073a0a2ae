"""Alembic environment for taskq.

The schema comes from ``config.attributes["schema"]`` (set by ``taskq migrate``) or
the ``TASKQ_SCHEMA`` environment variable (default ``taskq``); the version table
lives in that schema, so taskq's history never mixes with an application's own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlalchemy.schema import CreateSchema

from taskq.core.config import resolve_schema
from taskq.db.migrate import NO_PREPARE, sqlalchemy_url
from taskq.db.schema import metadata

config = context.config
schema = resolve_schema(config.attributes.get("schema"))
target_metadata = metadata(schema)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=False,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        # One migrator at a time per schema: concurrent `taskq migrate` calls queue here.
        context.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))").bindparams(s=schema))
        # Only when it is missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the
        # database even when the schema is there.
        found = connection.execute(  # type: ignore[attr-defined]
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s").bindparams(s=schema)
        ).first()
        if found is None:
            context.execute(CreateSchema(schema))
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = config.attributes.get("url") or sqlalchemy_url(None)
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=NO_PREPARE)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=sqlalchemy_url(None),
        target_metadata=target_metadata,
        version_table_schema=schema,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
