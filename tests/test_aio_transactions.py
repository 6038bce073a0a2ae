"""Transactional enqueue on every async ``db`` form (contract §7): given the caller's
connection or session, ``taskq.aio`` joins its transaction and never commits it.

Forms: ``psycopg.AsyncConnection`` (autocommit off; autocommit on, inside and outside
``async with conn.transaction()``), SQLAlchemy ``AsyncConnection`` and ``AsyncSession``
on ``postgresql+psycopg://``, and ``psycopg_pool.AsyncConnectionPool`` (no caller
transaction there: each call is durable at once, on the caller's pool). For each: an
enqueue is invisible to another connection until the commit and gone after a
rollback; taskq never commits (a rollback after an enqueue leaves nothing); a refused
call leaves the caller's transaction usable. The same for ``AsyncScheduler``, the
fenced writes of ``AsyncDequeuer`` and ``AsyncTasks.cancel``.

Visibility is read from an independent autocommit connection (``conn``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
import pytest
import sqlalchemy as sa
from psycopg import pq, sql
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import taskq
from taskq.aio import AsyncDequeuer, AsyncQueuer, AsyncScheduler, AsyncTasks
from taskq.db.ddl import reference_ddl
from taskq.db.migrate import sqlalchemy_url

R = taskq.TaskEnqueueRequest
S = taskq.TaskScheduleRequest


# ---- looking from outside --------------------------------------------------------------


def visible(conn: psycopg.Connection[Any], schema: str, task_id: str) -> bool:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE id = %s").format(sql.Identifier(schema, "tasks")),
        (task_id,),
    ).fetchone()
    return row == (1,)


def status(conn: psycopg.Connection[Any], schema: str, task_id: str) -> tuple[str, int] | None:
    row = conn.execute(
        sql.SQL("SELECT status, attempts FROM {} WHERE id = %s").format(
            sql.Identifier(schema, "tasks")
        ),
        (task_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def schedules(conn: psycopg.Connection[Any], schema: str, queue: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE queue = %s").format(
            sql.Identifier(schema, "schedules")
        ),
        (queue,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def app_rows(conn: psycopg.Connection[Any], schema: str, name: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE name = %s").format(
            sql.Identifier(schema, "app_orders")
        ),
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def app_schema(database_url: str, schema: str) -> str:
    """The module schema with an application table and an ``account_id`` reference."""
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE TABLE {} (name text PRIMARY KEY)").format(
                sql.Identifier(schema, "app_orders")
            )
        )
        c.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(
                sql.Identifier(schema, "accounts")
            )
        )
        c.execute(
            sql.SQL("INSERT INTO {} SELECT generate_series(1, 5)").format(
                sql.Identifier(schema, "accounts")
            )
        )
        for stmt in reference_ddl("account_id", "bigint", f"{schema}.accounts(id)", schema=schema):
            c.execute(stmt)
    return schema


# ---- the caller's side: one object per form ------------------------------------------------


@dataclass
class Caller:
    """An application's connection or session: ``db`` goes to taskq; the rest is what
    the application itself does in the same transaction."""

    form: str
    db: Any
    schema: str

    async def insert_order(self, name: str) -> None:
        text = f"INSERT INTO {self.schema}.app_orders VALUES (%(n)s)"
        if self.form == "psycopg":
            await self.db.execute(text, {"n": name})
        else:
            await self.db.execute(sa.text(text.replace("%(n)s", ":n")), {"n": name})

    async def select_one(self) -> Any:
        if self.form == "psycopg":
            cur = await self.db.execute("SELECT 1")
            return (await cur.fetchone())[0]
        return (await self.db.execute(sa.text("SELECT 1"))).scalar_one()

    async def commit(self) -> None:
        await self.db.commit()

    async def rollback(self) -> None:
        await self.db.rollback()

    def in_transaction(self) -> bool:
        if self.form == "psycopg":
            return bool(self.db.info.transaction_status == pq.TransactionStatus.INTRANS)
        return bool(self.db.in_transaction())


FORMS = ["psycopg", "sqlalchemy-connection", "sqlalchemy-session"]


@contextlib.asynccontextmanager
async def async_engine(url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def caller(form: str, url: str, schema: str) -> AsyncIterator[Caller]:
    """A caller's connection (autocommit off) or session, in the form named."""
    if form == "psycopg":
        async with await psycopg.AsyncConnection.connect(url) as c:
            yield Caller(form, c, schema)
            await c.rollback()  # whatever a failed test left open is not committed
        return
    async with async_engine(url) as engine:
        if form == "sqlalchemy-connection":
            async with engine.connect() as sa_conn:
                yield Caller(form, sa_conn, schema)
        else:
            async with AsyncSession(engine) as session:
                yield Caller(form, session, schema)


