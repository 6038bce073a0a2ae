"""The cron tick (taskq.services.ticker) with an injected clock: one task per tick, catch-up after a
gap, skip_missed, DST through the database, the (schedule, tick) guard, references and
cascade delete, metrics, and waking on NOTIFY."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

import taskq
from taskq.core.cron import fire_times, parse
from taskq.db import Database
from taskq.db.ddl import reference_ddl
from taskq.ops.metrics import Metrics
from taskq.services.ticker import CronTicker, task_id_for

R = taskq.TaskScheduleRequest
UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _no_schedules_left(database_url: str, schema: str) -> Iterator[None]:
    """Each test sees only its own schedules (a tick fires every due one in the schema)."""
    yield
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "schedules")))


@pytest.fixture
def db(database_url: str, schema: str) -> Iterator[Database]:
    d = Database(database_url, schema)
    yield d
    d.close()


@pytest.fixture
def ticker(db: Database) -> Iterator[CronTicker]:
    t = CronTicker(db, listen=False)
    yield t
    t.close()


def scheduled_tasks(tasks: taskq.Tasks, queue: str) -> list[taskq.Task]:
    return sorted(tasks.list(queue=queue, limit=1000), key=lambda t: t.run_at)


def test_fires_once_per_tick_with_the_schedules_fields(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    s = scheduler.schedule(R(queue_name, "report", "*/5 * * * *", spec={"n": 1}))
    tick = s.next_run_at
    assert ticker.run_once(now=tick - SECOND).fired == []  # not due yet
    result = ticker.run_once(now=tick)
    assert [(f.schedule_id, f.run_at, f.catch_up) for f in result.fired] == [(s.id, tick, False)]
    assert ticker.run_once(now=tick).fired == []  # the same tick never fires twice
    [task] = scheduled_tasks(tasks, queue_name)
    assert (task.queue, task.type, task.spec, task.run_at) == (queue_name, "report", {"n": 1}, tick)
    assert task.status is taskq.TaskStatus.WAITING and task.references == {}
    assert task.id == result.fired[0].task_id == task_id_for(s.id, tick)
    [after] = scheduler.list_schedules(queue_name)
    assert after.last_run_at == tick and after.next_run_at == tick + dt.timedelta(minutes=5)


def test_late_ticks_within_the_grace_each_fire(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    s = scheduler.schedule(R(queue_name, "t", "* * * * * *"))
    first = s.next_run_at
    result = ticker.run_once(now=first + 4 * SECOND)  # a stalled scheduler, 4 s behind
    assert [f.run_at for f in result.fired] == [first + i * SECOND for i in range(5)]
    assert [t.run_at for t in scheduled_tasks(tasks, queue_name)] == [
        first + i * SECOND for i in range(5)
    ]


def test_one_catch_up_run_after_downtime(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    s = scheduler.schedule(R(queue_name, "t", "*/5 * * * *"))
    missed = s.next_run_at
    back = missed + dt.timedelta(hours=3, minutes=2)  # 37 ticks were missed
    result = ticker.run_once(now=back)
    assert [(f.run_at, f.catch_up) for f in result.fired] == [(missed, True)]
    [task] = scheduled_tasks(tasks, queue_name)
    assert task.run_at == missed  # the first missed tick: outstanding since then
    [after] = scheduler.list_schedules(queue_name)
    assert after.next_run_at == missed + dt.timedelta(hours=3, minutes=5)  # first tick after now
    assert after.last_run_at == missed
    assert ticker.run_once(now=back).fired == []
    # and then the schedule runs as usual
    assert [f.run_at for f in ticker.run_once(now=after.next_run_at).fired] == [after.next_run_at]


def test_skip_missed_skips_the_catch_up(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    s = scheduler.schedule(R(queue_name, "t", "0 * * * *", skip_missed=True))
    back = s.next_run_at + dt.timedelta(days=2, minutes=30)
    result = ticker.run_once(now=back)
    assert result.fired == [] and result.skipped == 1
    assert scheduled_tasks(tasks, queue_name) == []
    [after] = scheduler.list_schedules(queue_name)
    assert after.next_run_at == s.next_run_at + dt.timedelta(days=2, hours=1)
    assert after.last_run_at is None
    # a tick that is merely late (within the grace) still fires
    result = ticker.run_once(now=after.next_run_at + 3 * SECOND)
    assert [f.run_at for f in result.fired] == [after.next_run_at]


def test_paused_schedules_do_not_fire_and_resume_without_catch_up(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    s = scheduler.schedule(R(queue_name, "t", "* * * * *"))
    scheduler.pause(s)
    later = s.next_run_at + dt.timedelta(minutes=30, seconds=20)
    assert ticker.run_once(now=later).fired == []
    resumed = scheduler.resume(s, now=later)
    assert resumed.next_run_at == s.next_run_at + dt.timedelta(minutes=31)
    assert ticker.run_once(now=later).fired == []
    assert [f.run_at for f in ticker.run_once(now=resumed.next_run_at).fired] == [
        resumed.next_run_at
    ]


def test_dst_days_through_the_database(
    scheduler: taskq.Scheduler, ticker: CronTicker, tasks: taskq.Tasks, queue_name: str
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = dt.datetime(2026, 3, 27, 12, tzinfo=berlin)
    s = scheduler.schedule(R(queue_name, "t", "30 2 * * *", timezone="Europe/Berlin"), now=start)
    now = start
    fired = []
    for _ in range(5):  # the scheduler wakes exactly at each next tick
        now = scheduler.list_schedules(queue_name)[0].next_run_at
        fired += [f.run_at for f in ticker.run_once(now=now).fired]
    assert [t.astimezone(berlin).strftime("%d %H:%M%z") for t in fired] == [
        "28 02:30+0100", "29 03:00+0200", "30 02:30+0200", "31 02:30+0200", "01 02:30+0200",
    ]  # fmt: skip
    assert fired == fire_times(parse("30 2 * * *", "Europe/Berlin"), start, now)
    assert [t.run_at for t in scheduled_tasks(tasks, queue_name)] == fired
    assert s.next_run_at == fired[0]


def test_a_tick_produces_at_most_one_task(
    scheduler: taskq.Scheduler,
    ticker: CronTicker,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    s = scheduler.schedule(R(queue_name, "t", "* * * * *"))
    ticker.run_once(now=s.next_run_at)
    # Wind the schedule back by hand to the tick it already fired: the task id is
    # derived from (schedule, tick), so the database refuses a second task.
    conn.execute(
        sql.SQL("UPDATE {} SET next_run_at = %s, last_run_at = NULL WHERE id = %s").format(
            sql.Identifier(schema, "schedules")
        ),
        (s.next_run_at, s.id),
    )
    result = ticker.run_once(now=s.next_run_at)
    assert result.fired == [] and result.errors == 0
    assert len(scheduled_tasks(tasks, queue_name)) == 1
    [after] = scheduler.list_schedules(queue_name)
    assert after.next_run_at == s.next_run_at + dt.timedelta(minutes=1)
    # and the schedule itself refuses to move back behind the tick it fired
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            sql.SQL("UPDATE {} SET next_run_at = last_run_at WHERE id = %s").format(
                sql.Identifier(schema, "schedules")
            ),
            (s.id,),
        )


def test_concurrent_tickers_fire_each_tick_once(
    database_url: str, schema: str, scheduler: taskq.Scheduler, tasks: taskq.Tasks, queue_name: str
) -> None:
    schedules = [scheduler.schedule(R(queue_name, f"t{i}", "* * * * * *")) for i in range(20)]
    first = min(s.next_run_at for s in schedules)
    clock = [first + i * SECOND for i in range(6)]
    barrier = threading.Barrier(4)
    fired: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        d = Database(database_url, schema)
        t = CronTicker(d, listen=False)
        try:
            for now in clock:
                barrier.wait()
                got = t.run_once(now=now).fired
                with lock:
                    fired.extend(got)
        finally:
            t.close()
            d.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    made = scheduled_tasks(tasks, queue_name)
    keys = [(t.type, t.run_at) for t in made]
    assert len(keys) == len(set(keys)) == len(fired)
    for s in schedules:  # every tick from each schedule's first up to the last clock
        runs = sorted(t.run_at for t in made if t.type == s.type)
        assert runs == [s.next_run_at + i * SECOND for i in range(len(runs))]
        assert runs[-1] == clock[-1]


@pytest.fixture
def accounts(database_url: str, fresh_schema: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(
            sql.Identifier(fresh_schema, "accounts")))  # fmt: skip
        c.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(
            sql.Identifier(fresh_schema, "accounts")))  # fmt: skip
        for stmt in reference_ddl(
            "account_id", "bigint", f"{fresh_schema}.accounts(id)", schema=fresh_schema
        ):
            c.execute(stmt)
    return fresh_schema


def test_references_are_copied_and_deleting_the_row_cascades(
    database_url: str, accounts: str, conn: psycopg.Connection[Any]
) -> None:
    schema = accounts
    db = Database(database_url, schema)
    ticker = CronTicker(db, listen=False)
    with taskq.Scheduler(db) as s, taskq.Tasks(db) as tasks:
        one = s.schedule(R("q", "t", "* * * * *", references={"account_id": 1}))
        two = s.schedule(R("q", "t", "* * * * *", references={"account_id": 2}))
        ticker.run_once(now=max(one.next_run_at, two.next_run_at))
        made = tasks.list(queue="q")
        assert sorted(t.references["account_id"] for t in made) == [1, 2]
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = 1").format(
            sql.Identifier(schema, "accounts")))  # fmt: skip
        assert [x.id for x in s.list_schedules()] == [two.id]
        assert [t.references for t in tasks.list(queue="q")] == [{"account_id": 2}]
        with pytest.raises(taskq.NotScheduled):
            s.ensure_schedule(one)
    ticker.close()
    db.close()


def test_a_tick_that_cannot_be_enqueued_is_counted_and_passed_over(
    database_url: str, accounts: str, conn: psycopg.Connection[Any]
) -> None:
    schema = accounts
    db = Database(database_url, schema)
    metrics = Metrics()
    ticker = CronTicker(db, listen=False, metrics=metrics)
    with taskq.Scheduler(db) as s:
        broken = s.schedule(R("q", "broken", "* * * * *", references={"account_id": 1}))
        fine = s.schedule(R("q", "fine", "* * * * *"))
        conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN account_id").format(
            sql.Identifier(schema, "tasks")))  # fmt: skip
        result = ticker.run_once(now=broken.next_run_at)
        assert result.errors == 1 and [f.type for f in result.fired] == ["fine"]
        by_type = {x.type: x for x in s.list_schedules()}
        assert by_type["broken"].next_run_at == broken.next_run_at + dt.timedelta(minutes=1)
        assert by_type["broken"].last_run_at is None
        assert by_type["fine"].last_run_at == fine.next_run_at

    def value(name: str, type_: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"queue": "q", "type": type_})

    assert value("taskq_scheduler_errors_total", "broken") == 1
    assert value("taskq_scheduler_schedules_total", "fine") == 1
    assert value("taskq_scheduler_schedules_total", "broken") is None
    ticker.close()
    db.close()


def test_a_schedule_change_wakes_a_sleeping_ticker(
    db: Database, scheduler: taskq.Scheduler, queue_name: str
) -> None:
    ticker = CronTicker(db, max_sleep=120.0)
    try:
        assert ticker._listener is not None and ticker._listener.wait_connected(10)
        ticker.run_once()
        stop = threading.Event()
        woke = threading.Event()

        def sleep() -> None:
            ticker.wait(120.0, stop)
            woke.set()

        threading.Thread(target=sleep, daemon=True).start()
        scheduler.schedule(R(queue_name, "t", "0 0 1 1 *"))
        assert woke.wait(60), "NOTIFY did not wake the ticker"
        # and a stop request ends a sleep too
        woke.clear()
        ticker.run_once()
        threading.Thread(target=sleep, daemon=True).start()
        stop.set()
        assert woke.wait(60)
    finally:
        ticker.close()


def test_next_delay_is_bounded_and_follows_the_next_tick(
    db: Database, scheduler: taskq.Scheduler, queue_name: str
) -> None:
    ticker = CronTicker(db, listen=False, max_sleep=5.0)
    try:
        scheduler.schedule(R(queue_name, "t", "0 0 1 1 *"))
        ticker.run_once()
        assert 0 <= ticker.next_delay() <= 5.0
    finally:
        ticker.close()
