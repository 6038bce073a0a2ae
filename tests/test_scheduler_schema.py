"""The schedules table: migrations match the declared metadata, downgrade cleanly, and
the due-schedule claim uses its partial index."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlalchemy import create_engine, pool

from taskq.db.migrate import current, downgrade, migrate, sqlalchemy_url
from taskq.db.schema import SCHEDULE_BUILTIN_COLUMNS, metadata
from taskq.sql import statements


def _diff(url: str, schema: str) -> list[Any]:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)

    def include(name: str | None, kind: str, parent: Any) -> bool:
        if kind == "schema":
            return name == schema
        return not (kind == "table" and name == "alembic_version")

    try:
        with engine.connect() as c:
            ctx = MigrationContext.configure(
                c,
                opts={"include_schemas": True, "include_name": include, "compare_type": True,
                      "compare_server_default": True},
            )  # fmt: skip
            return list(compare_metadata(ctx, metadata(schema)))
    finally:
        engine.dispose()


def test_migrations_match_the_metadata(database_url: str, fresh_schema: str) -> None:
    assert _diff(database_url, fresh_schema) == []


def test_builtin_columns_are_the_tables_columns(database_url: str, schema: str) -> None:
    table = metadata(schema).tables[f"{schema}.schedules"]
    assert {c.name for c in table.columns} == SCHEDULE_BUILTIN_COLUMNS


def test_downgrade_to_0001_and_back(database_url: str, fresh_schema: str) -> None:
    downgrade(database_url, fresh_schema, "0001")
    assert current(database_url, fresh_schema) == "0001"
    with psycopg.connect(database_url) as c:
        row = c.execute("SELECT to_regclass(%s)", (f"{fresh_schema}.schedules",)).fetchone()
        assert row == (None,)
    migrate(database_url, fresh_schema)
    assert _diff(database_url, fresh_schema) == []


def test_claim_uses_the_due_index(database_url: str, fresh_schema: str) -> None:
    sq = statements(fresh_schema).schedules
    table = sql.Identifier(fresh_schema, "schedules")
    with psycopg.connect(database_url) as c:
        c.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, cron_schedule, next_run_at, enabled, reference_key)"
                " SELECT 'q', 't', '* * * * *', now() + i * interval '1 minute', i % 10 = 0,"
                " jsonb_build_object('i', i) FROM generate_series(1, 5000) AS i"
            ).format(table)
        )
        c.execute(sql.SQL("ANALYZE {}").format(table))
        c.execute("SET enable_seqscan = off")  # tiny tables: ask which index serves it
        plan = "\n".join(
            r[0]
            for r in c.execute(
                "EXPLAIN " + sq.text("claim_due"), {"now": None, "limit": 100}
            ).fetchall()
        )
        assert "schedules_due_idx" in plan, plan


@pytest.mark.parametrize("value", ["[]", '"x"', "1"])
def test_reference_key_must_be_an_object(
    conn: psycopg.Connection[Any], schema: str, value: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, cron_schedule, next_run_at, reference_key)"
                " VALUES ('q', 't', '* * * * *', now(), %s::jsonb)"
            ).format(sql.Identifier(schema, "schedules")),
            (value,),
        )
