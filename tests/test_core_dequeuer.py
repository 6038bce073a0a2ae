"""Dequeuer: claiming order and filters, blocking, heartbeat/finish/fail semantics.

Fencing under rescue lives in test_core_fencing.py, many threads in
test_core_concurrency.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import faces
import psycopg
import pytest
from helpers import direct_url
from psycopg import sql

import taskq
from taskq.core.defaults import MAX_ERROR_LENGTH

R = taskq.TaskEnqueueRequest
S = dt.timedelta(seconds=1)


def db_now(conn: psycopg.Connection[Any]) -> dt.datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def drain(dequeuer: taskq.Dequeuer, *queues: str) -> list[taskq.Task]:
    out = []
    while (t := dequeuer.dequeue(*queues, timeout=0)) is not None:
        out.append(t)
    return out


def running(queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue: str, **kw: Any) -> taskq.Task:
    """Enqueue one task in ``queue`` and claim it."""
    task = queuer.enqueue(R(queue, "t", **kw))
    claimed = dequeuer.dequeue(queue, timeout=0)
    assert claimed is not None and claimed.id == task.id
    return claimed


@pytest.fixture(scope="module")
def slow_poll_dequeuer(face: str, database_url: str, schema: str) -> Iterator[taskq.Dequeuer]:
    """A dequeuer whose safety-net poll is far longer than any test waits: only a
    NOTIFY can wake it in time. Its LISTEN connection is up before the test starts."""
    with faces.build(face, "Dequeuer", database_url, schema=schema, poll_interval=300) as d:
        listener = d.listener()
        assert listener is not None and listener.connected
        yield d


# ---- order ----------------------------------------------------------------------------


def test_dequeue_order_is_priority_then_run_at_then_enqueue_order(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    now = db_now(conn)
    q = queue_name
    made = {
        "low-old": queuer.enqueue(R(q, "t", "low-old", priority=0, run_at=now - 10 * S)),
        "high-late": queuer.enqueue(R(q, "t", "high-late", priority=5, run_at=now - 1 * S)),
        "high-early": queuer.enqueue(R(q, "t", "high-early", priority=5, run_at=now - 5 * S)),
        "low-old-2": queuer.enqueue(R(q, "t", "low-old-2", priority=0, run_at=now - 10 * S)),
        "negative": queuer.enqueue(R(q, "t", "negative", priority=-1, run_at=now - 60 * S)),
        "future": queuer.enqueue(R(q, "t", "future", priority=99, run_at=now + 3600 * S)),
    }
    assert made["low-old"].run_at == made["low-old-2"].run_at
    claimed = [t.spec for t in drain(dequeuer, q)]
    assert claimed == ["high-early", "high-late", "low-old", "low-old-2", "negative"]


def test_enqueue_many_batch_is_claimed_first_in_first_out(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    queuer.enqueue_many([R(queue_name, "t", i) for i in range(50)])
    queuer.enqueue_many([R(queue_name, "t", i) for i in range(50, 60)])
    assert [t.spec for t in drain(dequeuer, queue_name)] == list(range(60))


def test_dequeue_many_claims_up_to_limit_in_order(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    queuer.enqueue_many([R(queue_name, "t", i, priority=i % 3) for i in range(10)])
    first = dequeuer.dequeue_many([queue_name], 4)
    assert [t.spec for t in first] == [2, 5, 8, 1]
    rest = dequeuer.dequeue_many([queue_name], 100)
    assert [t.spec for t in rest] == [4, 7, 0, 3, 6, 9]
    assert dequeuer.dequeue_many([queue_name], 100) == []
    assert all(t.status is taskq.TaskStatus.RUNNING for t in first + rest)


def test_future_run_at_is_not_claimed(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    later = queuer.enqueue(R(queue_name, "t", run_at=db_now(conn) + 3600 * S))
    assert dequeuer.dequeue(queue_name, timeout=0) is None
    # once its time has come (moved by SQL, not by sleeping) it is claimed
    conn.execute(
        sql.SQL("UPDATE {} SET run_at = now() - interval '1 second' WHERE id = %s").format(
            sql.Identifier(dequeuer.schema, "tasks")
        ),
        (later.id,),
    )
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None and claimed.id == later.id


# ---- queues ---------------------------------------------------------------------------


def test_dequeue_takes_only_from_the_queues_named(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    a, b, c = f"{queue_name}-a", f"{queue_name}-b", f"{queue_name}-c"
    queuer.enqueue_many([R(q, "t", q) for q in (a, b, c) for _ in range(3)])
    only_a = drain(dequeuer, a)
    assert [t.queue for t in only_a] == [a] * 3
    b_or_c = drain(dequeuer, b, c)
    assert sorted(t.queue for t in b_or_c) == [b] * 3 + [c] * 3
    assert drain(dequeuer, a, b, c) == []


def test_priority_order_holds_across_the_queues_named(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    a, b = f"{queue_name}-a", f"{queue_name}-b"
    queuer.enqueue_many(
        [R(a, "t", "a-low", priority=1), R(b, "t", "b-high", priority=9),
         R(a, "t", "a-high", priority=9), R(b, "t", "b-low", priority=1)]
    )  # fmt: skip
    assert [t.spec for t in drain(dequeuer, a, b)] == ["b-high", "a-high", "a-low", "b-low"]


def test_dequeue_with_no_queue_takes_from_any_queue(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Dequeuer(database_url, schema=fresh_schema) as dequeuer,
    ):
        queuer.enqueue_many([R(f"any-{i}", "t", i, priority=i) for i in range(5)])
        got = drain(dequeuer)
        assert [t.spec for t in got] == [4, 3, 2, 1, 0]
        assert {t.queue for t in got} == {f"any-{i}" for i in range(5)}


def test_dequeue_refuses_an_empty_queue_name(dequeuer: taskq.Dequeuer) -> None:
    with pytest.raises(ValueError):
        dequeuer.dequeue("", timeout=0)


# ---- the claim ------------------------------------------------------------------------


def test_claim_sets_running_attempts_and_timestamps(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    task = queuer.enqueue(R(queue_name, "t", max_attempts=3))
    before = db_now(conn)
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    after = db_now(conn)
    assert claimed is not None and claimed.id == task.id
    assert claimed.status is taskq.TaskStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.started_at is not None and before <= claimed.started_at <= after
    assert claimed.last_heartbeat_at is not None
    assert before <= claimed.last_heartbeat_at <= after
    assert claimed.finished_at is None
    assert claimed.lease is not None
    assert tasks.get(task.id).status is taskq.TaskStatus.RUNNING
    assert tasks.get(task.id).attempts == 1


def test_each_claim_gets_its_own_lease(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    queuer.enqueue_many([R(queue_name, "t") for _ in range(3)])
    leases = {t.lease for t in drain(dequeuer, queue_name)}
    assert len(leases) == 3 and None not in leases


# ---- blocking -------------------------------------------------------------------------


def test_dequeue_timeout_returns_none(dequeuer: taskq.Dequeuer, queue_name: str) -> None:
    assert dequeuer.dequeue(queue_name, timeout=0.2) is None
    assert dequeuer.dequeue_many([queue_name], 10, timeout=0.2) == []


@pytest.mark.parametrize("named", [True, False], ids=["named-queue", "any-queue"])
def test_blocked_dequeue_is_woken_by_an_enqueue_from_another_connection(
    slow_poll_dequeuer: taskq.Dequeuer,
    database_url: str,
    schema: str,
    queue_name: str,
    named: bool,
) -> None:
    queues = (queue_name,) if named else ()
    got: list[taskq.Task | None] = []
    thread = threading.Thread(
        target=lambda: got.append(slow_poll_dequeuer.dequeue(*queues, timeout=60))
    )
    thread.start()
    with psycopg.connect(database_url, autocommit=True) as other:
        task = taskq.Queuer(other, schema=schema).enqueue(R(queue_name, "t", "wake up"))
    # liveness, not speed: the 300 s poll and 60 s timeout are far beyond this join
    thread.join(20)
    assert not thread.is_alive(), "dequeue was not woken by the enqueue's NOTIFY"
    assert got and got[0] is not None
    if named:
        assert got[0].id == task.id
    else:
        assert got[0].status is taskq.TaskStatus.RUNNING


def test_blocked_dequeue_picks_up_a_task_whose_run_at_comes_without_any_notify(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    # A task enqueued for later sends no NOTIFY (nothing is runnable yet), and none is
    # sent when its run_at arrives: the dequeuer's slow poll is what finds it.
    got: list[taskq.Task | None] = []
    thread = threading.Thread(target=lambda: got.append(dequeuer.dequeue(queue_name, timeout=60)))
    thread.start()
    later = queuer.enqueue(R(queue_name, "t", run_at=db_now(conn) + 0.5 * S))
    thread.join(30)  # liveness: the fixture's dequeuer polls every 0.5 s
    assert not thread.is_alive()
    assert got[0] is not None and got[0].id == later.id


def test_blocked_dequeue_ignores_other_queues_until_its_own_gets_work(
    slow_poll_dequeuer: taskq.Dequeuer, queuer: taskq.Queuer, queue_name: str
) -> None:
    got: list[taskq.Task | None] = []
    thread = threading.Thread(
        target=lambda: got.append(slow_poll_dequeuer.dequeue(queue_name, timeout=60))
    )
    thread.start()
    other = queuer.enqueue(R(f"{queue_name}-other", "t"))
    mine = queuer.enqueue(R(queue_name, "t"))
    thread.join(20)
    assert not thread.is_alive()
    assert got[0] is not None and got[0].id == mine.id
    assert other.id != mine.id


# ---- heartbeat ------------------------------------------------------------------------


def test_heartbeat_records_progress_and_time(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    assert claimed.last_heartbeat_at is not None
    dequeuer.heartbeat(claimed, {"percent": 0.1})
    first = tasks.get(claimed.id)
    assert first.progress == {"percent": 0.1}
    assert first.last_heartbeat_at is not None
    assert first.last_heartbeat_at > claimed.last_heartbeat_at
    dequeuer.heartbeat(claimed.id)  # by id; no progress keeps the last one
    second = tasks.get(claimed.id)
    assert second.progress == {"percent": 0.1}
    assert second.last_heartbeat_at is not None
    assert second.last_heartbeat_at > first.last_heartbeat_at


def test_writes_accept_ids_in_any_uuid_spelling(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed.id.upper(), 1)
    dequeuer.finish(claimed.id.replace("-", ""), 2, "ok")
    assert tasks.get(claimed.id).result == "ok"


def test_heartbeat_progress_must_be_storable(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    with pytest.raises(ValueError):
        dequeuer.heartbeat(claimed, {"x": "\x00"})
    with pytest.raises(ValueError):
        dequeuer.heartbeat(claimed, float("nan"))
    assert tasks.get(claimed.id).status is taskq.TaskStatus.RUNNING


@pytest.mark.parametrize("write", ["heartbeat", "finish", "fail"])
def test_write_on_a_waiting_task_raises_task_not_running(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
    write: str,
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    with pytest.raises(taskq.TaskNotRunning) as e:
        getattr(dequeuer, write)(task.id)
    assert task.id in str(e.value)
    assert tasks.get(task.id) == task


@pytest.mark.parametrize("write", ["heartbeat", "finish", "fail"])
@pytest.mark.parametrize("by", ["task", "id"])
def test_write_on_a_cancelled_task_raises_task_cancelled(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
    write: str,
    by: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    cancelled = tasks.cancel(claimed.id)
    with pytest.raises(taskq.TaskCancelled) as e:
        getattr(dequeuer, write)(claimed if by == "task" else claimed.id)
    assert claimed.id in str(e.value)
    assert tasks.get(claimed.id) == cancelled


@pytest.mark.parametrize("write", ["heartbeat", "finish", "fail"])
@pytest.mark.parametrize("ended", ["finished", "failed"])
@pytest.mark.parametrize("by", ["task", "id"])
def test_write_on_an_ended_task_raises_task_finished_and_changes_nothing(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
    write: str,
    ended: str,
    by: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    if ended == "finished":
        dequeuer.finish(claimed, {"p": 1}, {"r": 1})
    else:
        dequeuer.fail(claimed, {"p": 1}, "broken")
    final = tasks.get(claimed.id)
    assert final.status.value == ended
    with pytest.raises(taskq.TaskFinished) as e:
        getattr(dequeuer, write)(claimed if by == "task" else claimed.id, {"p": 2})
    assert claimed.id in str(e.value) and ended in str(e.value)
    assert tasks.get(claimed.id) == final


@pytest.mark.parametrize("write", ["heartbeat", "finish", "fail"])
@pytest.mark.parametrize("task_id", ["6f1f8a43-0000-4000-8000-000000000000", "not-a-uuid", ""])
def test_write_on_an_unknown_task_raises_task_not_found(
    dequeuer: taskq.Dequeuer, write: str, task_id: str
) -> None:
    with pytest.raises(taskq.TaskNotFound) as e:
        getattr(dequeuer, write)(task_id)
    assert task_id in str(e.value)


def test_batch_writes_report_errors_per_task(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    a = running(queuer, dequeuer, queue_name)
    b = running(queuer, dequeuer, queue_name)
    waiting = queuer.enqueue(R(queue_name, "t"))
    errors = dequeuer.heartbeat_many([(a, 1), ("bogus", 1), (waiting.id, 1)])
    assert set(errors) == {"bogus", waiting.id}
    assert isinstance(errors["bogus"], taskq.TaskNotFound)
    assert isinstance(errors[waiting.id], taskq.TaskNotRunning)
    errors = dequeuer.finish_many([taskq.Outcome(a, result="A"), taskq.Outcome("bogus")])
    assert set(errors) == {"bogus"}
    errors = dequeuer.fail_many([taskq.Outcome(b, error="B"), taskq.Outcome(a, error="late")])
    assert set(errors) == {a.id} and isinstance(errors[a.id], taskq.TaskFinished)
    assert tasks.get(a.id).result == "A" and tasks.get(a.id).error is None
    assert tasks.get(b.id).status is taskq.TaskStatus.FAILED


# ---- finish ---------------------------------------------------------------------------


def test_finish_stores_result_progress_and_finished_at(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, {"step": 1})
    before = db_now(conn)
    dequeuer.finish(claimed, {"step": 2}, {"answer": 42})
    after = db_now(conn)
    done = tasks.get(claimed.id)
    assert done.status is taskq.TaskStatus.FINISHED
    assert done.progress == {"step": 2}
    assert done.result == {"answer": 42}
    assert done.finished_at is not None and before <= done.finished_at <= after
    assert done.error is None and done.attempts == 1


def test_finish_without_progress_keeps_the_last_heartbeat_progress(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, "half")
    dequeuer.finish(claimed)
    done = tasks.get(claimed.id)
    assert done.progress == "half" and done.result is None


def test_unstorable_result_is_refused_and_the_task_stays_running(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    with pytest.raises(ValueError):
        dequeuer.finish(claimed, None, {"bad": "\x00"})
    assert tasks.get(claimed.id).status is taskq.TaskStatus.RUNNING


# ---- fail -----------------------------------------------------------------------------


def test_fail_with_attempts_left_goes_back_to_waiting_after_a_backoff(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=3, retry_delay=100.0)
    before = db_now(conn)
    dequeuer.fail(claimed, {"step": 3}, "flaky network")
    after = db_now(conn)
    back = tasks.get(claimed.id)
    assert back.status is taskq.TaskStatus.WAITING
    assert back.error == "flaky network"
    assert back.progress == {"step": 3}
    assert back.attempts == 1
    assert back.finished_at is None and back.lease is None
    # first retry: retry_delay with jitter 0.75..1.25
    assert before + 75 * S <= back.run_at <= after + 125 * S
    assert dequeuer.dequeue(queue_name, timeout=0) is None  # not before its run_at

    # second retry: twice the delay (the time comes by SQL, not by sleeping)
    conn.execute(
        sql.SQL("UPDATE {} SET run_at = now() WHERE id = %s").format(
            sql.Identifier(dequeuer.schema, "tasks")
        ),
        (claimed.id,),
    )
    again = dequeuer.dequeue(queue_name, timeout=0)
    assert again is not None and again.id == claimed.id and again.attempts == 2
    before = db_now(conn)
    dequeuer.fail(again, None, "flaky again")
    after = db_now(conn)
    back = tasks.get(claimed.id)
    assert back.status is taskq.TaskStatus.WAITING
    assert before + 150 * S <= back.run_at <= after + 250 * S


def test_fail_on_the_last_attempt_fails_for_good(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=1)
    before = db_now(conn)
    dequeuer.fail(claimed, None, ValueError("bad input"))
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED
    assert failed.error == "bad input"
    assert failed.finished_at is not None and failed.finished_at >= before
    assert dequeuer.dequeue(queue_name, timeout=0) is None


def test_fail_final_fails_at_once_whatever_attempts_remain(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=10)
    dequeuer.fail(claimed, None, "give up", final=True)
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED and failed.error == "give up"
    assert failed.attempts == 1


def test_fail_stores_error_text_without_nul_characters(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(claimed, None, "bad\x00byte \x00 and \ud800 surrogate")
    error = tasks.get(claimed.id).error
    assert error is not None
    assert "\x00" not in error
    assert error.startswith("bad") and "byte" in error and "surrogate" in error


def test_fail_stores_a_huge_error_bounded(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    huge = "E" * 1_000_000 + "\x00"
    dequeuer.fail(claimed, None, huge)
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("EEEE")
    assert len(failed.error) <= MAX_ERROR_LENGTH


def test_fail_with_unstorable_progress_still_fails_the_task(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, "before")
    dequeuer.fail(claimed, {"bad": "\x00"}, "crashed")
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED and failed.error == "crashed"
    assert failed.progress == "before"


# ---- batches and notifications ------------------------------------------------------------


def test_batch_writes_of_hundreds_of_tasks_succeed(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    # Watchers are told the changed ids by NOTIFY, whose payload is capped at 8,000
    # bytes: a batch must never put all its ids in one notification.
    n = 500
    queuer.enqueue_many([R(queue_name, "t", i) for i in range(n)])
    first = dequeuer.dequeue_many([queue_name], n)
    assert len(first) == n
    assert dequeuer.heartbeat_many([(t, {"beat": 1}) for t in first]) == {}
    done, failing = first[: n // 2], first[n // 2 :]
    assert dequeuer.finish_many([taskq.Outcome(t, result="ok") for t in done]) == {}
    assert dequeuer.fail_many([taskq.Outcome(t, error="no") for t in failing]) == {}
    counts = {
        s: len(tasks.list(queue=queue_name, status=s, limit=n)) for s in ("finished", "failed")
    }
    assert counts == {"finished": n // 2, "failed": n - n // 2}


def test_notifications_carry_ids_and_queue_names_never_specs(
    database_url: str,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    queue_name: str,
) -> None:
    big = "S" * 100_000  # far over NOTIFY's 8,000-byte payload limit
    with psycopg.connect(direct_url(database_url), autocommit=True) as listen:
        for channel in (
            dequeuer.database.settings.stmts.tasks.channel,
            dequeuer.database.settings.stmts.tasks.events,
        ):
            listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        task = queuer.enqueue(R(queue_name, "t", {"blob": big}))
        claimed = dequeuer.dequeue(queue_name, timeout=0)
        assert claimed is not None and claimed.id == task.id
        dequeuer.heartbeat(claimed, {"blob": big})
        dequeuer.finish(claimed, None, {"blob": big})
        got = [(n.channel, n.payload) for n in listen.notifies(timeout=5, stop_after=3)]
    assert (dequeuer.database.settings.stmts.tasks.channel, queue_name) in got
    assert (dequeuer.database.settings.stmts.tasks.events, task.id) in got
    assert all(len(p.encode()) <= 8000 and "SSSS" not in p for _, p in got)


def test_blocked_dequeue_on_a_queue_name_with_a_comma_is_woken(
    slow_poll_dequeuer: taskq.Dequeuer, queuer: taskq.Queuer, queue_name: str
) -> None:
    queue = f"{queue_name},second part"
    got: list[taskq.Task | None] = []
    thread = threading.Thread(
        target=lambda: got.append(slow_poll_dequeuer.dequeue(queue, timeout=60))
    )
    thread.start()
    task = queuer.enqueue(R(queue, "t"))
    thread.join(20)  # liveness: the 300 s poll is far beyond this join
    assert not thread.is_alive(), "dequeue was not woken by the enqueue's NOTIFY"
    assert got[0] is not None and got[0].id == task.id
