"""One core, two faces (contract §7): the same request stores the same row whichever
face enqueued it, and a row reads the same through either face.

Each request is enqueued by ``taskq.Queuer`` and by ``taskq.aio.AsyncQueuer``; the two
rows are compared column by column with SQL, leaving out only what must differ (the
ids, the enqueue order, the times of the insert, and the ids a chain or group makes).
Both rows are read back with ``Tasks.get`` and ``AsyncTasks.get``, which must agree.
A request with a ``unique_key`` is enqueued by one face, read, deleted, then enqueued
by the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import faces
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import taskq
from taskq.db.ddl import reference_ddl

R = taskq.TaskEnqueueRequest
S = taskq.TaskScheduleRequest

MUST_DIFFER = {"id", "seq", "created_at", "updated_at"}
"""Columns that differ between two enqueues of the same request."""

WORKFLOW_IDS = {"chain_id", "depends_on", "group_id"}
"""Columns that hold the ids a chain or group makes for itself."""


@dataclasses.dataclass
class Faces:
    url: str
    schema: str
    conn: psycopg.Connection[Any]
    queuer: Any
    aqueuer: Any
    tasks: Any
    atasks: Any
    dequeuer: Any
    adequeuer: Any
    scheduler: Any
    ascheduler: Any

    def row(self, task_id: str) -> dict[str, Any]:
        cur = self.conn.cursor(row_factory=dict_row)
        got = cur.execute(
            sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(self.schema, "tasks")),
            (task_id,),
        ).fetchone()
        assert got is not None, f"task {task_id} is not stored"
        return got

    def delete(self, *ids: str) -> None:
        self.conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(self.schema, "tasks")
            ),
            (list(ids),),
        )

    def read_both(self, task_id: str) -> taskq.Task:
        """The task through both faces, which must agree; and it must be the row."""
        through_sync = self.tasks.get(task_id)
        through_async = self.atasks.get(task_id)
        assert through_async == through_sync
        assert type(through_async) is type(through_sync) is taskq.Task
        return through_sync  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def both(database_url: str, schema: str) -> Iterator[Faces]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(
                sql.Identifier(schema, "accounts")
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT generate_series(1, 9)").format(
                sql.Identifier(schema, "accounts")
            )
        )
        for stmt in reference_ddl("account_id", "bigint", f"{schema}.accounts(id)", schema=schema):
            conn.execute(stmt)
        objs = {
            f"{prefix}{name.lower()}": faces.build(face, name, database_url, schema=schema)
            for face, prefix in (("sync", ""), ("async", "a"))
            for name in faces.NAMES
        }
        f = Faces(database_url, schema, conn, **objs)
        try:
            yield f
        finally:
            for o in objs.values():
                o.close()


def without(row: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def task_without(task: taskq.Task, keys: set[str]) -> dict[str, Any]:
    return without({f.name: getattr(task, f.name) for f in dataclasses.fields(task)}, keys)


RUN_AT = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))

REQUESTS = {
    "minimal": lambda q: R(q, "t"),
    "everything": lambda q: R(
        q,
        "report",
        spec={"nested": {"list": [1, 2.5, None, True, "é€😀"]}, "empty": {}, "n": -0.0},
        references={"account_id": 3},
        priority=-17,
        run_at=RUN_AT,
        max_attempts=4,
        heartbeat_timeout=12.5,
        unique_key=f"key-{q}",
        title="Monthly report ✓",
        user_id="user-42",
        timeout=30.0,
        retry_delay=2.5,
        on_success=R(
            q + "-next",
            "notify",
            spec=["done", {"x": 1}],
            references={"account_id": 4},
            priority=3,
            max_attempts=2,
            title="then this",
        ),
    ),
    "scalar spec and a reference as text": lambda q: R(
        q, "t", spec="just text", references={"account_id": "5"}, run_at=RUN_AT
    ),
    "extremes": lambda q: R(
        q, "t", spec=[], priority=2**31 - 1, heartbeat_timeout=0.001, run_at=RUN_AT
    ),
}


@pytest.mark.parametrize("case", list(REQUESTS))
@pytest.mark.parametrize("first", ["sync", "async"], ids=["sync-first", "async-first"])
def test_the_same_request_stores_the_same_row_through_either_face(
    both: Faces, queue_name: str, case: str, first: str
) -> None:
    request = REQUESTS[case](queue_name)
    order = [both.queuer, both.aqueuer] if first == "sync" else [both.aqueuer, both.queuer]
    rows, returned, read = [], [], []
    for queuer in order:
        task = queuer.enqueue(request)
        rows.append(both.row(task.id))
        returned.append(task)
        read.append(both.read_both(task.id))
        assert read[-1] == task  # what enqueue returned is what is stored
        both.delete(task.id)  # frees the unique key for the other face

    differ = set(MUST_DIFFER)
    if request.run_at is None:
        differ.add("run_at")  # the database clock at each insert
        for row in rows:
            assert row["run_at"] == row["created_at"]
    assert without(rows[0], differ) == without(rows[1], differ)
    assert task_without(returned[0], differ) == task_without(returned[1], differ)
    assert task_without(read[0], differ) == task_without(read[1], differ)
    if request.references:
        assert rows[0]["account_id"] == int(request.references["account_id"])


def test_batches_chains_and_groups_store_the_same_rows(both: Faces, queue_name: str) -> None:
    batch = [REQUESTS[c](f"{queue_name}-{c[:3]}") for c in REQUESTS if c != "everything"]
    links = [R(queue_name, "a", 1, references={"account_id": 1}), R(queue_name, "b", 2)]
    members = [R(queue_name, "m", i, priority=i) for i in range(3)]
    after = R(queue_name, "after", {"all": True}, references={"account_id": 2})

    def stored(queuer: Any) -> list[dict[str, Any]]:
        ids = [t.id for t in queuer.enqueue_many(batch)]
        ids += list(queuer.enqueue_chain(links).task_ids)
        ids += list(queuer.enqueue_group(members, on_complete=after).task_ids)
        rows = [both.row(i) for i in ids]
        for i in ids:
            both.read_both(i)
        both.delete(*ids)
        return rows

    differ = MUST_DIFFER | WORKFLOW_IDS | {"run_at"}
    sync_rows, async_rows = stored(both.queuer), stored(both.aqueuer)
    assert [without(r, differ) for r in sync_rows] == [without(r, differ) for r in async_rows]
    # the workflow ids differ, but they are laid out the same way
    for rows in (sync_rows, async_rows):
        chain = rows[len(batch) : len(batch) + 2]
        assert chain[0]["chain_id"] == chain[1]["chain_id"] is not None
        assert chain[1]["depends_on"] == chain[0]["id"] and chain[0]["depends_on"] is None
        group = rows[len(batch) + 2 :]
        assert len({r["group_id"] for r in group}) == 1 and group[0]["group_id"] is not None


def test_a_claim_reads_the_same_through_either_face(both: Faces, queue_name: str) -> None:
    """A task enqueued by one face and claimed and ended by the other."""
    for queuer, dequeuer in ((both.queuer, both.adequeuer), (both.aqueuer, both.dequeuer)):
        task = queuer.enqueue(R(queue_name, "t", 1))
        claimed = dequeuer.dequeue(queue_name, timeout=0)
        assert claimed is not None and claimed.id == task.id
        assert both.read_both(task.id) == claimed
        dequeuer.heartbeat(claimed, {"half": 0.5})
        dequeuer.finish(claimed, None, {"ok": [1, 2]})
        done = both.read_both(task.id)
        assert (done.status, done.progress, done.result) == (
            taskq.TaskStatus.FINISHED,
            {"half": 0.5},
            {"ok": [1, 2]},
        )
        assert both.tasks.result(task.id) == both.atasks.result(task.id) == {"ok": [1, 2]}
        assert both.tasks.list(queue=queue_name) == both.atasks.list(queue=queue_name)


def test_the_same_schedule_request_stores_the_same_schedule(both: Faces, queue_name: str) -> None:
    now = dt.datetime(2030, 3, 30, 23, 59, 30, tzinfo=dt.UTC)
    request = S(
        queue_name,
        "nightly",
        "30 2 * * *",
        spec={"keep": [7, "days"]},
        references={"account_id": 6},
        timezone="Europe/Berlin",
        skip_missed=True,
    )
    made = []
    for scheduler in (both.scheduler, both.ascheduler):
        s = scheduler.schedule(request, now=now)
        row = (
            both.conn.cursor(row_factory=dict_row)
            .execute(
                sql.SQL("SELECT * FROM {} WHERE id = %s").format(
                    sql.Identifier(both.schema, "schedules")
                ),
                (s.id,),
            )
            .fetchone()
        )
        assert both.scheduler.list_schedules(queue_name) == both.ascheduler.list_schedules(
            queue_name
        ) == [s]  # fmt: skip
        assert scheduler.unschedule(request) is True
        made.append((s, row))
    (s1, row1), (s2, row2) = made
    differ = {"id", "created_at", "updated_at"}
    assert without(row1, differ) == without(row2, differ)
    assert task_without(s1, differ) == task_without(s2, differ)  # type: ignore[arg-type]
