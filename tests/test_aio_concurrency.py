"""SKIP LOCKED with many claimers of both faces at once: 20 asyncio tasks on one loop
(four ``AsyncDequeuer``s, five tasks sharing each) and 4 threads with a synchronous
``Dequeuer`` each claim and finish the same tasks; every task is claimed exactly once
and ends finished. Half of each kind claims one at a time, half in batches.

Each test has its own schema, so "every task" means exactly the tasks it made.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import psycopg
from psycopg import sql

import taskq
from taskq.aio import AsyncDequeuer, AsyncQueuer

R = taskq.TaskEnqueueRequest


def statuses(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT status, attempts, count(*) FROM {} GROUP BY 1, 2 ORDER BY 1, 2").format(
            sql.Identifier(schema, "tasks")
        )
    ).fetchall()


async def test_asyncio_tasks_and_threads_claim_each_task_exactly_once(
    database_url: str, fresh_schema: str, conn: psycopg.Connection[Any]
) -> None:
    n, coroutines, per_dequeuer, threads, batch = 500, 20, 5, 4, 7
    queues = ["mix-a", "mix-b"]
    go = threading.Event()
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def thread_claimer(name: str, batched: bool) -> None:
        mine = claims[name] = []
        try:
            with taskq.Dequeuer(database_url, schema=fresh_schema) as d:
                go.wait(60)
                while True:
                    if batched:
                        got = d.dequeue_many(queues, batch)
                        if not got:
                            return
                        mine.extend(t.id for t in got)
                        assert d.finish_many([taskq.Outcome(t, result=name) for t in got]) == {}
                    else:
                        task = d.dequeue(*queues, timeout=0)
                        if task is None:
                            return
                        mine.append(task.id)
                        d.finish(task, None, name)
        except BaseException as e:  # reported below
            errors.append(e)

    async def coroutine_claimer(d: AsyncDequeuer, name: str, batched: bool) -> None:
        mine = claims[name] = []
        while True:
            if batched:
                got = await d.dequeue_many(queues, batch)
                if not got:
                    return
                mine.extend(t.id for t in got)
                assert await d.finish_many([taskq.Outcome(t, result=name) for t in got]) == {}
            else:
                task = await d.dequeue(*queues, timeout=0)
                if task is None:
                    return
                mine.append(task.id)
                await d.heartbeat(task, {"by": name})
                await d.finish(task, None, name)

    async with AsyncQueuer(database_url, schema=fresh_schema) as queuer:
        made = await queuer.enqueue_many(
            [R(queues[i % 2], "t", i, priority=i % 3) for i in range(n)]
        )
    dequeuers = [
        AsyncDequeuer(database_url, schema=fresh_schema, pool_size=per_dequeuer)
        for _ in range(coroutines // per_dequeuer)
    ]
    workers = [
        threading.Thread(target=thread_claimer, args=(f"thread-{i}", i % 2 == 1), daemon=True)
        for i in range(threads)
    ]
    try:
        for d in dequeuers:
            await d.database.wait_ready(30)
        for w in workers:
            w.start()
        go.set()  # threads and asyncio tasks start together
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    coroutine_claimer(dequeuers[i // per_dequeuer], f"task-{i}", i % 2 == 1)
                    for i in range(coroutines)
                )
            ),
            180,
        )
        for w in workers:
            await asyncio.to_thread(w.join, 180)
        assert not any(w.is_alive() for w in workers), "a claiming thread is stuck"
    finally:
        go.set()
        for d in dequeuers:
            await d.close()
    assert not errors, errors

    counted = Counter(tid for ids in claims.values() for tid in ids)
    twice = [tid for tid, k in counted.items() if k > 1]
    assert not twice, f"claimed more than once: {twice[:5]}"
    assert set(counted) == {t.id for t in made}, "some task was never claimed"
    assert statuses(conn, fresh_schema) == [("finished", 1, n)]
    by_kind = Counter(name.split("-")[0] for name, ids in claims.items() for _ in ids)
    assert sum(by_kind.values()) == n, by_kind
