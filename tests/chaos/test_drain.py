"""Several worker processes drain a large backlog over several queues.

The ``ledger`` handler appends one row per run to a table in the same database, so
the ledger shows how many times each task's handler really ran. With no faults that
is exactly once per task, and nothing is left waiting or running.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from chaoslib import Cluster, Proc, Spawn, status_counts, wait_registered, worker_args
from psycopg import sql

import taskq

QUEUES = ("drain-a", "drain-b", "drain-c")


def _enqueue(
    cluster: Cluster, schema: str, n: int, queues: tuple[str, ...], max_attempts: int = 1
) -> set[str]:
    ids: set[str] = set()
    with taskq.Queuer(cluster.url, schema=schema) as q:
        for start in range(0, n, 2000):
            batch = [
                taskq.TaskEnqueueRequest(
                    queue=queues[i % len(queues)],
                    type="ledger",
                    heartbeat_timeout=30,
                    max_attempts=max_attempts,
                )  # fmt: skip
                for i in range(start, min(n, start + 2000))
            ]
            ids.update(t.id for t in q.enqueue_many(batch))
    return ids


def _wait_drained(cluster: Cluster, schema: str, workers: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(cluster, schema)
        if counts.get("waiting", 0) + counts.get("running", 0) == 0:
            return
        for w in workers:
            assert w.alive(), f"worker {w.pid} died:\n{w.log()}"
        if time.monotonic() > deadline:
            pytest.fail(f"not drained within {timeout}s: {counts}")
        time.sleep(0.5)


def check_ledger(cluster: Cluster, schema: str, ids: set[str], *, exactly_once: bool) -> None:
    """Every task finished; the ledger has a run for each (exactly one if asked)."""
    t = sql.Identifier(schema, "tasks")
    ledger = sql.Identifier(schema, "ledger")
    counts = status_counts(cluster, schema)
    assert counts == {"finished": len(ids)}, counts
    [(runs, distinct, strays)] = cluster.query(
        sql.SQL(
            "SELECT count(*), count(DISTINCT task_id),"
            " count(*) FILTER (WHERE task_id NOT IN (SELECT id FROM {t})) FROM {l}"
        ).format(t=t, l=ledger)
    )
    assert strays == 0
    assert distinct == len(ids), f"{len(ids) - distinct} task(s) finished without running"
    if exactly_once:
        assert runs == len(ids), f"{runs - len(ids)} duplicate run(s) without any fault"
        [(retried,)] = cluster.query(
            sql.SQL("SELECT count(*) FROM {} WHERE attempts <> 1").format(t)
        )
        assert retried == 0
    # The result is the pid of a process that ran the task (the last run's).
    [(foreign,)] = cluster.query(
        sql.SQL(
            "SELECT count(*) FROM {t} AS t WHERE NOT EXISTS (SELECT 1 FROM {l} AS l"
            " WHERE l.task_id = t.id AND l.pid = (t.result #>> '{{}}')::int)"
        ).format(t=t, l=ledger)
    )
    assert foreign == 0
    db_ids = {str(r[0]) for r in cluster.query(sql.SQL("SELECT id FROM {}").format(t))}
    assert db_ids == ids


def _start_workers(spawn: Spawn, n: int) -> list[Proc]:
    # Different queue subscriptions: all three named, two of them, and "any queue".
    subs: list[tuple[str, ...]] = [
        ("--queue", QUEUES[0], "--queue", QUEUES[1], "--queue", QUEUES[2]),
        ("--queue", QUEUES[0], "--queue", QUEUES[1]),
        (),
    ]
    return [spawn(*worker_args(*subs[i % 3], concurrency=8)) for i in range(n)]


def test_workers_drain_ten_thousand_tasks_exactly_once(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn
) -> None:
    workers = _start_workers(spawn, 3)
    ids = _enqueue(cluster, schema, 10_000, QUEUES)
    _wait_drained(cluster, schema, workers, timeout=90)
    check_ledger(cluster, schema, ids, exactly_once=True)
    for w in workers:
        assert w.stop() == 0, w.log()


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_drain_with_kills(cluster: Cluster, schema: str, ledger: str, spawn: Spawn) -> None:
    """200,000 tasks (``TASKQ_SOAK_TASKS``) over five queues, four workers, one of them killed with SIGKILL
    and replaced every few seconds: every task finishes, each ran at least once, and
    only tasks that were rescued ran more than once.

    The tasks allow five attempts: a task a killed worker held has had its attempt
    charged (the contract: rescued with no attempts left means failed), so with the
    default single attempt the few dozen tasks held at each kill fail, as they should."""
    queues = (*QUEUES, "drain-d", "drain-e")
    workers = _start_workers(spawn, 4)
    n = int(os.environ.get("TASKQ_SOAK_TASKS", "200000"))
    ids = _enqueue(cluster, schema, n, queues, max_attempts=5)
    rng = random.Random(7)
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        counts = status_counts(cluster, schema)
        if counts.get("waiting", 0) + counts.get("running", 0) == 0:
            break
        time.sleep(rng.uniform(2, 6))
        i = rng.randrange(len(workers))
        workers[i].kill9()
        workers[i] = spawn(*worker_args(concurrency=8))
    _wait_drained(cluster, schema, workers, timeout=120)
    check_ledger(cluster, schema, ids, exactly_once=False)
    t = sql.Identifier(schema, "tasks")
    ledger = sql.Identifier(schema, "ledger")
    [(unexplained,)] = cluster.query(
        sql.SQL(
            "SELECT count(*) FROM (SELECT task_id, count(*) AS n FROM {l} GROUP BY task_id) AS r"
            " JOIN {t} AS t ON t.id = r.task_id WHERE r.n > t.attempts"
        ).format(t=t, l=ledger)
    )
    assert unexplained == 0
    # a second attempt comes only from a rescue, which the task's history records
    [(retried, unrescued)] = cluster.query(
        sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM"
            " jsonb_array_elements(t.errors) AS e WHERE e->>'kind' = 'rescue'))"
            " FROM {t} AS t WHERE t.attempts > 1"
        ).format(t=t)
    )
    assert unrescued == 0, f"{unrescued} of {retried} retried tasks were never rescued"
    for w in workers:
        wait_registered(cluster, schema, w)  # a SIGTERM before start-up is a plain kill
        assert w.stop() == 0, w.log()
