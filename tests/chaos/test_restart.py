"""PostgreSQL restarted (``-m fast``) and crashed (``stop -m immediate`` then start)
under load: every enqueue that returned is kept and runs; the same worker processes
carry on by themselves once the server is back."""

from __future__ import annotations

import threading
import time

from chaoslib import Cluster, Spawn, status_counts, wait_registered, worker_args
from helpers import wait_for
from psycopg import sql

import taskq

RESUME_WITHIN = 10.0
"""Seconds from the server accepting connections again to workers finishing new work
(claim backoff is capped at 5 s, the pool reconnects on first use)."""


class Producer(threading.Thread):
    """Enqueues small batches until stopped; keeps the ids of acknowledged enqueues."""

    def __init__(self, url: str, schema: str) -> None:
        super().__init__(daemon=True)
        self.queuer = taskq.Queuer(url, schema=schema, pool_size=2)
        self.acked: list[str] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = [
                taskq.TaskEnqueueRequest(
                    queue="restart",
                    type="ledger",
                    spec={"sleep": 0.02},
                    max_attempts=5,
                    heartbeat_timeout=3,
                )  # fmt: skip
                for _ in range(10)
            ]
            try:
                self.acked += [t.id for t in self.queuer.enqueue_many(batch)]
            except Exception:  # the server is down: not acknowledged, maybe not stored
                self.failures += 1
                self.stop.wait(0.1)
            self.stop.wait(0.05)
        self.queuer.close()


def finished_since(cluster: Cluster, schema: str, since: object) -> int:
    [(n,)] = cluster.query(
        sql.SQL("SELECT count(*) FROM {} WHERE finished_at > %s").format(
            sql.Identifier(schema, "tasks")
        ),
        (since,),
    )
    return int(n)


def back_and_resumed(cluster: Cluster, schema: str) -> float:
    """Seconds until workers finish a task whose run started after the server came back."""
    back = time.monotonic()
    [(db_back,)] = cluster.query("SELECT now()")
    wait_for(lambda: finished_since(cluster, schema, db_back) > 0, timeout=RESUME_WITHIN,
             interval=0.1, what="workers to resume")  # fmt: skip
    return time.monotonic() - back


def test_restart_fast_and_crash_immediate_under_load(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn
) -> None:
    workers = [spawn(*worker_args(concurrency=4)) for _ in range(2)]
    for w in workers:
        wait_registered(cluster, schema, w)
    producer = Producer(cluster.url, schema)
    producer.start()
    try:
        time.sleep(2)
        cluster.restart("fast")
        fast = back_and_resumed(cluster, schema)
        time.sleep(2)
        cluster.stop("immediate")
        time.sleep(1)
        cluster.start()
        crash = back_and_resumed(cluster, schema)
        time.sleep(2)
    finally:
        producer.stop.set()
        producer.join(30)
    print(f"resumed {fast:.1f} s after restart -m fast, {crash:.1f} s after the crash;"
          f" {len(producer.acked)} enqueues acknowledged, {producer.failures} refused")  # fmt: skip
    assert producer.failures > 0, "the producer never saw the server down"

    # Nothing acknowledged is lost; everything runs to the end.
    acked = set(producer.acked)
    ids_query = sql.SQL("SELECT id::text FROM {}").format(sql.Identifier(schema, "tasks"))
    assert acked <= {r[0] for r in cluster.query(ids_query)}
    wait_for(
        lambda: set(status_counts(cluster, schema)) == {"finished"},
        timeout=60, interval=0.3, what="every task to finish",
    )  # fmt: skip
    [(missing,)] = cluster.query(
        sql.SQL(
            "SELECT count(*) FROM {t} AS t WHERE NOT EXISTS"
            " (SELECT 1 FROM {l} AS l WHERE l.task_id = t.id)"
        ).format(t=sql.Identifier(schema, "tasks"), l=sql.Identifier(schema, "ledger"))
    )
    assert missing == 0
    # The same processes, never restarted, did it all.
    for w in workers:
        assert w.alive(), w.log()
        assert w.stop() == 0, w.log()
