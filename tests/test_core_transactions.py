"""Transactional enqueue: given the caller's connection, taskq joins its transaction.

The task becomes visible to other connections exactly when the caller commits and
vanishes if it rolls back; taskq never commits the caller's transaction. Checked for
a psycopg Connection and for SQLAlchemy's Session and Connection on psycopg 3.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import pq, sql
from psycopg_pool import ConnectionPool
from sqlalchemy.orm import Session

import taskq
from taskq.db.migrate import sqlalchemy_url

R = taskq.TaskEnqueueRequest


def visible(conn: psycopg.Connection[Any], schema: str, task_id: str) -> bool:
    """Whether ``task_id`` is committed, seen from an independent autocommit connection."""
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE id = %s").format(sql.Identifier(schema, "tasks")),
        (task_id,),
    ).fetchone()
    return row == (1,)


@pytest.fixture
def caller(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An application's own connection: not autocommit, so statements open a transaction."""
    with psycopg.connect(database_url) as c:
        yield c


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def app_table(conn: psycopg.Connection[Any], schema: str) -> str:
    """An application table in the test schema, for work that commits with an enqueue."""
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY)").format(
            sql.Identifier(schema, "app_orders")
        )
    )
    return f"{schema}.app_orders"


def app_rows(conn: psycopg.Connection[Any], schema: str, name: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE name = %s").format(
            sql.Identifier(schema, "app_orders")
        ),
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


# ---- psycopg Connection -------------------------------------------------------------------


def test_psycopg_enqueue_is_invisible_until_the_caller_commits(
    caller: psycopg.Connection[Any], conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    queuer = taskq.Queuer(caller, schema=schema)
    task = queuer.enqueue(R(queue_name, "t", {"a": 1}))
    assert caller.info.transaction_status == pq.TransactionStatus.INTRANS  # not committed
    assert not visible(conn, schema, task.id)
    many = queuer.enqueue_many([R(queue_name, "t", i) for i in range(3)])
    assert not any(visible(conn, schema, t.id) for t in many)
    caller.commit()
    assert visible(conn, schema, task.id)
    assert all(visible(conn, schema, t.id) for t in many)


def test_psycopg_enqueue_vanishes_on_rollback(
    caller: psycopg.Connection[Any], conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    task = taskq.Queuer(caller, schema=schema).enqueue(R(queue_name, "t"))
    caller.rollback()
    assert not visible(conn, schema, task.id)
    with taskq.Tasks(conn, schema=schema) as tasks, pytest.raises(taskq.TaskNotFound):
        tasks.get(task.id)


def test_psycopg_enqueue_commits_and_rolls_back_with_the_callers_own_work(
    caller: psycopg.Connection[Any],
    conn: psycopg.Connection[Any],
    schema: str,
    app_table: str,
    queue_name: str,
) -> None:
    queuer = taskq.Queuer(caller, schema=schema)
    insert = sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(schema, "app_orders"))
    with caller.transaction():
        caller.execute(insert, (f"{queue_name}-kept",))
        kept = queuer.enqueue(R(queue_name, "t"))
    assert visible(conn, schema, kept.id) and app_rows(conn, schema, f"{queue_name}-kept") == 1

    class Abort(Exception):
        pass

    with pytest.raises(Abort), caller.transaction():
        caller.execute(insert, (f"{queue_name}-lost",))
        lost = queuer.enqueue(R(queue_name, "t"))
        raise Abort
    assert not visible(conn, schema, lost.id)
    assert app_rows(conn, schema, f"{queue_name}-lost") == 0


def test_taskq_error_leaves_the_callers_transaction_usable(
    caller: psycopg.Connection[Any],
    conn: psycopg.Connection[Any],
    schema: str,
    app_table: str,
    queue_name: str,
) -> None:
    key = f"k-{queue_name}"
    taskq.Queuer(conn, schema=schema).enqueue(R(queue_name, "t", unique_key=key))
    queuer = taskq.Queuer(caller, schema=schema)
    insert = sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(schema, "app_orders"))
    caller.execute(insert, (f"{queue_name}-order",))
    with pytest.raises(taskq.TaskAlreadyExists):
        queuer.enqueue(R(queue_name, "t", unique_key=key))
    # "already queued" is a normal outcome: the caller's own work must still commit
    other = queuer.enqueue(R(queue_name, "t2"))
    caller.commit()
    assert app_rows(conn, schema, f"{queue_name}-order") == 1
    assert visible(conn, schema, other.id)