# ---- enqueue: invisible until commit, gone on rollback ---------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_enqueue_is_invisible_until_the_caller_commits(
    form: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with caller(form, database_url, app_schema) as app:
        queuer = AsyncQueuer(app.db, schema=app_schema)
        one = await queuer.enqueue(R(queue_name, "t", {"a": 1}))
        assert app.in_transaction()  # not committed by taskq
        many = await queuer.enqueue_many([R(queue_name, "t", i) for i in range(3)])
        chain = await queuer.enqueue_chain([R(queue_name, "c", 1), R(queue_name, "c", 2)])
        group = await queuer.enqueue_group(
            [R(queue_name, "g", 1)], on_complete=R(queue_name, "after")
        )
        with_ref = await queuer.enqueue(R(queue_name, "t", references={"account_id": 2}))
        ids = [one.id, *(t.id for t in many), *chain.task_ids, *group.task_ids, with_ref.id]
        assert not any(visible(conn, app_schema, i) for i in ids)
        # the caller's own connection sees its own uncommitted work
        seen = await AsyncTasks(app.db, schema=app_schema).get(one.id)
        assert seen == one
        await app.commit()
        assert all(visible(conn, app_schema, i) for i in ids)
        await queuer.close()  # closes nothing of the caller's
        assert await app.select_one() == 1


