"""Many threads claiming at once: every task is handed out exactly once.

Each test has its own schema so "all tasks" means exactly the tasks it made. Through
the asyncio face, the threads' calls are coroutines interleaved on one event loop.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

import taskq

R = taskq.TaskEnqueueRequest


def run_threads(n: int, target: Callable[[int], None], timeout: float = 120) -> None:
    """Run ``target(i)`` in ``n`` threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread is stuck"
    if errors:
        raise errors[0]


def statuses(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT status, attempts, count(*) FROM {} GROUP BY 1, 2 ORDER BY 1, 2").format(
            sql.Identifier(schema, "tasks")
        )
    ).fetchall()


def test_eight_threads_sharing_one_dequeuer_claim_each_task_once(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    n, threads = 3000, 8
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Dequeuer(database_url, schema=fresh_schema, pool_size=threads) as dequeuer,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        made = queuer.enqueue_many([R("work", "t", i) for i in range(n)])
        claims: list[list[str]] = [[] for _ in range(threads)]

        def work(i: int) -> None:
            while (task := dequeuer.dequeue("work", timeout=0)) is not None:
                claims[i].append(task.id)
                dequeuer.finish(task, None, {"by": i})

        run_threads(threads, work)
        counted = Counter(tid for c in claims for tid in c)
        assert sum(counted.values()) == n, "some task was claimed twice or not at all"
        assert set(counted) == {t.id for t in made}
        assert max(counted.values()) == 1
        assert sum(1 for c in claims if c) > 1, "only one thread ever got work"
        assert statuses(conn, fresh_schema) == [("finished", 1, n)]


def test_batched_claims_by_separate_dequeuers_claim_each_task_once(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    n, threads, batch = 3000, 4, 50
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        queuer.enqueue_many([R(f"q{i % 3}", "t", i) for i in range(n)])
        dequeuers = [make.Dequeuer(database_url, schema=fresh_schema) for _ in range(threads)]
        claims: list[list[str]] = [[] for _ in range(threads)]

        def work(i: int) -> None:
            d = dequeuers[i]
            while tasks := d.dequeue_many(["q0", "q1", "q2"], batch):
                claims[i].extend(t.id for t in tasks)
                errors = d.finish_many([taskq.Outcome(t, result=i) for t in tasks])
                assert errors == {}

        try:
            run_threads(threads, work)
        finally:
            for d in dequeuers:
                d.close()
        counted = Counter(tid for c in claims for tid in c)
        assert len(counted) == n and max(counted.values()) == 1
        assert statuses(conn, fresh_schema) == [("finished", 1, n)]


def test_producers_and_blocking_consumers_lose_nothing(
    make: Any, database_url: str, fresh_schema: str
) -> None:
    producers, consumers, per_producer = 3, 5, 400
    total = producers * per_producer
    claimed: list[str] = []
    lock = threading.Lock()
    with (
        make.Queuer(database_url, schema=fresh_schema) as queuer,
        make.Dequeuer(database_url, schema=fresh_schema, pool_size=consumers) as dequeuer,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):

        def role(i: int) -> None:
            if i < producers:
                for start in range(0, per_producer, 20):
                    queuer.enqueue_many([R("flow", "t", [i, start + k]) for k in range(20)])
                return
            while True:
                with lock:
                    if len(claimed) >= total:
                        return
                task = dequeuer.dequeue("flow", timeout=0.5)
                if task is not None:
                    with lock:
                        claimed.append(task.id)
                    dequeuer.finish(task)

        run_threads(producers + consumers, role)
        assert len(claimed) == total and len(set(claimed)) == total
        assert statuses(conn, fresh_schema) == [("finished", 1, total)]
