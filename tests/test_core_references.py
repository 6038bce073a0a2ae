"""References (contract §1, seed 001): application columns on taskq's tables.

Each test gets a fresh schema (reference columns change the table) and its own
``accounts_<hex>`` table. Reference names are checked against the table's real
columns before any SQL uses them; identifiers are always quoted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from psycopg import sql

import taskq
from taskq.db.ddl import reference_ddl
from taskq.db.migrate import sqlalchemy_url

R = taskq.TaskEnqueueRequest

INJECTIONS = [
    'x"; DROP TABLE t; --',
    "account_id; DROP TABLE accounts",
    "account_id) VALUES (1); --",
    "status = 'x'",
    " account_id",
    "",
]


@dataclass
class Env:
    url: str
    schema: str
    accounts: str
    conn: psycopg.Connection[Any]
    queuer: taskq.Queuer
    tasks: taskq.Tasks

    def execute(self, query: Any, params: Any = None) -> Any:
        return self.conn.execute(query, params)

    def count(self) -> int:
        row = self.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, "tasks"))
        ).fetchone()
        return int(row[0])

    def add_accounts(self, *ids: int) -> None:
        for i in ids:
            self.execute(
                sql.SQL("INSERT INTO {} VALUES (%s)").format(
                    sql.Identifier(self.schema, self.accounts)
                ),
                (i,),
            )

    def tables_intact(self) -> bool:
        row = self.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (f"{self.schema}.tasks", f"{self.schema}.{self.accounts}"),
        ).fetchone()
        return bool(row[0])


def taskq_tables(conn: psycopg.Connection[Any], schema: str) -> tuple[str, ...]:
    """The reference-carrying tables this schema has (schedules may not exist yet)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_name IN ('tasks', 'schedules') ORDER BY table_name DESC",
        (schema,),
    ).fetchall()
    return tuple(r[0] for r in rows)


def add_reference(env: Env, column: str = "account_id") -> None:
    for stmt in reference_ddl(
        column,
        "bigint",
        f"{env.schema}.{env.accounts}(id)",
        schema=env.schema,
        tables=taskq_tables(env.conn, env.schema),
    ):
        env.execute(stmt)


@pytest.fixture
def env(make: Any, database_url: str, fresh_schema: str) -> Iterator[Env]:
    accounts = f"accounts_{uuid.uuid4().hex[:8]}"
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Tasks(database_url, schema=fresh_schema) as tasks,
    ):
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(
                sql.Identifier(fresh_schema, accounts)
            )
        )
        yield Env(database_url, fresh_schema, accounts, conn, queuer, tasks)


# ---- the cascade ----------------------------------------------------------------------


def test_reference_is_stored_and_deleting_the_row_deletes_its_tasks(env: Env) -> None:
    add_reference(env)
    env.add_accounts(7, 8)
    mine = env.queuer.enqueue(R("q", "t", references={"account_id": 7}))
    theirs = env.queuer.enqueue(R("q", "t", references={"account_id": 8}))
    plain = env.queuer.enqueue(R("q", "t"))
    assert mine.references == {"account_id": 7}
    assert env.tasks.get(mine.id).references == {"account_id": 7}
    assert plain.references == {}

    env.execute(
        sql.SQL("DELETE FROM {} WHERE id = 7").format(sql.Identifier(env.schema, env.accounts))
    )
    with pytest.raises(taskq.TaskNotFound):
        env.tasks.get(mine.id)
    assert env.tasks.get(theirs.id).references == {"account_id": 8}
    assert env.tasks.get(plain.id).references == {}


def test_reference_to_a_missing_row_is_refused_and_stores_nothing(env: Env) -> None:
    add_reference(env)
    with pytest.raises(taskq.InvalidReference) as e:
        env.queuer.enqueue(R("q", "t", references={"account_id": 999}))
    assert isinstance(e.value, ValueError)
    assert env.count() == 0


def test_enqueue_many_with_mixed_references_is_all_or_nothing(env: Env) -> None:
    add_reference(env)
    env.add_accounts(1)
    # plain rows and reference rows go in separate statements of one transaction
    with pytest.raises(taskq.InvalidReference):
        env.queuer.enqueue_many(
            [R("q", "t", 0), R("q", "t", 1, references={"account_id": 1}),
             R("q", "t", 2, references={"account_id": 404})]
        )  # fmt: skip
    assert env.count() == 0
    out = env.queuer.enqueue_many(
        [R("q", "t", 0), R("q", "t", 1, references={"account_id": 1}), R("q", "t", 2)]
    )
    assert [t.spec for t in out] == [0, 1, 2]
    assert [t.references for t in out] == [{}, {"account_id": 1}, {}]


