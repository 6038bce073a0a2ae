"""``pg_terminate_backend`` on a worker's connections: while it claims, while it
writes a finish, on its LISTEN connection, and at random under load.

The worker's pool connections carry application_name ``taskq`` and its LISTEN
connection ``taskq-listen``; this test's own connections use other names. To hit a
claim or a finish *while it runs*, the test first makes the statement wait on a lock
it holds, then terminates the waiting backend.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from chaoslib import Cluster, Spawn, status_counts, wait_registered, worker_args
from helpers import wait_for
from psycopg import sql

import taskq

WORKER_APPS = ("taskq", "taskq-listen")


@pytest.fixture
def producer(cluster: Cluster, schema: str) -> Iterator[taskq.Queuer]:
    """A Queuer on a connection of its own (application_name chaos-test)."""
    conn = psycopg.connect(cluster.url, autocommit=True, application_name="chaos-test")
    with conn, taskq.Queuer(conn, schema=schema) as q:
        yield q


def backends(cluster: Cluster, where: str = "true", params: Any = ()) -> list[int]:
    rows = cluster.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = ANY(%s) AND " + where,
        (list(WORKER_APPS), *params),
    )
    return [int(r[0]) for r in rows]


def terminate(cluster: Cluster, pids: list[int]) -> None:
    cluster.query("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (pids,))


def blocked(cluster: Cluster, marker: str) -> list[int]:
    """Worker backends waiting on a lock in a statement that contains ``marker``."""
    return backends(cluster, "wait_event_type = 'Lock' AND strpos(query, %s) > 0", (marker,))


def test_terminate_during_dequeue_and_during_finish(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn, producer: taskq.Queuer
) -> None:
    w = spawn(*worker_args(concurrency=2))
    wait_registered(cluster, schema, w)
    tasks_table = sql.Identifier(schema, "tasks")

    # During dequeue: a SHARE lock on the table makes the next claim wait. The task is
    # due in two seconds, so the worker cannot claim it before the lock is taken.
    [(soon,)] = cluster.query("SELECT now() + interval '2 seconds'")
    one = producer.enqueue(queue="term", type="ledger", max_attempts=3, heartbeat_timeout=3,
                           run_at=soon)  # fmt: skip
    with cluster.connect() as locker:
        with locker.transaction():
            locker.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(tasks_table))
            # the worker claims in its round-trip statement (finish, record starts,
            # reserve: exchange_* in taskq/sql/tasks.sql); pg_stat_activity keeps only
            # its first 1,024 bytes, so the marker is its opening
            pids = wait_for(lambda: blocked(cluster, "WITH changed AS (UPDATE"), timeout=10,
                            what="the worker's claim to wait on the lock")  # fmt: skip
            terminate(cluster, pids)
    with taskq.Tasks(cluster.url, schema=schema) as tasks:
        done = tasks.wait(one.id, timeout=15)
        assert done.status == taskq.TaskStatus.FINISHED and done.result == w.pid
        assert done.attempts == 1  # the terminated claim rolled back: no phantom attempt

        # During finish: a row lock on the task makes the finish wait.
        two = producer.enqueue(queue="term", type="ledger", spec={"sleep": 0.5},
                               max_attempts=3, heartbeat_timeout=3)  # fmt: skip
        wait_for(lambda: tasks.get(two.id).status == taskq.TaskStatus.RUNNING, timeout=10)
        with cluster.connect() as locker:
            with locker.transaction():
                locker.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(tasks_table),
                    (two.id,),
                )
                pids = wait_for(lambda: blocked(cluster, "'finished'"), timeout=10,
                                what="the worker's finish to wait on the lock")  # fmt: skip
                terminate(cluster, pids)
        done = tasks.wait(two.id, timeout=15)
        assert done.status == taskq.TaskStatus.FINISHED and done.result == w.pid
        assert done.attempts == 1  # the finish was retried on a new connection
    assert w.alive()
    assert "database unreachable" in w.log()  # it noticed, and carried on
    assert w.stop() == 0, w.log()


def test_terminate_listen_connection_pickup_still_happens_by_notify(
    cluster: Cluster, schema: str, spawn: Spawn, producer: taskq.Queuer
) -> None:
    w = spawn(*worker_args(concurrency=2))
    wait_registered(cluster, schema, w)
    listen = "application_name = 'taskq-listen'"
    old = wait_for(lambda: backends(cluster, listen), timeout=10, what="a LISTEN connection")
    terminate(cluster, old)
    wait_for(lambda: set(backends(cluster, listen)) - set(old), timeout=10,
             what="the LISTEN connection to come back")  # fmt: skip
    time.sleep(0.3)  # let it finish LISTEN
    # Claims poll about once a second as a safety net; pickups well under that show
    # the NOTIFY path works again (8 tasks at odd offsets, 6 must be quick).
    latencies = []
    with taskq.Tasks(cluster.url, schema=schema) as tasks:
        for i in range(8):
            time.sleep(0.3 + 0.07 * i)
            t = producer.enqueue(queue="listen", type="noop")
            done = tasks.wait(t.id, timeout=10)
            assert done.started_at is not None and done.created_at is not None
            latencies.append((done.started_at - done.created_at).total_seconds())
    assert sum(x < 0.25 for x in latencies) >= 6, latencies
    print("pickup latencies after LISTEN reconnect:", statistics.median(latencies))
    assert w.stop() == 0, w.log()


def test_terminate_worker_backends_at_random_under_load_loses_nothing(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn, producer: taskq.Queuer
) -> None:
    workers = [spawn(*worker_args(concurrency=4)) for _ in range(2)]
    for w in workers:
        wait_registered(cluster, schema, w)
    rng = random.Random(11)
    ids: list[str] = []
    killed = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        batch = [
            taskq.TaskEnqueueRequest(
                queue="storm",
                type="ledger",
                spec={"sleep": 0.02},
                max_attempts=5,
                heartbeat_timeout=2,
            )  # fmt: skip
            for _ in range(15)
        ]
        ids += [t.id for t in producer.enqueue_many(batch)]
        pids = backends(cluster)
        victims = rng.sample(pids, k=min(len(pids), rng.randint(1, 3)))
        terminate(cluster, victims)
        killed += len(victims)
        time.sleep(rng.uniform(0.05, 0.25))
    assert killed > 12
    wait_for(
        lambda: status_counts(cluster, schema) == {"finished": len(ids)},
        timeout=45, interval=0.3, what=f"all {len(ids)} tasks to finish",
    )  # fmt: skip
    [(runs, distinct, unexplained)] = cluster.query(
        sql.SQL(
            "SELECT sum(n), count(*), count(*) FILTER (WHERE n > t.attempts)"
            " FROM (SELECT task_id, count(*) AS n FROM {l} GROUP BY task_id) AS r"
            " JOIN {t} AS t ON t.id = r.task_id"
        ).format(l=sql.Identifier(schema, "ledger"), t=sql.Identifier(schema, "tasks"))
    )
    assert distinct == len(ids)  # every task ran
    assert unexplained == 0  # a task ran twice only when it was claimed twice
    for w in workers:
        assert w.alive()
        assert w.stop() == 0, w.log()
