"""Fenced writes and the rescue.

Staleness is made by moving ``last_heartbeat_at`` into the past with SQL (the
database clock decides), never by sleeping. A write given the claimed Task acts only
on that claim: after a rescue it raises LeaseLost and changes nothing. No final
status is ever overwritten.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskq

R = taskq.TaskEnqueueRequest


def make_stale(conn: psycopg.Connection[Any], schema: str, *ids: str) -> None:
    """Move the last heartbeat of ``ids`` an hour into the past."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET last_heartbeat_at = now() - interval '1 hour' WHERE id = ANY(%s::uuid[])"
        ).format(sql.Identifier(schema, "tasks")),
        (list(ids),),
    )


def running(queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue: str, **kw: Any) -> taskq.Task:
    queuer.enqueue(R(queue, "t", **kw))
    claimed = dequeuer.dequeue(queue, timeout=0)
    assert claimed is not None
    return claimed


WRITES = {
    "heartbeat": lambda d, t: d.heartbeat(t, {"stale": True}),
    "finish": lambda d, t: d.finish(t, {"stale": True}, "stale result"),
    "fail": lambda d, t: d.fail(t, {"stale": True}, "stale error"),
    "fail-final": lambda d, t: d.fail(t, {"stale": True}, "stale error", final=True),
}


# ---- rescue ---------------------------------------------------------------------------


def test_rescue_returns_a_stale_task_to_waiting_when_attempts_remain(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=2)
    assert dequeuer.rescue() == 0  # a fresh heartbeat is not stale
    make_stale(conn, schema, claimed.id)
    assert dequeuer.rescue() == 1
    back = tasks.get(claimed.id)
    assert back.status is taskq.TaskStatus.WAITING
    assert back.attempts == 1  # the crashed attempt counts
    assert back.lease is None
    assert back.error is not None and "heartbeat" in back.error
    again = dequeuer.dequeue(queue_name, timeout=0)
    assert again is not None and again.id == claimed.id and again.attempts == 2


def test_rescue_fails_a_stale_task_without_attempts_left(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=1)
    make_stale(conn, schema, claimed.id)
    assert dequeuer.rescue() == 1
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED
    assert failed.finished_at is not None
    assert failed.error is not None
    assert "rescued" in failed.error and "heartbeat" in failed.error
    assert dequeuer.dequeue(queue_name, timeout=0) is None