def test_references_join_the_callers_transaction(env: Env) -> None:
    add_reference(env)
    env.add_accounts(5)
    with psycopg.connect(env.url) as caller:
        task = taskq.Queuer(caller, schema=env.schema).enqueue(
            R("q", "t", references={"account_id": 5})
        )
        assert env.count() == 0
        caller.rollback()
    assert env.count() == 0
    with pytest.raises(taskq.TaskNotFound):
        env.tasks.get(task.id)


# ---- refused names ---------------------------------------------------------------------


def test_unknown_column_is_refused_with_invalid_reference(env: Env) -> None:
    with pytest.raises(taskq.InvalidReference) as e:
        env.queuer.enqueue(R("q", "t", references={"account_id": 7}))
    assert isinstance(e.value, ValueError) and isinstance(e.value, taskq.TaskqError)
    assert "account_id" in str(e.value)
    assert env.count() == 0


@pytest.mark.parametrize("column", ["status", "id", "queue", "spec", "lease", "attempts"])
def test_builtin_column_is_refused_with_invalid_reference(env: Env, column: str) -> None:
    with pytest.raises(taskq.InvalidReference) as e:
        env.queuer.enqueue(R("q", "t", references={column: 1}))
    assert column in str(e.value) and "built-in" in str(e.value)
    assert env.count() == 0


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_shaped_reference_names_are_refused_and_harmless(env: Env, name: str) -> None:
    add_reference(env)
    env.add_accounts(1)
    with pytest.raises(taskq.InvalidReference):
        env.queuer.enqueue(R("q", "t", references={name: 1}))
    with pytest.raises(taskq.InvalidReference):
        env.queuer.enqueue_many(
            [R("q", "t", references={"account_id": 1}), R("q", "t", references={name: 1})]
        )
    assert env.count() == 0
    assert env.tables_intact()


def test_an_oddly_named_real_column_is_quoted_not_interpreted(env: Env) -> None:
    odd = 'acc"ount; DROP TABLE x; --'
    env.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint REFERENCES {} (id) ON DELETE CASCADE").format(
            sql.Identifier(env.schema, "tasks"),
            sql.Identifier(odd),
            sql.Identifier(env.schema, env.accounts),
        )
    )
    env.add_accounts(3)
    task = env.queuer.enqueue(R("q", "t", references={odd: 3}))
    assert env.tasks.get(task.id).references == {odd: 3}
    assert env.tables_intact()


def test_a_column_added_after_the_queuer_started_is_accepted(env: Env) -> None:
    with pytest.raises(taskq.InvalidReference):  # the Queuer has now read the columns
        env.queuer.enqueue(R("q", "t", references={"account_id": 1}))
    add_reference(env)
    env.add_accounts(1)
    task = env.queuer.enqueue(R("q", "t", references={"account_id": 1}))
    assert task.references == {"account_id": 1}


def test_a_column_dropped_after_the_queuer_started_is_refused(env: Env) -> None:
    add_reference(env)
    env.add_accounts(1)
    env.queuer.enqueue(R("q", "t", references={"account_id": 1}))
    env.execute(
        sql.SQL("ALTER TABLE {} DROP COLUMN account_id").format(sql.Identifier(env.schema, "tasks"))
    )
    with pytest.raises(taskq.InvalidReference) as e:
        env.queuer.enqueue(R("q", "t", references={"account_id": 1}))
    assert "account_id" in str(e.value)
    assert env.count() == 1


# ---- the helpers for users' migrations ---------------------------------------------------


def test_add_and_drop_reference_column_from_an_alembic_migration(env: Env) -> None:
    engine = sa.create_engine(sqlalchemy_url(env.url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as sa_conn:
            op = Operations(MigrationContext.configure(sa_conn))
            taskq.add_reference_column(
                op, "account_id", "bigint", f"{env.schema}.{env.accounts}(id)", schema=env.schema
            )
        env.add_accounts(9)
        task = env.queuer.enqueue(R("q", "t", references={"account_id": 9}))
        env.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(env.schema, env.accounts)))
        with pytest.raises(taskq.TaskNotFound):
            env.tasks.get(task.id)

        with engine.begin() as sa_conn:
            taskq.drop_reference_column(
                Operations(MigrationContext.configure(sa_conn)), "account_id", schema=env.schema
            )
        row = env.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = %s AND column_name = 'account_id'",
            (env.schema,),
        ).fetchone()
        assert row == (0,)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("column", "column_type", "target"),
    [
        ("status", "bigint", "accounts(id)"),
        ('x"; DROP TABLE t; --', "bigint", "accounts(id)"),
        ("account_id", "bigint; DROP TABLE t", "accounts(id)"),
        ("account_id", "bigint", "accounts(id); DROP TABLE t"),
        ("account_id", "bigint", "accounts"),
    ],
)
def test_reference_ddl_refuses_bad_names(column: str, column_type: str, target: str) -> None:
    with pytest.raises(ValueError):
        reference_ddl(column, column_type, target, schema="taskq")
