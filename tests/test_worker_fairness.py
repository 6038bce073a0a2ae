"""Fairness, with real worker processes: a task is claimed only for a slot that starts
it at once, so free slots anywhere take the next tasks; a timeout counts from the
start; after SIGTERM no handler starts; a worker killed mid-batch loses nothing and
charges no attempt it did not start."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psycopg
import pytest
from helpers import Workers, handler_started, wait_for
from psycopg import sql

import taskq
from taskq import TaskEnqueueRequest as R
from taskq import TaskStatus

pytestmark = pytest.mark.faces("sync")


@pytest.fixture
def workers(database_url: str, schema: str) -> Iterator[Workers]:
    w = Workers(database_url, schema)
    yield w
    w.close()


def running(tasks: taskq.Tasks, queue: str) -> int:
    return len(tasks.list(queue=queue, status="running", limit=1000))


def test_every_free_slot_of_every_worker_takes_a_task_whatever_ran_before(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    procs = [workers.start("--concurrency", "4", queue=queue_name) for _ in range(2)]
    short = queuer.enqueue_many([R(queue_name, "noop") for _ in range(600)])
    for t in short[-20:]:
        tasks.wait(t.id, timeout=60)
    wait_for(lambda: not tasks.list(queue=queue_name, status=["waiting", "running"]),
             timeout=60, what="the short tasks to drain")  # fmt: skip
    long = queuer.enqueue_many([R(queue_name, "sleepy", 2.5) for _ in range(8)])
    ended = [tasks.wait(t.id, timeout=60) for t in long]
    assert all(t.status is TaskStatus.FINISHED and t.attempts == 1 for t in ended)
    # all eight ran at the same time, on the 8 slots of the 2 workers
    latest_start = max(t.started_at for t in ended if t.started_at)
    earliest_end = min(t.finished_at for t in ended if t.finished_at)
    assert latest_start < earliest_end, [(t.started_at, t.finished_at) for t in ended]
    per_worker = [sum(1 for t in ended if t.worker_id == w) for w in {t.worker_id for t in ended}]
    assert sorted(per_worker) == [4, 4]  # each worker's four slots, none hoarding
    for p in procs:
        assert workers.stop(p)[0] == 0


def test_a_timeout_measures_the_run_not_the_wait_for_a_slot(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    slow = queuer.enqueue(R(queue_name, "sleepy", 3, priority=1))
    quick = queuer.enqueue_many([R(queue_name, "echo", {"n": i}, timeout=2) for i in range(3)])
    p = workers.start("--concurrency", "1", queue=queue_name)
    assert tasks.wait(slow.id, timeout=60).status is TaskStatus.FINISHED
    for t in quick:
        done = tasks.wait(t.id, timeout=60)
        assert done.status is TaskStatus.FINISHED, done.errors
        assert done.errors == ()
    assert workers.stop(p)[0] == 0


def test_after_sigterm_no_handler_starts_and_the_rest_stay_waiting_uncharged(
    workers: Workers, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    slow = queuer.enqueue(R(queue_name, "nap", 2, priority=1))
    rest = queuer.enqueue_many([R(queue_name, "echo", {"n": i}) for i in range(3)])
    p = workers.start("--concurrency", "1", "--grace", "30", queue=queue_name)
    handler_started(tasks, slow.id)
    code, out = workers.stop(p, timeout=60)
    assert code == 0, out
    assert tasks.get(slow.id).status is TaskStatus.FINISHED  # ran out its grace period
    for t in rest:
        now = tasks.get(t.id)
        assert (now.status, now.attempts, now.started_at) == (TaskStatus.WAITING, 0, None)


@pytest.fixture
def ledger_table(database_url: str, schema: str) -> Iterator[None]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (task_id uuid, pid int, attempt int)").format(
                sql.Identifier(schema, "ledger")
            )
        )
    yield


def test_a_worker_killed_mid_batch_loses_nothing_and_charges_only_what_it_started(
    workers: Workers,
    queuer: taskq.Queuer,
    tasks: taskq.Tasks,
    database_url: str,
    schema: str,
    queue_name: str,
    ledger_table: None,
) -> None:
    made = queuer.enqueue_many(
        [
            R(queue_name, "ledger", {"sleep": 0.5, "n": i}, heartbeat_timeout=2, max_attempts=3)
            for i in range(40)
        ]
    )
    victim = workers.start("--concurrency", "10", queue=queue_name)
    count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "ledger"))

    def started() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(count).fetchone()
        return int(row[0]) if row else 0

    # killed while ten handlers run (each recorded its start), thirty still wait
    wait_for(lambda: started() >= 10, timeout=60, what="ten handlers to start")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    workers.start("--concurrency", "10", queue=queue_name)
    ended = {t.id: tasks.wait(t.id, timeout=120) for t in made}
    assert {t.status for t in ended.values()} == {TaskStatus.FINISHED}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT task_id::text, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier(schema, "ledger")
            )
        ).fetchall()
    starts = dict(rows)
    for task_id, t in ended.items():
        # every attempt charged was a handler that really started: none for a task
        # that was reserved and never started (a handler killed in its first moments,
        # before its start was recorded, is not charged either)
        assert 1 <= t.attempts <= starts.get(task_id, 0), (task_id, starts.get(task_id), t)
    never_started_by_the_victim = [t for i, t in ended.items() if starts.get(i) == 1]
    assert all(t.attempts == 1 for t in never_started_by_the_victim)
    killed = [t for t in ended.values() if starts.get(t.id, 0) > 1]
    assert 0 < len(killed) <= 10
    assert all(e.kind in ("rescue", "unstarted") for t in killed for e in t.errors)
