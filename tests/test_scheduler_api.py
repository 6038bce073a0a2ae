"""Scheduler API: create or update by identity, ensure, unschedule, list, pause/resume,
checking before anything is stored, and the identity held by the database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from helpers import direct_url
from psycopg import sql

import taskq
from taskq.core.names import schedules_channel
from taskq.db.ddl import reference_ddl

R = taskq.TaskScheduleRequest
UTC = dt.UTC


@pytest.fixture(scope="module")
def accounts(database_url: str, schema: str) -> str:
    """An application table in the test schema, referenced by ``account_id``."""
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(
            sql.Identifier(schema, "accounts")))  # fmt: skip
        c.execute(sql.SQL("INSERT INTO {} SELECT generate_series(1, 20)").format(
            sql.Identifier(schema, "accounts")))  # fmt: skip
        for stmt in reference_ddl("account_id", "bigint", f"{schema}.accounts(id)", schema=schema):
            c.execute(stmt)
    return "account_id"


@pytest.fixture
def scheduler(
    make: Any, database_url: str, schema: str, accounts: str
) -> Iterator[taskq.Scheduler]:
    with make.Scheduler(database_url, schema=schema) as s:
        yield s


def count_schedules(conn: psycopg.Connection[Any], schema: str, queue: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE queue = %s").format(
            sql.Identifier(schema, "schedules")), (queue,),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def test_schedule_creates_and_returns_the_row(scheduler: taskq.Scheduler, queue_name: str) -> None:
    before = dt.datetime.now(UTC)
    s = scheduler.schedule(R(queue_name, "report", "*/5 * * * *", spec={"kind": "daily"}))
    assert isinstance(s, taskq.Schedule)
    uuid.UUID(s.id)
    assert (s.queue, s.type, s.spec, s.cron_schedule) == (
        queue_name,
        "report",
        {"kind": "daily"},
        "*/5 * * * *",
    )
    assert s.timezone == "UTC" and s.references == {} and s.enabled and not s.skip_missed
    assert s.last_run_at is None
    assert before < s.next_run_at <= before + dt.timedelta(minutes=5, seconds=1)
    assert s.next_run_at.minute % 5 == 0 and s.next_run_at.second == 0
    assert scheduler.list_schedules(queue_name) == [s]


def test_calling_twice_makes_one_schedule_and_updates_it(
    scheduler: taskq.Scheduler, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    a = scheduler.schedule(R(queue_name, "sync", "0 * * * *", spec=1))
    b = scheduler.schedule(R(queue_name, "sync", "0 * * * *", spec=2, skip_missed=True))
    assert b.id == a.id and b.spec == 2 and b.skip_missed
    assert b.next_run_at == a.next_run_at  # same expression: the pending tick is kept
    c = scheduler.schedule(R(queue_name, "sync", "30 2 * * *", timezone="Europe/Berlin"))
    assert c.id == a.id and c.cron_schedule == "30 2 * * *" and c.timezone == "Europe/Berlin"
    local = c.next_run_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.strftime("%H:%M") in ("02:30", "03:00")  # 03:00 on a spring-forward day
    assert c.updated_at > a.updated_at
    assert count_schedules(conn, schema, queue_name) == 1


def test_identity_is_queue_type_and_references(
    scheduler: taskq.Scheduler, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    scheduler.schedule(R(queue_name, "t", "* * * * *"))
    scheduler.schedule(R(queue_name, "t", "* * * * *", references={"account_id": 1}))
    scheduler.schedule(R(queue_name, "t", "* * * * *", references={"account_id": 2}))
    scheduler.schedule(R(queue_name, "u", "* * * * *", references={"account_id": 1}))
    # The database's own reading of the value decides: "1" is 1 for a bigint column.
    again = scheduler.schedule(R(queue_name, "t", "*/2 * * * *", references={"account_id": "1"}))
    assert again.references == {"account_id": 1}
    assert count_schedules(conn, schema, queue_name) == 4
    listed = scheduler.list_schedules(queue_name)
    assert [(x.type, dict(x.references)) for x in listed] == [
        ("t", {}), ("t", {"account_id": 1}), ("t", {"account_id": 2}), ("u", {"account_id": 1}),
    ]  # fmt: skip
    assert listed[1].cron_schedule == "*/2 * * * *"


def test_the_database_enforces_identity(
    conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    insert = sql.SQL(
        "INSERT INTO {} (queue, type, cron_schedule, next_run_at, reference_key)"
        " VALUES (%s, 't', '* * * * *', now(), %s::jsonb)"
    ).format(sql.Identifier(schema, "schedules"))
    with conn.transaction(force_rollback=True):
        conn.execute(insert, (queue_name, '{"a": 1, "b": 2}'))
        with pytest.raises(psycopg.errors.UniqueViolation) as info:
            conn.execute(insert, (queue_name, '{"b": 2, "a": 1.0}'))
        assert info.value.diag.constraint_name == "schedules_identity_key"


def test_ensure_schedule(scheduler: taskq.Scheduler, queue_name: str) -> None:
    req = R(queue_name, "t", "0 0 * * *", references={"account_id": 3})
    with pytest.raises(taskq.NotScheduled) as info:
        scheduler.ensure_schedule(req)
    assert queue_name in str(info.value) and "account_id" in str(info.value)
    assert isinstance(info.value, taskq.TaskqError)
    s = scheduler.schedule(req)
    assert scheduler.ensure_schedule(req) is None
    # identity only: the expression does not matter, and a Schedule or keywords work too
    scheduler.ensure_schedule(R(queue_name, "t", "* * * * *", references={"account_id": 3}))
    scheduler.ensure_schedule(s)
    scheduler.ensure_schedule(queue=queue_name, type="t", references={"account_id": 3})
    with pytest.raises(taskq.NotScheduled):
        scheduler.ensure_schedule(queue=queue_name, type="t")
    scheduler.pause(s)
    scheduler.ensure_schedule(req)  # a paused schedule still exists


def test_unschedule(scheduler: taskq.Scheduler, queue_name: str) -> None:
    req = R(queue_name, "t", "* * * * *")
    scheduler.schedule(req)
    assert scheduler.unschedule(req) is True
    assert scheduler.unschedule(req) is False
    with pytest.raises(taskq.NotScheduled):
        scheduler.ensure_schedule(req)
    assert scheduler.list_schedules(queue_name) == []


def test_pause_and_resume(scheduler: taskq.Scheduler, queue_name: str) -> None:
    s = scheduler.schedule(R(queue_name, "t", "0 * * * *"))
    paused = scheduler.pause(queue=queue_name, type="t")
    assert not paused.enabled and paused.id == s.id
    # schedule() again (an application restarting) does not undo an operator's pause
    assert not scheduler.schedule(R(queue_name, "t", "0 * * * *", spec=5)).enabled
    later = s.next_run_at + dt.timedelta(hours=3, minutes=10)
    resumed = scheduler.resume(queue=queue_name, type="t", now=later)
    assert resumed.enabled
    assert resumed.next_run_at == (later + dt.timedelta(hours=1)).replace(minute=0)
    assert scheduler.resume(queue=queue_name, type="t") == resumed  # not paused: unchanged
    with pytest.raises(taskq.NotScheduled):
        scheduler.pause(queue=queue_name, type="other")
    with pytest.raises(taskq.NotScheduled):
        scheduler.resume(queue=queue_name, type="other")


@pytest.mark.parametrize(
    ("request_", "error", "text"),
    [
        (R("", "t", "* * * * *"), taskq.QueueNotSpecified, "queue"),
        (R("q", " ", "* * * * *"), taskq.TypeNotSpecified, "type"),
        (R("q", "t", "61 * * * *"), taskq.InvalidSchedule, "minute field '61'"),
        (R("q", "t", "* * * *"), taskq.InvalidSchedule, "'* * * *' has 4 field(s)"),
        (
            R("q", "t", "* * * * *", timezone="Mars/Olympus"),
            taskq.InvalidSchedule,
            "'Mars/Olympus'",
        ),
        (R("q", "t", "0 0 30 2 *"), taskq.InvalidSchedule, "never fires"),
        (R("q", "t", "* * * * *", spec={"x": {1, 2}}), taskq.InvalidTask, "JSON"),
        (R("q", "t", "* * * * *", spec="a\x00b"), taskq.InvalidTask, "NUL"),
        (R("q", "t", "* * * * *", references={"nope": 1}), taskq.InvalidReference, "'nope'"),
        (R("q", "t", "* * * * *", references={"queue": "x"}), taskq.InvalidReference, "built-in"),
        (
            R("q", "t", "* * * * *", references={"schedule_id": "x"}),
            taskq.InvalidReference,
            "built-in",
        ),
        (
            R("q", "t", "* * * * *", references={"account_id": 999}),
            taskq.InvalidReference,
            "account_id",
        ),
        (
            R("q", "t", "* * * * *", references={"account_id": "x"}),
            taskq.InvalidReference,
            "bigint",
        ),
        (R("q" * 201, "t", "* * * * *"), taskq.InvalidTask, "longer than 200"),
    ],
)
def test_bad_requests_store_nothing(
    scheduler: taskq.Scheduler, request_: R, error: type[Exception], text: str
) -> None:
    before = scheduler.list_schedules()
    with pytest.raises(error) as info:
        scheduler.schedule(request_)
    assert text in str(info.value)
    assert isinstance(info.value, ValueError)
    assert scheduler.list_schedules() == before


def test_invalid_schedule_names_the_schedule(scheduler: taskq.Scheduler) -> None:
    with pytest.raises(taskq.InvalidSchedule) as info:
        scheduler.schedule(R("reports", "daily", "25 * * * * 61"))
    assert str(info.value) == (
        "schedule (queue 'reports', type 'daily'): invalid cron expression '25 * * * * 61': "
        "second field '61' is invalid (out of range; allowed 0-59)"
    )


def test_joins_the_callers_transaction(
    make: Any, database_url: str, schema: str, queue_name: str
) -> None:
    with psycopg.connect(database_url) as c:
        s = taskq.Scheduler(c, schema=schema)
        s.schedule(R(queue_name, "t", "* * * * *"))
        assert len(s.list_schedules(queue_name)) == 1
        c.rollback()
        assert s.list_schedules(queue_name) == []
        s.schedule(R(queue_name, "t", "* * * * *"))
        c.commit()
    with make.Scheduler(database_url, schema=schema) as other:
        assert len(other.list_schedules(queue_name)) == 1


def test_changes_notify_sleeping_schedulers(
    scheduler: taskq.Scheduler, database_url: str, schema: str, queue_name: str
) -> None:
    with psycopg.connect(direct_url(database_url), autocommit=True) as listen:
        listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(schedules_channel(schema))))
        req = R(queue_name, "t", "* * * * *")
        scheduler.schedule(req)
        scheduler.pause(req)
        scheduler.resume(req)
        scheduler.unschedule(req)
        got = []
        for n in listen.notifies(timeout=10, stop_after=4):
            got.append(n.payload)
        assert got == [queue_name] * 4


def test_long_schema_names_get_a_short_channel() -> None:
    name = "s" * 63
    assert len(schedules_channel(name)) <= 63
    assert schedules_channel(name) != schedules_channel("s" * 62 + "t")
