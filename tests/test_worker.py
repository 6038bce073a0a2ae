"""The worker process, run for real: `taskq worker taskq_test_app:registry`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import taskq_test_app
from helpers import Workers, handler_started, taskq_cmd, taskq_env, wait_for

import taskq
from taskq import TaskEnqueueRequest, TaskStatus

# The subject is the worker process; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")


@pytest.fixture
def workers(database_url: str, schema: str) -> Iterator[Workers]:
    w = Workers(database_url, schema)
    yield w
    w.close()


@pytest.fixture
def app_queuer(database_url: str, schema: str) -> Iterator[taskq.Queuer]:
    """A Queuer that knows the test app's registry (its per-type defaults apply)."""
    with taskq.Queuer(database_url, schema=schema, registry=taskq_test_app.registry) as q:
        yield q


def ended(tasks: taskq.Tasks, task_id: str, timeout: float = 30) -> taskq.Task:
    return tasks.wait(task_id, timeout=timeout)


def test_handler_result_is_stored(workers: Workers, app_queuer: taskq.Queuer,
                                  tasks: taskq.Tasks, queue_name: str) -> None:  # fmt: skip
    workers.start(queue=queue_name)
    t = app_queuer.enqueue(queue=queue_name, type="echo", spec={"x": [1, 2]})
    done = ended(tasks, t.id)
    assert done.status is TaskStatus.FINISHED
    assert done.result == {"spec": {"x": [1, 2]}, "attempt": 1, "current": t.id}
    assert done.finished_at is not None and done.started_at is not None