def test_rescue_respects_each_tasks_own_heartbeat_timeout(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    patient = running(queuer, dequeuer, queue_name, heartbeat_timeout=7200.0, max_attempts=2)
    hasty = running(queuer, dequeuer, queue_name, heartbeat_timeout=60.0, max_attempts=2)
    make_stale(conn, schema, patient.id, hasty.id)  # both silent for an hour
    assert dequeuer.rescue() == 1
    assert tasks.get(patient.id).status is taskq.TaskStatus.RUNNING
    assert tasks.get(hasty.id).status is taskq.TaskStatus.WAITING


def test_rescue_never_touches_final_statuses(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    finished = running(queuer, dequeuer, queue_name, max_attempts=3)
    dequeuer.finish(finished, None, "ok")
    failed = running(queuer, dequeuer, queue_name, max_attempts=3)
    dequeuer.fail(failed, None, "no", final=True)
    cancelled = running(queuer, dequeuer, queue_name, max_attempts=3)
    tasks.cancel(cancelled.id)
    ids = (finished.id, failed.id, cancelled.id)
    make_stale(conn, schema, *ids)
    before = [tasks.get(i) for i in ids]
    assert dequeuer.rescue() == 0
    assert [tasks.get(i) for i in ids] == before


# ---- fencing --------------------------------------------------------------------------


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("attempts", [1, 2], ids=["rescued-to-failed", "rescued-to-waiting"])
def test_write_with_the_old_claim_after_rescue_raises_lease_lost_and_changes_nothing(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
    write: str,
    attempts: int,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=attempts)
    make_stale(conn, schema, claimed.id)
    assert dequeuer.rescue() == 1
    after_rescue = tasks.get(claimed.id)
    with pytest.raises(taskq.LeaseLost) as e:
        WRITES[write](dequeuer, claimed)
    assert claimed.id in str(e.value)
    assert tasks.get(claimed.id) == after_rescue


@pytest.mark.parametrize("write", list(WRITES))
def test_write_with_the_old_claim_after_another_claim_raises_lease_lost(
    make: Any,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    database_url: str,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
    write: str,
) -> None:
    stalled = running(queuer, dequeuer, queue_name, max_attempts=3)
    make_stale(conn, schema, stalled.id)
    assert dequeuer.rescue() == 1
    with make.Dequeuer(database_url, schema=schema) as other_worker:
        current = other_worker.dequeue(queue_name, timeout=0)
        assert current is not None and current.id == stalled.id
        assert current.lease != stalled.lease
        other_worker.heartbeat(current, {"mine": 1})
        snapshot = tasks.get(stalled.id)

        with pytest.raises(taskq.LeaseLost):
            WRITES[write](dequeuer, stalled)
        assert tasks.get(stalled.id) == snapshot

        # the worker that holds the claim now is unaffected and finishes it
        other_worker.finish(current, {"mine": 2}, "the real result")
    done = tasks.get(stalled.id)
    assert done.status is taskq.TaskStatus.FINISHED
    assert done.result == "the real result" and done.progress == {"mine": 2}
    assert done.attempts == 2


def test_a_failed_and_retried_claim_is_fenced_from_its_old_worker(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=3, retry_delay=0)
    dequeuer.fail(claimed, None, "first try")
    again = dequeuer.dequeue(queue_name, timeout=0)
    assert again is not None and again.id == claimed.id
    with pytest.raises(taskq.LeaseLost):
        dequeuer.finish(claimed, None, "from the first attempt")
    dequeuer.finish(again, None, "from the second attempt")
    assert tasks.get(claimed.id).result == "from the second attempt"


def test_batch_finish_fences_each_outcome(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    fresh = running(queuer, dequeuer, queue_name)
    stale = running(queuer, dequeuer, queue_name, max_attempts=2)
    make_stale(conn, schema, stale.id)
    assert dequeuer.rescue() == 1
    errors = dequeuer.finish_many(
        [taskq.Outcome(fresh, result="ok"), taskq.Outcome(stale, result="late")]
    )
    assert set(errors) == {stale.id} and isinstance(errors[stale.id], taskq.LeaseLost)
    assert tasks.get(fresh.id).status is taskq.TaskStatus.FINISHED
    assert tasks.get(stale.id).status is taskq.TaskStatus.WAITING


# ---- final statuses are never overwritten ------------------------------------------------


def test_finish_twice_keeps_the_first_result(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.finish(claimed, None, "first")
    done = tasks.get(claimed.id)
    with pytest.raises(taskq.TaskFinished):
        dequeuer.finish(claimed, None, "second")
    with pytest.raises(taskq.TaskFinished):
        dequeuer.finish(claimed.id, None, "third")
    assert tasks.get(claimed.id) == done


def test_fail_after_finish_changes_nothing(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=5)
    dequeuer.finish(claimed, None, "done")
    done = tasks.get(claimed.id)
    for final in (False, True):
        with pytest.raises(taskq.TaskFinished):
            dequeuer.fail(claimed, None, "too late", final=final)
    assert tasks.get(claimed.id) == done


def test_finish_after_final_failure_changes_nothing(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(claimed, None, "broken")
    failed = tasks.get(claimed.id)
    with pytest.raises(taskq.TaskFinished):
        dequeuer.finish(claimed, None, "too late")
    assert tasks.get(claimed.id) == failed


def test_rescue_after_finish_changes_nothing(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=3)
    dequeuer.finish(claimed, None, "done")
    make_stale(conn, schema, claimed.id)
    done = tasks.get(claimed.id)
    assert dequeuer.rescue() == 0
    assert tasks.get(claimed.id) == done


# ---- many rescuers ---------------------------------------------------------------------


def test_two_rescuers_at_once_never_rescue_a_task_twice(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    n = 400
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Dequeuer(database_url, schema=fresh_schema) as dequeuer,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        queuer.enqueue_many([R("rescue", "t", i, max_attempts=3) for i in range(n)])
        claimed = dequeuer.dequeue_many(["rescue"], n)
        assert len(claimed) == n
        make_stale(conn, fresh_schema, *(t.id for t in claimed))

        rescuers = [make.Dequeuer(database_url, schema=fresh_schema) for _ in range(2)]
        barrier = threading.Barrier(len(rescuers))
        counts: list[int] = []

        def rescue(d: taskq.Dequeuer) -> None:
            barrier.wait()
            counts.append(d.rescue(limit=7))  # small batches: many chances to collide

        threads = [threading.Thread(target=rescue, args=(d,)) for d in rescuers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for d in rescuers:
            d.close()
        assert len(counts) == 2
        assert sum(counts) == n
        rows = conn.execute(
            sql.SQL("SELECT status, attempts, count(*) FROM {} GROUP BY 1, 2").format(
                sql.Identifier(fresh_schema, "tasks")
            )
        ).fetchall()
        assert rows == [("waiting", 1, n)]


def test_rescue_of_hundreds_of_stale_tasks_at_once(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    # A crashed worker with a high concurrency leaves many tasks stale at once; the
    # rescue (and its notification of watchers) must take them all back in one go.
    n = 600
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Dequeuer(database_url, schema=fresh_schema) as dequeuer,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        queuer.enqueue_many([R("crash", "t", i, max_attempts=2) for i in range(n)])
        claimed = dequeuer.dequeue_many(["crash"], n)
        make_stale(conn, fresh_schema, *(t.id for t in claimed))
        assert dequeuer.rescue() == n
        rows = conn.execute(
            sql.SQL("SELECT status, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier(fresh_schema, "tasks")
            )
        ).fetchall()
        assert rows == [("waiting", n)]
