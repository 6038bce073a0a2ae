"""Waiting and running tasks are never deleted by taskq's own housekeeping: the pruner
deletes only finished, failed and cancelled tasks, whatever their timestamps say."""

from __future__ import annotations

import datetime as dt

from chaoslib import Cluster, status_counts
from psycopg import sql

import taskq
from taskq.db import Database
from taskq.services.pruner import Pruner


def test_pruner_deletes_only_final_tasks(cluster: Cluster, schema: str) -> None:
    with (
        taskq.Queuer(cluster.url, schema=schema) as q,
        taskq.Dequeuer(cluster.url, schema=schema) as d,
        taskq.Tasks(cluster.url, schema=schema) as tasks,
    ):
        for queue in ("run", "fin", "fail", "cancel", "wait"):
            q.enqueue_many([taskq.TaskEnqueueRequest(queue, "t") for _ in range(5)])
        running = d.dequeue_many(["run"], 5)
        for t in d.dequeue_many(["fin"], 5):
            d.finish(t)
        for t in d.dequeue_many(["fail"], 5):
            d.fail(t, error="x")
        for t in tasks.list(queue="cancel"):
            tasks.cancel(t.id)
        assert len(running) == 5
    # Age everything, even the timestamps a live task should not have: the status is
    # what protects a task, not its dates.
    cluster.query(
        sql.SQL(
            "UPDATE {} SET created_at = now() - interval '400 days',"
            " updated_at = now() - interval '400 days', finished_at = now() - interval '400 days'"
        ).format(sql.Identifier(schema, "tasks"))
    )
    db = Database(cluster.url, schema)
    try:
        assert Pruner(db, retention=dt.timedelta(seconds=0)).run_once() == 15
    finally:
        db.close()
    assert status_counts(cluster, schema) == {"waiting": 5, "running": 5}
