"""Migrations: idempotent upgrade, the version table in taskq's schema, agreement with
the declared SQLAlchemy metadata, a clean downgrade, and ``alembic upgrade head``."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from helpers import ROOT, taskq_env
from psycopg import sql

import taskq
from taskq.db.migrate import alembic_config, current, downgrade, sqlalchemy_url
from taskq.db.schema import metadata

TABLES = ("tasks", "workers", "groups")  # at least these; later revisions may add more


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config("postgresql://unused", "taskq")
    ).get_current_head()
    assert head is not None
    return head


def table_names(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    return {r[0] for r in rows}


def drop(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def spare_schema(conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema name nobody uses yet; dropped afterwards whatever the test made of it."""
    name = f"t_mig_{uuid.uuid4().hex[:10]}"
    yield name
    drop(conn, name)


# ---- upgrade ---------------------------------------------------------------------------


def test_migrate_twice_is_idempotent(
    database_url: str, fresh_schema: str, conn: psycopg.Connection[Any]
) -> None:
    tables = table_names(conn, fresh_schema)
    assert set(TABLES) | {"alembic_version"} <= tables
    taskq.migrate(database_url, fresh_schema)
    taskq.migrate(database_url, fresh_schema)
    assert table_names(conn, fresh_schema) == tables
    assert current(database_url, fresh_schema) == head_revision()


def test_version_table_lives_in_the_taskq_schema(
    database_url: str, fresh_schema: str, conn: psycopg.Connection[Any]
) -> None:
    rows = conn.execute(
        sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(fresh_schema, "alembic_version")
        )
    ).fetchall()
    assert rows == [(head_revision(),)]
    # an application's own Alembic history in another schema is not touched or read
    assert current(database_url, fresh_schema) == head_revision()


def test_concurrent_migrations_take_turns(
    database_url: str, spare_schema: str, conn: psycopg.Connection[Any]
) -> None:
    # Separate processes, as several deployments would run them: Alembic keeps its
    # migration context in module globals, so threads of one process cannot.
    script = "import sys, taskq; taskq.migrate(sys.argv[1], sys.argv[2])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url, spare_schema],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert current(database_url, spare_schema) == head_revision()
    assert set(TABLES) <= table_names(conn, spare_schema)


def test_alembic_upgrade_head_from_the_repository_root(
    database_url: str, spare_schema: str, conn: psycopg.Connection[Any]
) -> None:
    env = taskq_env(database_url, spare_schema)
    for _ in range(2):  # and again: nothing to do
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "alembic"), "upgrade", "head"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert set(TABLES) | {"alembic_version"} <= table_names(conn, spare_schema)
    assert current(database_url, spare_schema) == head_revision()
    assert taskq.Tasks(conn, schema=spare_schema).list() == []


# ---- downgrade -------------------------------------------------------------------------


def test_downgrade_to_base_removes_the_tables_and_upgrade_restores_them(
    database_url: str, fresh_schema: str, conn: psycopg.Connection[Any]
) -> None:
    downgrade(database_url, fresh_schema, "base")
    assert table_names(conn, fresh_schema) <= {"alembic_version"}
    assert current(database_url, fresh_schema) is None
    taskq.migrate(database_url, fresh_schema)
    assert set(TABLES) <= table_names(conn, fresh_schema)
    with taskq.Queuer(conn, schema=fresh_schema) as queuer:
        assert queuer.enqueue(queue="q", type="t").status is taskq.TaskStatus.WAITING


# ---- migrations agree with the declared schema --------------------------------------------


def test_migration_matches_declared_metadata_per_alembic(
    fresh_schema: str, engine: sa.Engine
) -> None:
    with engine.connect() as c:
        ctx = MigrationContext.configure(
            c,
            opts={
                "include_schemas": True,
                # only this test's schema: other test schemas share the database
                "include_name": lambda name, type_, parent: (
                    name == fresh_schema if type_ == "schema" else True
                ),
                "version_table_schema": fresh_schema,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        diff = compare_metadata(ctx, metadata(fresh_schema))
    # Nothing to ignore today. Alembic does not compare partial-index predicates,
    # expression index columns (priority DESC) or CHECK constraints; the next test
    # covers those by letting PostgreSQL describe both sides.
    assert diff == []


def _describe(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """What PostgreSQL says the tables of ``schema`` are, with the schema name elided."""

    def norm(value: Any) -> str:
        text = str(value).replace(f"{schema}.", "<s>.")
        # SQLAlchemy writes a numeric server_default as a quoted literal ('60'), which
        # PostgreSQL keeps as '60'::double precision; the revision's DEFAULT 60 is the
        # same constant, so both spellings compare as 60.
        return re.sub(r"^'(-?[0-9.]+)'::[a-z ]+$", r"\1", text)

    def rows(query: str) -> list[tuple[Any, ...]]:
        out = conn.execute(query, {"s": schema}).fetchall()
        return sorted(tuple(norm(v) for v in r) for r in out)

    return {
        "columns": rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default,"
            " is_identity, identity_generation FROM information_schema.columns"
            " WHERE table_schema = %(s)s AND table_name <> 'alembic_version'"
        ),
        "indexes": rows(
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = %(s)s AND tablename <> 'alembic_version'"
        ),
        "constraints": rows(
            "SELECT cl.relname, co.conname, pg_get_constraintdef(co.oid)"
            " FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid"
            " JOIN pg_namespace n ON n.oid = cl.relnamespace"
            " WHERE n.nspname = %(s)s AND cl.relname <> 'alembic_version'"
        ),
        "options": rows(
            "SELECT c.relname, c.reloptions FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %(s)s AND c.relkind = 'r' AND c.relname <> 'alembic_version'"
        ),
    }


def test_migration_matches_declared_metadata_as_postgresql_sees_it(
    fresh_schema: str, spare_schema: str, engine: sa.Engine, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(spare_schema)))
    with engine.begin() as c:
        metadata(spare_schema).create_all(c)
    migrated = _describe(conn, fresh_schema)
    declared = _describe(conn, spare_schema)
    for part in ("columns", "indexes", "constraints", "options"):
        assert declared[part] == migrated[part], part


def test_threads_of_one_process_migrate_in_turn(database_url: str) -> None:
    """Alembic keeps its context in a global: concurrent migrate() calls in threads must
    take turns instead of hanging or failing."""
    import threading

    name = f"t_mthreads_{uuid.uuid4().hex[:8]}"
    failures: list[BaseException] = []

    def run() -> None:
        try:
            taskq.migrate(database_url, name)
        except BaseException as e:  # collected and reported below
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a migrate() call hung"
        assert failures == []
        assert (
            current(database_url, name)
            == ScriptDirectory.from_config(alembic_config(database_url, name)).get_current_head()
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