def test_autocommit_connection_enqueue_is_durable_at_once(
    database_url: str, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as own:
        task = taskq.Queuer(own, schema=schema).enqueue(R(queue_name, "t"))
        assert own.info.transaction_status == pq.TransactionStatus.IDLE
    assert visible(conn, schema, task.id)


def test_commit_wakes_a_blocked_dequeuer(
    make: Any,
    database_url: str,
    caller: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    # A poll interval far beyond the join below: only the NOTIFY sent at commit can
    # wake the dequeuer in time (a liveness check, not a speed measurement).
    with make.Dequeuer(database_url, schema=schema, poll_interval=120) as dequeuer:
        dequeuer.listener()  # LISTEN is up before anything is enqueued
        got: list[taskq.Task | None] = []
        thread = threading.Thread(
            target=lambda: got.append(dequeuer.dequeue(queue_name, timeout=60))
        )
        thread.start()
        task = taskq.Queuer(caller, schema=schema).enqueue(R(queue_name, "t"))
        caller.commit()
        thread.join(20)
        assert not thread.is_alive(), "dequeue was not woken by the commit's NOTIFY"
    assert got[0] is not None and got[0].id == task.id


def test_caller_owned_pool_is_used_and_left_open(
    database_url: str, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with ConnectionPool(database_url, min_size=1, max_size=2, open=True) as pool:
        with taskq.Queuer(pool, schema=schema) as queuer:
            task = queuer.enqueue(R(queue_name, "t"))
        assert visible(conn, schema, task.id)
        assert not pool.closed
        with pool.connection() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_dequeuer_and_tasks_work_on_a_callers_connection(
    caller: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    caller.autocommit = True
    task = taskq.Queuer(caller, schema=schema).enqueue(R(queue_name, "t"))
    dequeuer = taskq.Dequeuer(caller, schema=schema)
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None and claimed.id == task.id
    dequeuer.finish(claimed, None, {"ok": True})
    assert taskq.Tasks(caller, schema=schema).get(task.id).result == {"ok": True}


# ---- SQLAlchemy ----------------------------------------------------------------------


def test_sqlalchemy_session_enqueue_commits_with_the_session(
    engine: sa.Engine, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with Session(engine) as session:
        task = taskq.Queuer(session, schema=schema).enqueue(R(queue_name, "t", {"s": 1}))
        assert session.in_transaction()
        assert not visible(conn, schema, task.id)
        session.commit()
        assert visible(conn, schema, task.id)


def test_sqlalchemy_session_enqueue_vanishes_on_rollback(
    engine: sa.Engine, conn: psycopg.Connection[Any], schema: str, app_table: str, queue_name: str
) -> None:
    with Session(engine) as session:
        session.execute(sa.text(f"INSERT INTO {app_table} VALUES (:n)"), {"n": f"{queue_name}-sa"})
        tasks = taskq.Queuer(session, schema=schema).enqueue_many(
            [R(queue_name, "t", i) for i in range(3)]
        )
        assert not any(visible(conn, schema, t.id) for t in tasks)
        session.rollback()
    assert not any(visible(conn, schema, t.id) for t in tasks)
    assert app_rows(conn, schema, f"{queue_name}-sa") == 0


def test_sqlalchemy_connection_enqueue_follows_its_transaction(
    engine: sa.Engine, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with engine.connect() as sa_conn:
        queuer = taskq.Queuer(sa_conn, schema=schema)
        rolled = queuer.enqueue(R(queue_name, "t"))
        assert not visible(conn, schema, rolled.id)
        sa_conn.rollback()
        kept = queuer.enqueue(R(queue_name, "t"))
        assert not visible(conn, schema, kept.id)
        sa_conn.commit()
    assert visible(conn, schema, kept.id)
    assert not visible(conn, schema, rolled.id)


def test_sqlalchemy_connection_begin_block_rolls_back_on_error(
    engine: sa.Engine, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with pytest.raises(ZeroDivisionError), engine.begin() as sa_conn:
        task = taskq.Queuer(sa_conn, schema=schema).enqueue(R(queue_name, "t"))
        1 / 0  # noqa: B018
    assert not visible(conn, schema, task.id)
