"""Bad input: everything a caller can get wrong is refused with a ValueError (or a
taskq error) and nothing is stored; what the Python side lets through, the database's
own constraints refuse too. Names that look like SQL are just names."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import sql

import taskq
from taskq.core.encode import MAX_SPEC_BYTES
from taskq.ops.metrics import MAX_LABEL_SETS, Metrics

NUL = "a\x00b"
INJECTION = [
    "x'; DROP TABLE tasks; --",
    'y"; DELETE FROM tasks WHERE true; --',
    "z) OR 1=1 --",
    "%s %(id)s {tasks} $1 \\",
    "ünïcødé ☃ 队列",
]


def count(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "tasks"))
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def stored(conn: psycopg.Connection[Any], schema: str) -> Iterator[None]:
    """Fails the test if it stored any task."""
    before = count(conn, schema)
    yield
    assert count(conn, schema) == before, "a refused request stored something"


# ---- NUL characters ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["queue", "type", "unique_key", "title", "user_id"])
def test_nul_in_a_string_field_is_refused(queuer: taskq.Queuer, stored: None, field: str) -> None:
    fields: dict[str, Any] = {"queue": "nul", "type": "t", field: NUL}
    with pytest.raises(ValueError, match="NUL"):
        queuer.enqueue(**fields)


@pytest.mark.parametrize(
    "spec",
    [NUL, {"k": NUL}, {NUL: 1}, [1, [2, {"deep": NUL}]], {"title": "x", "ok": ["\x00"]}],
)
def test_nul_anywhere_in_the_spec_is_refused(queuer: taskq.Queuer, stored: None, spec: Any) -> None:
    with pytest.raises(ValueError, match="NUL"):
        queuer.enqueue(queue="nul", type="t", spec=spec)


def test_escaped_backslash_u0000_text_is_not_a_nul(
    queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    spec = {"text": "\\u0000 is how JSON writes NUL"}
    t = queuer.enqueue(queue="nul-ok", type="t", spec=spec)
    assert tasks.get(t.id).spec == spec


def test_nul_in_an_enqueue_many_batch_stores_none_of_it(queuer: taskq.Queuer, stored: None) -> None:
    batch = [taskq.TaskEnqueueRequest(queue="nul", type="t", spec=i) for i in range(50)]
    batch.append(taskq.TaskEnqueueRequest(queue="nul", type="t", spec={"x": NUL}))
    with pytest.raises(ValueError, match="NUL"):
        queuer.enqueue_many(batch)


def test_nul_in_result_progress_and_error_of_a_running_task(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    queuer.enqueue(queue=queue_name, type="t", max_attempts=1)
    task = dequeuer.dequeue(queue_name, timeout=5)
    assert task is not None
    with pytest.raises(ValueError, match="NUL"):
        dequeuer.heartbeat(task, {"p": NUL})
    with pytest.raises(ValueError, match="NUL"):
        dequeuer.finish(task, result=NUL)
    assert tasks.get(task.id).status == taskq.TaskStatus.RUNNING  # nothing was written
    # A failure must never fail on its error text: NULs are replaced, the rest kept.
    dequeuer.fail(task, error=f"boom {NUL} " + "x" * 20_000)
    failed = tasks.get(task.id)
    assert failed.status == taskq.TaskStatus.FAILED
    assert failed.error is not None and "\x00" not in failed.error
    assert failed.error.startswith("boom a\\0b ")
    assert len(failed.error) <= taskq.core.defaults.MAX_ERROR_LENGTH


# ---- specs that are not JSON, or too deep ----------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        object(),
        {1, 2},
        b"bytes",
        float("nan"),
        float("inf"),
        {"k": float("-inf")},
        {(1, 2): "tuple key"},
    ],  # fmt: skip
    ids=["object", "set", "bytes", "nan", "inf", "nested-inf", "tuple-key"],
)
def test_spec_that_is_not_json_is_refused(queuer: taskq.Queuer, stored: None, spec: Any) -> None:
    with pytest.raises(ValueError, match="JSON"):
        queuer.enqueue(queue="json", type="t", spec=spec)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_deeply_nested_spec_is_refused_and_moderate_nesting_round_trips(
    queuer: taskq.Queuer, tasks: taskq.Tasks, conn: psycopg.Connection[Any], schema: str
) -> None:
    before = count(conn, schema)
    with pytest.raises(ValueError, match="nested too deeply"):
        queuer.enqueue(queue="deep", type="t", spec=_nested(100_000))
    assert count(conn, schema) == before
    spec = _nested(200)
    t = queuer.enqueue(queue="deep", type="t", spec=spec)
    assert tasks.get(t.id).spec == spec


# ---- numbers out of range: refused in Python, and by the database itself --------------


@pytest.mark.parametrize(
    "fields",
    [
        {"priority": 2**31},
        {"priority": -(2**31) - 1},
        {"priority": True},
        {"priority": 1.5},
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"max_attempts": 2**31},
        {"heartbeat_timeout": 0},
        {"heartbeat_timeout": -1},
        {"heartbeat_timeout": float("nan")},
        {"heartbeat_timeout": float("inf")},
        {"timeout": 0},
        {"retry_delay": -1},
    ],  # fmt: skip
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_numbers_out_of_range_are_refused(
    queuer: taskq.Queuer, stored: None, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        queuer.enqueue(queue="range", type="t", **fields)


def test_priority_at_the_int32_limits_is_accepted(queuer: taskq.Queuer, tasks: taskq.Tasks) -> None:
    for p in (2**31 - 1, -(2**31)):
        assert tasks.get(queuer.enqueue(queue="range-ok", type="t", priority=p).id).priority == p


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("priority", 2**31, pgerr.NumericValueOutOfRange),
        ("priority", -(2**31) - 1, pgerr.NumericValueOutOfRange),
        ("max_attempts", 0, pgerr.CheckViolation),
        ("attempts", -1, pgerr.CheckViolation),
        ("heartbeat_timeout", 0, pgerr.CheckViolation),
        ("timeout", -5, pgerr.CheckViolation),
        ("retry_delay", -1, pgerr.CheckViolation),
        ("queue", "", pgerr.CheckViolation),
        ("type", "", pgerr.CheckViolation),
        ("queue", "q" * 201, pgerr.CheckViolation),
        ("status", "bogus", pgerr.CheckViolation),
    ],
)
def test_database_refuses_raw_sql_out_of_range(
    conn: psycopg.Connection[Any], schema: str, column: str, value: Any, error: type[Exception]
) -> None:
    row = {"queue": "raw", "type": "t", column: value}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, "tasks"),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    before = count(conn, schema)
    with pytest.raises(error):
        conn.execute(query, list(row.values()))
    assert count(conn, schema) == before


# ---- names shaped like SQL ----------------------------------------------------------


@pytest.mark.parametrize("name", INJECTION)
def test_injection_shaped_queue_and_type_names_are_just_names(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, name: str
) -> None:
    queue = f"{name} {uuid.uuid4().hex[:6]}"
    t = queuer.enqueue(queue=queue, type=name, spec={"name": name})
    got = dequeuer.dequeue(queue, timeout=5)
    assert got is not None and got.id == t.id
    assert (got.queue, got.type, got.spec) == (queue, name, {"name": name})
    dequeuer.finish(got, result=name)
    assert tasks.get(t.id).result == name
    assert [x.id for x in tasks.list(queue=queue)] == [t.id]


def test_injection_shaped_reference_names_are_refused_before_sql(
    queuer: taskq.Queuer, stored: None
) -> None:
    for ref in ["x; DROP TABLE tasks; --", 'a") VALUES (1); --', "id", "status", ""]:
        with pytest.raises(taskq.InvalidReference):
            queuer.enqueue(queue="refs", type="t", references={ref: 1})


def test_a_real_reference_column_with_a_strange_name_is_quoted(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    weird = 'we"ird; DROP TABLE tasks; --'
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(
                sql.Identifier(fresh_schema, "tasks"), sql.Identifier(weird)
            )
        )
    with make.Queuer(database_url, schema=fresh_schema) as q, make.Tasks(
        database_url, schema=fresh_schema
    ) as tasks:  # fmt: skip
        t = q.enqueue(queue="refs", type="t", references={weird: "v'); --"})
        assert tasks.get(t.id).references == {weird: "v'); --"}


# ---- size ---------------------------------------------------------------------------


def test_ten_megabyte_spec_is_refused_before_any_sql(
    make: Any, stored: None, queuer: taskq.Queuer
) -> None:
    spec = {"blob": "x" * 10_000_000}
    with pytest.raises(ValueError, match=f"limit is {MAX_SPEC_BYTES}"):
        queuer.enqueue(queue="big", type="t", spec=spec)
    # Refused before SQL: a Queuer whose database cannot be reached says the same, at once.
    with make.Queuer("postgresql://taskq@127.0.0.1:1/none?connect_timeout=1", schema="x") as q:
        started = time.monotonic()
        with pytest.raises(ValueError, match="limit"):
            q.enqueue(queue="big", type="t", spec=spec)
        assert time.monotonic() - started < 5


def test_spec_just_under_the_limit_is_stored(queuer: taskq.Queuer, tasks: taskq.Tasks) -> None:
    blob = "é" * ((MAX_SPEC_BYTES - 100) // 2)  # two bytes each in UTF-8
    assert len(json.dumps({"b": blob}, ensure_ascii=False).encode()) < MAX_SPEC_BYTES
    t = queuer.enqueue(queue="big-ok", type="t", spec={"b": blob})
    assert tasks.get(t.id).spec == {"b": blob}
    with pytest.raises(ValueError, match="limit"):
        queuer.enqueue(queue="big", type="t", spec={"b": blob + "é" * 100})


# ---- 100,000 distinct queue names ---------------------------------------------------


def test_hundred_thousand_queue_names(database_url: str, fresh_schema: str) -> None:
    """Enqueue and dequeue by name keep working and metric label sets stay bounded
    (no timing assertions: this is about correctness under a flood of names)."""
    from taskq.ops.gauges import DEFAULT_MAX_QUEUES, DatabaseCollector

    metrics = Metrics()
    n = 100_000
    with (
        taskq.Queuer(database_url, schema=fresh_schema, metrics=metrics) as q,
        taskq.Dequeuer(database_url, schema=fresh_schema, metrics=metrics) as d,
    ):
        for start in range(0, n, 25_000):
            q.enqueue_many(
                [
                    taskq.TaskEnqueueRequest(queue=f"flood-{i}", type=f"type-{i % 7}")
                    for i in range(start, start + 25_000)
                ]  # fmt: skip
            )
        for i in (0, 1, 4_242, 50_000, 99_999):
            got = d.dequeue(f"flood-{i}", timeout=5)
            assert got is not None and got.queue == f"flood-{i}"
            assert d.dequeue(f"flood-{i}", timeout=0) is None  # one task per queue
            d.finish(got)
        some = d.dequeue_many([f"flood-{i}" for i in range(10, 2_010)], 5_000)
        assert sorted(t.queue for t in some) == sorted(f"flood-{i}" for i in range(10, 2_010))
        anyq = d.dequeue_many([], 500)
        assert len(anyq) == 500

        collector = DatabaseCollector(d.database, max_queues=DEFAULT_MAX_QUEUES)
        gauges = {m.name: m for m in collector.collect()}
        collector.close()

    # Every task flowed through Metrics, yet label sets stay capped.
    for family in metrics.registry.collect():
        keys = {
            (s.labels.get("queue"), s.labels.get("type"))
            for s in family.samples
            if "queue" in s.labels
        }
        assert len(keys) <= MAX_LABEL_SETS + 1, family.name
    per_queue = gauges.get("taskq_queue_tasks")
    assert per_queue is not None
    queues = {s.labels["queue"] for s in per_queue.samples}
    assert len(queues) <= DEFAULT_MAX_QUEUES + 1
