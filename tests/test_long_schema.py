"""A schema name of 63 characters (PostgreSQL's longest identifier) works end to end:
`taskq migrate`, enqueue, a real `taskq worker` subprocess, cancel, wait (LISTEN on
the hashed channel), `taskq list`, and `taskq scheduler` firing a schedule. Every
name taskq builds from the schema (channels, functions, version table) must stay
within 63 bytes and distinct."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import Workers, run_taskq, wait_for
from psycopg import sql

import taskq
from taskq.core.names import MAX_IDENTIFIER, events_channel, schedules_channel, wake_channel

pytestmark = pytest.mark.faces("sync")


@pytest.fixture
def long_schema(database_url: str) -> Iterator[str]:
    name = f"long_{uuid.uuid4().hex}_"
    name += "x" * (MAX_IDENTIFIER - len(name))
    assert len(name) == 63
    r = run_taskq(database_url, name, "migrate")
    assert r.returncode == 0, r.stderr
    yield name
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_channels_of_a_63_character_schema_are_short_and_distinct() -> None:
    a, b = "a" * 63, "a" * 62 + "b"
    names = {f(s) for s in (a, b) for f in (wake_channel, events_channel, schedules_channel)}
    assert len(names) == 6
    assert all(len(n.encode()) <= MAX_IDENTIFIER for n in names)


def test_a_63_character_schema_end_to_end(database_url: str, long_schema: str) -> None:
    schema = long_schema
    queue = f"long-{uuid.uuid4().hex[:6]}"
    workers = Workers(database_url, schema)
    try:
        with (
            taskq.Queuer(database_url, schema=schema) as q,
            taskq.Tasks(database_url, schema=schema) as t,
            taskq.Scheduler(database_url, schema=schema) as s,
        ):
            worker = workers.start(queue=queue)
            done = t.wait(q.enqueue(queue=queue, type="echo", spec={"n": 1}).id, timeout=60)
            assert done.status == taskq.TaskStatus.FINISHED, workers.output(worker)

            long = q.enqueue(queue=queue, type="until_cancelled")
            wait_for(lambda: t.get(long.id).progress is not None, timeout=60,
                     what="the task running")  # fmt: skip
            t.cancel(long.id)
            assert t.wait(long.id, timeout=60).status == taskq.TaskStatus.CANCELLED

            listed = run_taskq(database_url, schema, "list", "--queue", queue)
            assert listed.returncode == 0, listed.stderr
            assert done.id in listed.stdout and long.id in listed.stdout
            assert [x.id for x in t.list(queue=queue)] == [long.id, done.id]

            s.schedule(taskq.TaskScheduleRequest(queue, "echo", "* * * * * *",
                                                 spec={"from": "cron"}))  # fmt: skip
            scheduler = workers.start_command("scheduler")

            def fired() -> list[taskq.Task]:
                return [x for x in t.list(queue=queue, status="finished")
                        if x.spec == {"from": "cron"}]  # fmt: skip

            wait_for(fired, timeout=60, what="a scheduled task run by the worker")
            for p in (scheduler, worker):
                code, out = workers.stop(p)
                assert code == 0, out
                assert "Traceback" not in out, out
    finally:
        workers.close()