@pytest.mark.parametrize("form", FORMS)
async def test_enqueue_vanishes_on_rollback_with_the_callers_own_work(
    form: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with caller(form, database_url, app_schema) as app:
        queuer = AsyncQueuer(app.db, schema=app_schema)
        await app.insert_order(f"{queue_name}-lost")
        lost = await queuer.enqueue(R(queue_name, "t"))
        batch = await queuer.enqueue_many([R(queue_name, "t", i) for i in range(3)])
        await app.rollback()  # taskq committed nothing: everything goes
        assert not visible(conn, app_schema, lost.id)
        assert not any(visible(conn, app_schema, t.id) for t in batch)
        assert app_rows(conn, app_schema, f"{queue_name}-lost") == 0
        with pytest.raises(taskq.TaskNotFound):
            await AsyncTasks(app.db, schema=app_schema).get(lost.id)

        # the same objects go on working in the caller's next transaction
        await app.insert_order(f"{queue_name}-kept")
        kept = await queuer.enqueue(R(queue_name, "t"))
        await app.commit()
        assert visible(conn, app_schema, kept.id)
        assert app_rows(conn, app_schema, f"{queue_name}-kept") == 1


REFUSALS = {
    "unique key held": lambda q, key: R(q, "t", unique_key=key),
    "missing referenced row": lambda q, key: R(q, "t", references={"account_id": 999}),
    "reference of the wrong type": lambda q, key: R(q, "t", references={"account_id": "x"}),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
@pytest.mark.parametrize("form", FORMS)
async def test_a_refused_enqueue_leaves_the_callers_transaction_usable(
    form: str,
    refusal: str,
    database_url: str,
    app_schema: str,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    key = f"held-{queue_name}"
    held = taskq.Queuer(conn, schema=app_schema).enqueue(R(queue_name, "t", unique_key=key))
    async with caller(form, database_url, app_schema) as app:
        queuer = AsyncQueuer(app.db, schema=app_schema)
        await app.insert_order(f"{queue_name}-order")
        before = await queuer.enqueue(R(queue_name, "before"))
        with pytest.raises(ValueError if "reference" in refusal else taskq.TaskAlreadyExists):
            await queuer.enqueue(REFUSALS[refusal](queue_name, key))
        with pytest.raises(taskq.TaskqError):  # in a batch, too
            await queuer.enqueue_many([R(queue_name, "x"), REFUSALS[refusal](queue_name, key)])
        assert app.in_transaction()
        # "already queued" is a normal outcome: the caller's work goes on and commits
        after = await queuer.enqueue(R(queue_name, "after"))
        assert await app.select_one() == 1
        await app.commit()
    assert app_rows(conn, app_schema, f"{queue_name}-order") == 1
    assert visible(conn, app_schema, before.id) and visible(conn, app_schema, after.id)
    assert visible(conn, app_schema, held.id)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE queue = %s").format(
            sql.Identifier(app_schema, "tasks")
        ),
        (queue_name,),
    ).fetchone()
    assert row == (3,)  # held, before, after: nothing of the refused calls


# ---- transaction blocks ---------------------------------------------------------------------


class Abort(Exception):
    pass


@pytest.mark.parametrize("autocommit", [False, True], ids=["autocommit-off", "autocommit-on"])
async def test_psycopg_transaction_block_commits_or_rolls_back_the_enqueue(
    autocommit: bool,
    database_url: str,
    app_schema: str,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    key = f"held-{queue_name}"
    taskq.Queuer(conn, schema=app_schema).enqueue(R(queue_name, "t", unique_key=key))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=autocommit) as c:
        app = Caller("psycopg", c, app_schema)
        queuer = AsyncQueuer(c, schema=app_schema)
        async with c.transaction():
            await app.insert_order(f"{queue_name}-kept")
            kept = await queuer.enqueue(R(queue_name, "t"))
            with pytest.raises(taskq.TaskAlreadyExists):  # refused inside the block...
                await queuer.enqueue(R(queue_name, "t", unique_key=key))
            also = await queuer.enqueue(R(queue_name, "t2"))  # ...which goes on
            assert not visible(conn, app_schema, kept.id)
        assert visible(conn, app_schema, kept.id) and visible(conn, app_schema, also.id)
        assert app_rows(conn, app_schema, f"{queue_name}-kept") == 1

        with pytest.raises(Abort):
            async with c.transaction():
                await app.insert_order(f"{queue_name}-lost")
                lost = await queuer.enqueue(R(queue_name, "t"))
                raise Abort
        assert not visible(conn, app_schema, lost.id)
        assert app_rows(conn, app_schema, f"{queue_name}-lost") == 0
        if autocommit:
            assert c.info.transaction_status == pq.TransactionStatus.IDLE


async def test_psycopg_autocommit_outside_a_transaction_is_durable_at_once(
    database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    key = f"held-{queue_name}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        queuer = AsyncQueuer(c, schema=app_schema)
        task = await queuer.enqueue(R(queue_name, "t", unique_key=key))
        assert c.info.transaction_status == pq.TransactionStatus.IDLE
        assert visible(conn, app_schema, task.id)
        many = await queuer.enqueue_many([R(queue_name, "t", references={"account_id": 1})] * 2)
        assert all(visible(conn, app_schema, t.id) for t in many)
        with pytest.raises(taskq.TaskAlreadyExists):
            await queuer.enqueue(R(queue_name, "t", unique_key=key))
        with pytest.raises(taskq.InvalidReference):
            await queuer.enqueue(R(queue_name, "t", references={"account_id": 999}))
        assert c.info.transaction_status == pq.TransactionStatus.IDLE
        assert (await (await c.execute("SELECT 1")).fetchone()) == (1,)


async def test_sqlalchemy_begin_blocks_commit_or_roll_back_the_enqueue(
    database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with async_engine(database_url) as engine:
        async with engine.begin() as sa_conn:
            kept = await AsyncQueuer(sa_conn, schema=app_schema).enqueue(R(queue_name, "t"))
            assert not visible(conn, app_schema, kept.id)
        assert visible(conn, app_schema, kept.id)
        with pytest.raises(Abort):
            async with engine.begin() as sa_conn:
                lost = await AsyncQueuer(sa_conn, schema=app_schema).enqueue(R(queue_name, "t"))
                raise Abort
        assert not visible(conn, app_schema, lost.id)

        async with AsyncSession(engine) as session:
            async with session.begin():
                in_block = await AsyncQueuer(session, schema=app_schema).enqueue(R(queue_name, "t"))
                assert not visible(conn, app_schema, in_block.id)
            assert visible(conn, app_schema, in_block.id)
            with pytest.raises(Abort):
                async with session.begin():
                    gone = await AsyncQueuer(session, schema=app_schema).enqueue(R(queue_name, "t"))
                    raise Abort
            assert not visible(conn, app_schema, gone.id)


# ---- a caller's pool ---------------------------------------------------------------------


@pytest.mark.parametrize("autocommit", [False, True], ids=["autocommit-off", "autocommit-on"])
async def test_a_callers_async_pool_is_used_committed_per_call_and_left_open(
    autocommit: bool,
    database_url: str,
    app_schema: str,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    key = f"held-{queue_name}"
    async with psycopg_pool.AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": autocommit}, open=False
    ) as pool:
        async with AsyncQueuer(pool, schema=app_schema) as queuer:
            task = await queuer.enqueue(R(queue_name, "t", unique_key=key))
            assert visible(conn, app_schema, task.id)  # no caller transaction: durable now
            chain = await queuer.enqueue_chain([R(queue_name, "c"), R(queue_name, "c")])
            assert all(visible(conn, app_schema, i) for i in chain.task_ids)
            with pytest.raises(taskq.TaskAlreadyExists):
                await queuer.enqueue(R(queue_name, "t", unique_key=key))
            with pytest.raises(taskq.InvalidReference):
                await queuer.enqueue(R(queue_name, "t", references={"account_id": 999}))
            again = await queuer.enqueue(R(queue_name, "t"))
            assert visible(conn, app_schema, again.id)
        assert not pool.closed  # the caller's pool is the caller's to close
        async with pool.connection() as c:
            assert c.info.transaction_status == pq.TransactionStatus.IDLE
            assert (await (await c.execute("SELECT 1")).fetchone()) == (1,)
        stats = pool.get_stats()
        assert stats.get("returns_bad", 0) == 0, stats  # every connection came back clean


# ---- AsyncScheduler ------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_schedule_follows_the_callers_transaction(
    form: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with caller(form, database_url, app_schema) as app:
        scheduler = AsyncScheduler(app.db, schema=app_schema)
        await scheduler.schedule(S(queue_name, "t", "* * * * *", references={"account_id": 1}))
        assert app.in_transaction()
        assert len(await scheduler.list_schedules(queue_name)) == 1  # seen inside
        assert schedules(conn, app_schema, queue_name) == 0  # not outside
        await app.rollback()
        assert await scheduler.list_schedules(queue_name) == []
        assert schedules(conn, app_schema, queue_name) == 0

        s = await scheduler.schedule(S(queue_name, "t", "* * * * *"))
        with pytest.raises(taskq.InvalidReference):  # a refused schedule: a savepoint
            await scheduler.schedule(S(queue_name, "t", "* * * * *", references={"account_id": 99}))
        await scheduler.pause(s)
        await app.commit()
        assert schedules(conn, app_schema, queue_name) == 1
        await scheduler.unschedule(s)
        assert schedules(conn, app_schema, queue_name) == 1
        await app.rollback()
        assert schedules(conn, app_schema, queue_name) == 1


SCHEDULE_REFUSALS = {
    "ensure": lambda s, q: s.ensure_schedule(queue=q, type="t", references={"account_id": "x"}),
    "unschedule": lambda s, q: s.unschedule(queue=q, type="t", references={"account_id": "x"}),
    "pause": lambda s, q: s.pause(queue=q, type="t", references={"account_id": "x"}),
    "resume": lambda s, q: s.resume(queue=q, type="t", references={"account_id": "x"}),
    "schedule": lambda s, q: s.schedule(S(q, "t", "* * * * *", references={"account_id": "x"})),
    "ensure, not scheduled": lambda s, q: s.ensure_schedule(queue=q, type="nope"),
}


@pytest.mark.parametrize("refusal", list(SCHEDULE_REFUSALS))
@pytest.mark.parametrize("form", FORMS)
async def test_a_refused_scheduler_call_leaves_the_callers_transaction_usable(
    form: str,
    refusal: str,
    database_url: str,
    app_schema: str,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    async with caller(form, database_url, app_schema) as app:
        scheduler = AsyncScheduler(app.db, schema=app_schema)
        await app.insert_order(f"{queue_name}-order")
        with pytest.raises(ValueError if refusal != "ensure, not scheduled" else LookupError):
            await SCHEDULE_REFUSALS[refusal](scheduler, queue_name)
        assert await app.select_one() == 1, "the caller's transaction is still usable"
        await scheduler.schedule(S(queue_name, "t", "* * * * *"))
        await app.commit()
    assert app_rows(conn, app_schema, f"{queue_name}-order") == 1
    assert schedules(conn, app_schema, queue_name) == 1


@pytest.mark.parametrize("refusal", ["ensure", "unschedule", "pause"])
def test_a_refused_scheduler_call_leaves_a_sync_callers_transaction_usable(
    refusal: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    """The synchronous face runs the same plans: the same check on a psycopg Connection."""
    with psycopg.connect(database_url) as c:
        scheduler = taskq.Scheduler(c, schema=app_schema)
        c.execute(
            sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(app_schema, "app_orders")),
            (f"{queue_name}-order",),
        )
        with pytest.raises(taskq.InvalidReference):
            SCHEDULE_REFUSALS[refusal](scheduler, queue_name)
        assert c.execute("SELECT 1").fetchone() == (1,), "the transaction is still usable"
        c.commit()
    assert app_rows(conn, app_schema, f"{queue_name}-order") == 1


# ---- AsyncDequeuer and AsyncTasks in the caller's transaction --------------------------------


@pytest.mark.parametrize("form", FORMS)
async def test_fenced_writes_commit_and_roll_back_with_the_caller(
    form: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with AsyncQueuer(database_url, schema=app_schema) as queuer, AsyncDequeuer(
        database_url, schema=app_schema
    ) as own:  # fmt: skip
        task = await queuer.enqueue(
            R(queue_name, "t", max_attempts=2, on_success=R(queue_name, "next"))
        )
        claimed = await own.dequeue(queue_name, timeout=0)
        assert claimed is not None and claimed.id == task.id

        async with caller(form, database_url, app_schema) as app:
            dequeuer = AsyncDequeuer(app.db, schema=app_schema)
            await dequeuer.heartbeat(claimed, {"step": 1})
            await dequeuer.finish(claimed, {"step": 2}, "done")
            assert app.in_transaction()
            assert status(conn, app_schema, task.id) == ("running", 1)
            assert conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE queue = %s AND type = 'next'").format(
                    sql.Identifier(app_schema, "tasks")
                ),
                (queue_name,),
            ).fetchone() == (0,)
            await app.rollback()
            assert status(conn, app_schema, task.id) == ("running", 1)

            # a refused write (the task has ended for this transaction) is no SQL
            # error: the transaction goes on
            await dequeuer.finish(claimed, None, "done")
            with pytest.raises(taskq.TaskFinished):
                await dequeuer.finish(claimed, None, "twice")
            await app.insert_order(f"{queue_name}-paid")
            await app.commit()
        assert status(conn, app_schema, task.id) == ("finished", 1)
        assert app_rows(conn, app_schema, f"{queue_name}-paid") == 1
        assert conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE queue = %s AND type = 'next'").format(
                sql.Identifier(app_schema, "tasks")
            ),
            (queue_name,),
        ).fetchone() == (1,)
        # the worker's own claim now finds the task ended
        with pytest.raises(taskq.TaskFinished):
            await own.heartbeat(claimed)


@pytest.mark.parametrize("form", FORMS)
async def test_claim_and_cancel_follow_the_callers_transaction(
    form: str, database_url: str, app_schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with AsyncQueuer(database_url, schema=app_schema) as queuer:
        a = await queuer.enqueue(R(queue_name, "t"))
        b = await queuer.enqueue(R(queue_name, "t"))
    async with caller(form, database_url, app_schema) as app:
        dequeuer = AsyncDequeuer(app.db, schema=app_schema)
        tasks = AsyncTasks(app.db, schema=app_schema)
        claimed = await dequeuer.dequeue(queue_name, timeout=0)
        assert claimed is not None and claimed.id == a.id
        assert (await tasks.cancel(b.id)).status is taskq.TaskStatus.CANCELLED
        assert status(conn, app_schema, a.id) == ("waiting", 0)  # held by the caller
        await app.rollback()
        assert status(conn, app_schema, a.id) == ("waiting", 0)
        assert status(conn, app_schema, b.id) == ("waiting", 0)
        again = await dequeuer.dequeue(queue_name, timeout=0)
        assert again is not None and again.id == a.id and again.attempts == 1
        with pytest.raises(taskq.TaskNotFound):  # refused: no SQL error, goes on
            await tasks.cancel("6f1f8a43-0000-4000-8000-00000000dead")
        await app.commit()
    assert status(conn, app_schema, a.id) == ("running", 1)


# ---- a commit wakes a waiting AsyncDequeuer ------------------------------------------------


async def test_the_callers_commit_wakes_a_blocked_async_dequeuer(
    database_url: str, app_schema: str, queue_name: str
) -> None:
    # A poll far beyond the wait below: only the NOTIFY sent at commit wakes it in time.
    async with AsyncDequeuer(database_url, schema=app_schema, poll_interval=120) as dequeuer:
        listener = await dequeuer.database.listener()
        assert listener is not None and listener.connected
        waiting = asyncio.create_task(dequeuer.dequeue(queue_name, timeout=60))
        async with caller("psycopg", database_url, app_schema) as app:
            task = await AsyncQueuer(app.db, schema=app_schema).enqueue(R(queue_name, "t"))
            await app.commit()
            got = await asyncio.wait_for(waiting, 20)  # liveness, not speed
    assert got is not None and got.id == task.id