def test_exception_fails_with_message_and_retries_while_attempts_remain(
    workers: Workers, app_queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    # "flaky" is registered with max_attempts=3: the registry default applies.
    ok = app_queuer.enqueue(queue=queue_name, type="flaky", spec={"succeed_on": 3})
    bad = app_queuer.enqueue(queue=queue_name, type="flaky", spec={"succeed_on": 9})
    done = ended(tasks, ok.id)
    assert done.status is TaskStatus.FINISHED and done.attempts == 3
    assert done.result == "ok"
    failed = ended(tasks, bad.id)
    assert failed.status is TaskStatus.FAILED
    assert failed.attempts == 3 == failed.max_attempts
    assert failed.error == "flaky failure on attempt 3"


def test_plain_exception_message_is_the_error(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="boom")
    done = ended(tasks, t.id)
    assert (done.status, done.error, done.attempts) == (TaskStatus.FAILED, "boom", 1)


def test_task_failed_fails_at_once_without_retry(
    workers: Workers, app_queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = app_queuer.enqueue(queue=queue_name, type="give_up")
    assert t.max_attempts == 5
    done = ended(tasks, t.id)
    assert done.status is TaskStatus.FAILED
    assert done.attempts == 1
    assert done.error == "not worth retrying"


def test_progress_is_visible_while_running(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="steps", spec={"steps": 4, "pause": 0.3})
    seen = []
    for snap in tasks.watch(t.id, timeout=30):
        if snap.progress is not None:
            seen.append((snap.status, snap.progress["step"]))
    steps_seen = [s for _, s in seen]
    assert steps_seen == sorted(steps_seen)
    assert (TaskStatus.RUNNING, 1) in seen and steps_seen[-1] == 4
    assert tasks.get(t.id).result == 4


def test_cancelling_a_running_task_stops_its_handler(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="until_cancelled")
    wait_for(lambda: (tasks.get(t.id).progress or {}).get("i", 0) >= 3, what="progress")
    cancelled = tasks.cancel(t.id)
    assert cancelled.status is TaskStatus.CANCELLED
    # The worker drops the task and its slot frees: a new task runs on the same worker.
    nxt = queuer.enqueue(queue=queue_name, type="echo", spec=1)
    assert ended(tasks, nxt.id).status is TaskStatus.FINISHED
    final = tasks.get(t.id)
    assert final.status is TaskStatus.CANCELLED
    i_then = final.progress["i"]
    time.sleep(0.5)  # not a synchronisation: checks that nothing writes any more
    assert tasks.get(t.id).progress["i"] == i_then


@pytest.mark.parametrize("kind", ["hang", "async_hang"])
def test_per_task_timeout_fails_the_attempt(
    kind: str, workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type=kind)  # registered with timeout=0.5
    done = ended(tasks, t.id)
    assert done.status is TaskStatus.FAILED
    assert done.error == "timed out after 0.5 s"


def test_sync_and_async_handlers_in_one_worker(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start("--concurrency", "4", queue=queue_name)
    a = [queuer.enqueue(queue=queue_name, type="async_echo", spec=i) for i in range(5)]
    s = [queuer.enqueue(queue=queue_name, type="echo", spec=i) for i in range(5)]
    for i, t in enumerate(a):
        done = ended(tasks, t.id)
        assert done.result == {"async": True, "spec": i, "current": t.id}
    for t in s:
        assert ended(tasks, t.id).status is TaskStatus.FINISHED


def test_unknown_type_fails_with_a_clear_error(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="no.such.type")
    done = ended(tasks, t.id)
    assert done.status is TaskStatus.FAILED
    assert "no handler registered for task type 'no.such.type'" in (done.error or "")


def test_worker_only_takes_its_queues(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    workers.start(queue=queue_name)
    other = queuer.enqueue(queue=queue_name + "-other", type="echo")
    mine = queuer.enqueue(queue=queue_name, type="echo")
    ended(tasks, mine.id)
    assert tasks.get(other.id).status is TaskStatus.WAITING


def test_sigterm_lets_running_tasks_finish_and_exits_zero(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    p = workers.start("--concurrency", "2", "--grace", "20", queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="nap", spec=1.5)
    handler_started(tasks, t.id)
    waiting = queuer.enqueue(queue=queue_name, type="echo", run_at=_later())
    code, out = workers.stop(p)
    assert code == 0, out
    assert tasks.get(t.id).status is TaskStatus.FINISHED
    assert tasks.get(waiting.id).status is TaskStatus.WAITING


def test_sigterm_after_grace_gives_tasks_back_without_charging_an_attempt(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    p = workers.start("--grace", "0.5", queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="nap", spec=60, max_attempts=3)
    handler_started(tasks, t.id)
    started = time.monotonic()
    code, out = workers.stop(p)
    assert code == 0, out
    assert time.monotonic() - started < 20  # bounded by the grace period, not the handler
    back = tasks.get(t.id)
    assert back.status is TaskStatus.WAITING
    assert back.attempts == 0
    assert back.lease is None


def test_second_signal_skips_the_grace_period(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    p = workers.start("--grace", "120", queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type="nap", spec=120)
    handler_started(tasks, t.id)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    assert p.returncode == 0, workers.output(p)
    assert tasks.get(t.id).status is TaskStatus.WAITING


def test_kill_9_mid_task_is_rescued_and_finished_by_another_worker(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    first = workers.start(queue=queue_name)
    t = queuer.enqueue(
        queue=queue_name, type="record_pid", spec=3, max_attempts=2, heartbeat_timeout=2
    )
    # mid-task: its handler started (a reserved task not started yet is not charged)
    running = wait_for(
        lambda: (x := tasks.get(t.id)).status is TaskStatus.RUNNING and x.started_at and x,
        what="running",
    )
    first.kill()
    first.wait()
    second = workers.start(queue=queue_name)
    done = ended(tasks, t.id, timeout=60)
    assert done.status is TaskStatus.FINISHED, done.error
    assert done.attempts == 2
    assert done.result == second.pid
    assert done.lease != running.lease


def test_worker_registry_lists_live_and_stopped_workers(
    workers: Workers, database_url: str, schema: str, queue_name: str
) -> None:
    p = workers.start("--concurrency", "3", queue=queue_name)
    dq = taskq.Dequeuer(database_url, schema=schema)

    def row() -> dict[str, Any] | None:
        with psycopg.connect(database_url) as c:
            r = c.execute(
                f'SELECT pid, concurrency, queues, stopped_at FROM "{schema}".workers '  # noqa: S608
                "WHERE pid = %s",
                (p.pid,),
            ).fetchone()
        return None if r is None else {"pid": r[0], "conc": r[1], "queues": r[2], "stopped": r[3]}

    r = wait_for(row, what="worker row")
    assert r["conc"] == 3 and r["queues"] == [queue_name] and r["stopped"] is None
    out = subprocess.run(taskq_cmd("workers", "--json"), env=taskq_env(database_url, schema),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert str(p.pid) in out.stdout and '"alive": true' in out.stdout
    code, _ = workers.stop(p)
    assert code == 0
    r = row()
    assert r is not None and r["stopped"] is not None
    dq.close()


def test_tasks_of_a_vanished_worker_are_rescued_before_their_heartbeat_timeout(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    """A worker row that went stale (or stopped) frees its tasks at the next rescue,
    even when their heartbeat timeout is an hour."""
    wid = "00000000-0000-4000-8000-" + os.urandom(6).hex()
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            f'INSERT INTO "{schema}".workers (id, host, pid, concurrency, last_seen_at) '  # noqa: S608
            "VALUES (%s, 'gone', 1, 1, now() - interval '1 hour')",
            (wid,),
        )
    t = queuer.enqueue(queue=queue_name, type="echo", heartbeat_timeout=3600, max_attempts=2)
    with taskq.Dequeuer(database_url, schema=schema, worker_id=wid) as dq:
        claimed = dq.dequeue(queue_name, timeout=5)
        assert claimed is not None and claimed.id == t.id
        assert dq.rescue(worker_stale=30) == 1
        back = tasks.get(t.id)
        assert back.status is TaskStatus.WAITING
        with pytest.raises(taskq.LeaseLost):
            dq.finish(claimed)


def test_bad_arguments_exit_nonzero_with_one_line(database_url: str, schema: str) -> None:
    cases = [
        ["worker", "nosuchmodule_xyz:registry"],
        ["worker", "taskq_test_app"],
        ["worker", "taskq_test_app:nothing"],
        ["worker", "taskq_test_app:registry", "--concurrency", "0"],
        ["worker", "taskq_test_app:registry", "--concurrency", "5:2"],
        ["worker", "taskq_test_app:registry", "--queue", ""],
        ["worker", "taskq_test_app:noop"],
    ]
    for args in cases:
        r = subprocess.run(taskq_cmd(*args), env=taskq_env(database_url, schema),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_many_tasks_across_two_workers_each_run_once(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    ts = queuer.enqueue_many(
        [TaskEnqueueRequest(queue=queue_name, type="echo", spec=i) for i in range(500)]
    )
    workers.start("--concurrency", "4", queue=queue_name)
    workers.start("--concurrency", "4", queue=queue_name)
    wait_for(
        lambda: len(tasks.list(queue=queue_name, status="finished", limit=1000)) == 500,
        timeout=60,
        what="all finished",
    )
    done = tasks.list(queue=queue_name, limit=1000)
    assert {t.id for t in done} == {t.id for t in ts}
    assert all(t.attempts == 1 and t.status is TaskStatus.FINISHED for t in done)


def _later() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


@pytest.mark.parametrize("kind", ["cpu_burn", "loop_blocker"])
def test_busy_handlers_do_not_starve_heartbeats(
    kind: str, workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    """Registered with heartbeat_timeout=1 and max_attempts=1: a missed heartbeat would
    fail the task through the rescue (which runs every 0.5 s here) well before 4 s."""
    workers.start(queue=queue_name)
    t = queuer.enqueue(queue=queue_name, type=kind, spec=4, heartbeat_timeout=1)
    done = ended(tasks, t.id, timeout=60)
    assert done.status is TaskStatus.FINISHED, done.error
    assert done.attempts == 1


def test_each_start_gets_a_fresh_identity(
    workers: Workers, database_url: str, schema: str, queue_name: str
) -> None:
    first = workers.start(queue=queue_name)
    second = workers.start(queue=queue_name)

    def ids() -> list[str]:
        with psycopg.connect(database_url) as c:
            rows = c.execute(
                f'SELECT id FROM "{schema}".workers WHERE pid = ANY(%s)',  # noqa: S608
                ([first.pid, second.pid],),
            ).fetchall()
        return [str(r[0]) for r in rows]

    found = wait_for(lambda: len(x := ids()) == 2 and x, what="two worker rows")
    assert len(set(found)) == 2
