"""Queuer: enqueue, enqueue_many, validation, unique keys, all-or-nothing batches.

Every refused request is also checked to have stored nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskq
from taskq.core.encode import MAX_SPEC_BYTES
from taskq.core.types import INT32_MAX, INT32_MIN

R = taskq.TaskEnqueueRequest


def count(conn: psycopg.Connection[Any], schema: str, queue: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE queue = %s").format(sql.Identifier(schema, "tasks")),
        (queue,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def count_like(conn: psycopg.Connection[Any], schema: str, prefix: str) -> int:
    """Tasks whose queue starts with ``prefix`` (catches over-long names too)."""
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE starts_with(queue, %s)").format(
            sql.Identifier(schema, "tasks")
        ),
        (prefix,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def db_now(conn: psycopg.Connection[Any]) -> dt.datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


# ---- enqueue ------------------------------------------------------------------------


def test_enqueue_returns_the_stored_task_with_defaults(
    queuer: taskq.Queuer, tasks: taskq.Tasks, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    before = db_now(conn)
    task = queuer.enqueue(R(queue_name, "email", {"to": "a@example.com", "n": [1, 2.5, None]}))
    after = db_now(conn)

    assert task.queue == queue_name
    assert task.type == "email"
    assert task.spec == {"to": "a@example.com", "n": [1, 2.5, None]}
    assert task.status is taskq.TaskStatus.WAITING
    assert task.progress is None and task.result is None and task.error is None
    assert task.references == {}
    assert task.priority == 0
    assert task.attempts == 0
    assert task.max_attempts == 1
    assert task.heartbeat_timeout == 60.0
    for stamp in (task.run_at, task.created_at, task.updated_at):
        assert stamp.tzinfo is not None
        assert before <= stamp <= after
    assert task.started_at is None and task.finished_at is None
    assert task.last_heartbeat_at is None
    assert task.lease is None
    # the id is a UUID string and the row really is in the database
    assert str(__import__("uuid").UUID(task.id)) == task.id
    assert tasks.get(task.id) == task


def test_enqueue_stores_every_request_field(queuer: taskq.Queuer, queue_name: str) -> None:
    run_at = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    task = queuer.enqueue(
        R(
            queue_name,
            "report",
            spec=["a", 1],
            priority=-7,
            run_at=run_at,
            max_attempts=5,
            heartbeat_timeout=2.5,
            unique_key=f"k-{queue_name}",
            title="Monthly report",
            user_id="user-1",
        )
    )
    assert task.spec == ["a", 1]
    assert task.priority == -7
    assert task.run_at == run_at
    assert task.max_attempts == 5
    assert task.heartbeat_timeout == 2.5
    assert task.unique_key == f"k-{queue_name}"
    assert task.title == "Monthly report"
    assert task.user_id == "user-1"


def test_enqueue_keyword_form(queuer: taskq.Queuer, queue_name: str) -> None:
    task = queuer.enqueue(queue=queue_name, type="kw", spec={"x": 1}, priority=3)
    assert (task.queue, task.type, task.spec, task.priority) == (queue_name, "kw", {"x": 1}, 3)


def test_enqueue_refuses_a_request_and_keywords_together(
    queuer: taskq.Queuer, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    with pytest.raises(TypeError):
        queuer.enqueue(R(queue_name, "t"), priority=1)
    assert count(conn, schema, queue_name) == 0


@pytest.mark.parametrize(
    "spec",
    [None, 0, -1.5, True, "text", [], {}, {"nested": {"deep": [1, {"x": None}]}}, "é€😀"],
)
def test_spec_round_trips_any_json_value(queuer: taskq.Queuer, queue_name: str, spec: Any) -> None:
    assert queuer.enqueue(R(queue_name, "t", spec)).spec == spec


def test_spec_with_literal_backslash_u0000_text_is_not_a_nul(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    # The six characters \u0000 (a real backslash), not a NUL character: storable.
    text = "C:\\u0000dir \\\\u0000 end\\"
    task = queuer.enqueue(R(queue_name, "t", {"path": text, "k\\u0000": 1}))
    assert tasks.get(task.id).spec == {"path": text, "k\\u0000": 1}


# ---- enqueue_many ---------------------------------------------------------------------


def test_enqueue_many_returns_tasks_in_request_order(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    requests = [R(queue_name, f"t{i}", {"i": i}, priority=(i * 7) % 5 - 2) for i in range(500)]
    out = queuer.enqueue_many(requests)
    assert [t.spec for t in out] == [{"i": i} for i in range(500)]
    assert [t.type for t in out] == [f"t{i}" for i in range(500)]
    assert [t.priority for t in out] == [r.priority for r in requests]
    assert len({t.id for t in out}) == 500
    assert len(tasks.list(queue=queue_name, limit=1000)) == 500


def test_enqueue_many_of_nothing_stores_nothing(queuer: taskq.Queuer) -> None:
    assert queuer.enqueue_many([]) == []


def test_enqueue_many_accepts_a_generator(queuer: taskq.Queuer, queue_name: str) -> None:
    out = queuer.enqueue_many(R(queue_name, "gen", i) for i in range(3))
    assert [t.spec for t in out] == [0, 1, 2]


def test_enqueue_many_is_all_or_nothing_on_a_bad_request(
    queuer: taskq.Queuer, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    good = [R(queue_name, "ok", i) for i in range(10)]
    with pytest.raises(ValueError):
        queuer.enqueue_many([*good, R(queue_name, "bad", {"x": math.nan})])
    with pytest.raises(taskq.TypeNotSpecified):
        queuer.enqueue_many([*good, R(queue_name, "")])
    assert count(conn, schema, queue_name) == 0


def test_enqueue_many_is_all_or_nothing_on_a_unique_key_clash_inside_the_batch(
    queuer: taskq.Queuer, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    key = f"dup-{queue_name}"
    batch = [
        R(queue_name, "a", 1),
        R(queue_name, "b", 2, unique_key=key),
        R(queue_name, "c", 3),
        R(queue_name, "d", 4, unique_key=key),
    ]
    with pytest.raises(taskq.TaskAlreadyExists) as e:
        queuer.enqueue_many(batch)
    assert key in str(e.value)
    assert count(conn, schema, queue_name) == 0


def test_enqueue_many_is_all_or_nothing_on_a_clash_with_a_stored_task(
    queuer: taskq.Queuer, conn: psycopg.Connection[Any], schema: str, queue_name: str
) -> None:
    key = f"held-{queue_name}"
    queuer.enqueue(R(queue_name, "first", unique_key=key))
    with pytest.raises(taskq.TaskAlreadyExists):
        queuer.enqueue_many(
            [R(queue_name, "x", i) for i in range(5)] + [R(queue_name, "y", unique_key=key)]
        )
    assert count(conn, schema, queue_name) == 1


# ---- unique keys -----------------------------------------------------------------------


def test_unique_key_is_refused_while_waiting_or_running_and_free_once_finished(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    key = f"u-{queue_name}"
    first = queuer.enqueue(R(queue_name, "t", unique_key=key))
    with pytest.raises(taskq.TaskAlreadyExists) as e:
        queuer.enqueue(R(queue_name, "t", unique_key=key))
    assert key in str(e.value) and queue_name in str(e.value)
    assert isinstance(e.value, taskq.TaskqError)

    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None and claimed.id == first.id
    with pytest.raises(taskq.TaskAlreadyExists):
        queuer.enqueue(R(queue_name, "t", unique_key=key))

    dequeuer.finish(claimed, None, "done")
    second = queuer.enqueue(R(queue_name, "t", unique_key=key))
    assert second.id != first.id
    assert [t.id for t in tasks.list(queue=queue_name)] == [second.id, first.id]


def test_unique_key_is_free_again_after_failure_or_cancel(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    key = f"f-{queue_name}"
    queuer.enqueue(R(queue_name, "t", unique_key=key))
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None
    dequeuer.fail(claimed, None, "boom")
    waiting = queuer.enqueue(R(queue_name, "t", unique_key=key))
    tasks.cancel(waiting.id)
    queuer.enqueue(R(queue_name, "t", unique_key=key))


# ---- validation: nothing stored ----------------------------------------------------------


class NotJson:
    pass


def deeply_nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# case -> the fields of a request for queue ``q`` (built when the case runs: some are big)
BAD: dict[str, Callable[[str], dict[str, Any]]] = {
    "not json: object": lambda q: {"queue": q, "type": "t", "spec": NotJson()},
    "not json: set": lambda q: {"queue": q, "type": "t", "spec": {1, 2}},
    "not json: bytes": lambda q: {"queue": q, "type": "t", "spec": b"x"},
    "not json: non-string key": lambda q: {"queue": q, "type": "t", "spec": {(1, 2): "x"}},
    "NaN": lambda q: {"queue": q, "type": "t", "spec": {"x": math.nan}},
    "infinity": lambda q: {"queue": q, "type": "t", "spec": [math.inf]},
    "NUL in spec value": lambda q: {"queue": q, "type": "t", "spec": {"x": "a\x00b"}},
    "NUL in spec key": lambda q: {"queue": q, "type": "t", "spec": {"a\x00": 1}},
    "NUL after an escaped backslash": lambda q: {"queue": q, "type": "t", "spec": "\\\x00"},
    "NUL in queue": lambda q: {"queue": q + "\x00", "type": "t"},
    "NUL in type": lambda q: {"queue": q, "type": "t\x00"},
    "NUL in title": lambda q: {"queue": q, "type": "t", "title": "a\x00"},
    "NUL in unique_key": lambda q: {"queue": q, "type": "t", "unique_key": "\x00"},
    "NUL in user_id": lambda q: {"queue": q, "type": "t", "user_id": "u\x00"},
    "priority above int32": lambda q: {"queue": q, "type": "t", "priority": INT32_MAX + 1},
    "priority below int32": lambda q: {"queue": q, "type": "t", "priority": INT32_MIN - 1},
    "priority not an int": lambda q: {"queue": q, "type": "t", "priority": 1.5},
    "max_attempts 0": lambda q: {"queue": q, "type": "t", "max_attempts": 0},
    "max_attempts negative": lambda q: {"queue": q, "type": "t", "max_attempts": -3},
    "heartbeat_timeout 0": lambda q: {"queue": q, "type": "t", "heartbeat_timeout": 0},
    "heartbeat_timeout negative": lambda q: {"queue": q, "type": "t", "heartbeat_timeout": -1.0},
    "heartbeat_timeout NaN": lambda q: {"queue": q, "type": "t", "heartbeat_timeout": math.nan},
    "naive run_at": lambda q: {"queue": q, "type": "t", "run_at": dt.datetime(2030, 1, 1, 12, 0)},
    "run_at not a datetime": lambda q: {"queue": q, "type": "t", "run_at": "2030-01-01"},
    "queue too long": lambda q: {"queue": q + "x" * 300, "type": "t"},
    "spec over the size limit": lambda q: {"queue": q, "type": "t", "spec": "x" * MAX_SPEC_BYTES},
    "spec over the size limit in bytes, not characters": lambda q: {
        "queue": q,
        "type": "t",
        "spec": "é" * (MAX_SPEC_BYTES // 2 + 16),
    },
    "spec nested too deeply": lambda q: {"queue": q, "type": "t", "spec": deeply_nested(100_000)},
    "lone surrogate in spec": lambda q: {"queue": q, "type": "t", "spec": {"x": "\ud800"}},
    "lone surrogate in title": lambda q: {"queue": q, "type": "t", "title": "\udfff"},
    "lone surrogate in queue": lambda q: {"queue": q + "\ud800", "type": "t"},
    "lone surrogate in type": lambda q: {"queue": q, "type": "\ud800"},
}
BAD_CASES = list(BAD)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_request_raises_value_error_and_stores_nothing(
    queuer: taskq.Queuer,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
    case: str,
) -> None:
    fields = BAD[case](queue_name)
    with pytest.raises(ValueError) as e:
        queuer.enqueue(**fields)
    assert isinstance(e.value, taskq.TaskqError), repr(e.value)
    # also refused as part of a batch, taking the good requests down with it
    with pytest.raises(ValueError):
        queuer.enqueue_many([R(queue_name, "good"), R(**fields)])
    assert count_like(conn, schema, queue_name) == 0


def test_nul_in_spec_message_says_postgresql_cannot_store_it(
    queuer: taskq.Queuer, queue_name: str
) -> None:
    with pytest.raises(ValueError, match="NUL") as e:
        queuer.enqueue(R(queue_name, "nul-type", {"x": "\x00"}))
    assert "PostgreSQL" in str(e.value)
    assert queue_name in str(e.value) and "nul-type" in str(e.value)


def test_not_json_message_names_queue_and_type(queuer: taskq.Queuer, queue_name: str) -> None:
    with pytest.raises(ValueError, match="JSON") as e:
        queuer.enqueue(R(queue_name, "odd-type", NotJson()))
    assert queue_name in str(e.value) and "odd-type" in str(e.value)


@pytest.mark.parametrize("queue", ["", "   ", None])
def test_empty_queue_raises_queue_not_specified(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue: Any
) -> None:
    n = len(tasks.list(type="orphan-type", limit=10))
    with pytest.raises(taskq.QueueNotSpecified) as e:
        queuer.enqueue(R(queue, "orphan-type"))
    assert isinstance(e.value, ValueError) and isinstance(e.value, taskq.TaskqError)
    assert "orphan-type" in str(e.value)
    assert len(tasks.list(type="orphan-type", limit=10)) == n


@pytest.mark.parametrize("type_", ["", "  ", None])
def test_empty_type_raises_type_not_specified(
    queuer: taskq.Queuer, conn: psycopg.Connection[Any], schema: str, queue_name: str, type_: Any
) -> None:
    with pytest.raises(taskq.TypeNotSpecified) as e:
        queuer.enqueue(R(queue_name, type_))
    assert isinstance(e.value, ValueError) and isinstance(e.value, taskq.TaskqError)
    assert queue_name in str(e.value)
    assert count(conn, schema, queue_name) == 0


def test_boundary_values_are_accepted(queuer: taskq.Queuer, queue_name: str) -> None:
    hi = queuer.enqueue(R(queue_name, "t", priority=INT32_MAX, heartbeat_timeout=0.001))
    lo = queuer.enqueue(R(queue_name, "t", priority=INT32_MIN, max_attempts=1))
    assert (hi.priority, lo.priority) == (INT32_MAX, INT32_MIN)
    assert hi.heartbeat_timeout == 0.001
    # a spec just under the limit (its JSON text is the string plus two quotes)
    big = queuer.enqueue(R(queue_name, "t", "y" * (MAX_SPEC_BYTES - 2)))
    assert len(big.spec) == MAX_SPEC_BYTES - 2


def test_spec_limit_is_configurable_per_queuer(
    make: Any, database_url: str, schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    with make.Queuer(database_url, schema=schema, max_spec_bytes=100) as small:
        small.enqueue(R(queue_name, "t", "a" * 90))
        with pytest.raises(ValueError, match="100"):
            small.enqueue(R(queue_name, "t", "a" * 200))
    assert count(conn, schema, queue_name) == 1


def test_injection_shaped_queue_and_type_are_stored_verbatim(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    queue = f"{queue_name}'); DROP TABLE tasks; --"
    type_ = 'x"; DELETE FROM tasks; -- %s %(id)s {tasks}'
    task = queuer.enqueue(R(queue, type_, {"sql": "'; DROP SCHEMA public; --"}))
    assert tasks.get(task.id).queue == queue
    assert [t.id for t in tasks.list(queue=queue, type=type_)] == [task.id]
    claimed = dequeuer.dequeue(queue, timeout=0)
    assert claimed is not None and claimed.id == task.id and claimed.type == type_
    dequeuer.finish(claimed)
    assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.tasks",)).fetchone() == (
        True,
    )
