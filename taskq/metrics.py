"""Prometheus metrics, on a registry that is passed in (no module-level state).

Producer side (``Queuer(metrics=...)``): ``taskq_tasks_total{status="waiting"}`` and
``taskq_enqueue_duration_seconds``. Worker side (``Dequeuer``/``taskq worker``): task
transitions, run duration, queue wait, heartbeats, rescues. Scheduler side:
``taskq_scheduler_schedules_total`` and ``taskq_scheduler_errors_total``. Gauges read
from the database on scrape are in ``DatabaseCollector``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from taskq.types import Task

DEFAULT_NAMESPACE = "taskq"
MAX_LABEL_SETS = 1000
"""Distinct (queue, type) pairs tracked per metric; beyond it they share "other"."""

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
_RUN_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """taskq's metric objects, registered on ``registry``."""

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        ns = namespace
        r = self.registry
        self.tasks_total = Counter(
            "tasks_total", "Task transitions into each status.",
            ["queue", "type", "status"], namespace=ns, registry=r,
        )  # fmt: skip
        self.enqueue_duration = Histogram(
            "enqueue_duration_seconds", "Time to enqueue (per call, labelled by its first task).",
            ["queue", "type"], namespace=ns, registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.run_duration = Histogram(
            "task_run_duration_seconds", "Time from start to final status of an attempt.",
            ["queue", "type", "status"], namespace=ns, registry=r, buckets=_RUN_BUCKETS,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "task_queue_wait_seconds", "Time from run_at (due) to start of an attempt.",
            ["queue", "type"], namespace=ns, registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.heartbeats = Counter(
            "heartbeats_total", "Task heartbeats written.", namespace=ns, registry=r
        )
        self.rescues = Counter(
            "rescues_total", "Stale running tasks taken back by the rescue.",
            ["queue", "type", "status"], namespace=ns, registry=r,
        )  # fmt: skip
        self.scheduler_schedules = Counter(
            "scheduler_schedules_total", "Tasks enqueued by the scheduler.",
            ["queue", "type"], namespace=ns, registry=r,
        )  # fmt: skip
        self.scheduler_errors = Counter(
            "scheduler_errors_total", "Schedules that failed to fire.",
            ["queue", "type"], namespace=ns, registry=r,
        )  # fmt: skip
        self._seen: set[tuple[str, str]] = set()

    def labels(self, queue: str, type_: str) -> tuple[str, str]:
        """(queue, type), or ("other", "other") once MAX_LABEL_SETS pairs are tracked,
        so a flood of distinct queue names cannot blow up the label sets."""
        key = (queue, type_)
        if key in self._seen:
            return key
        if len(self._seen) >= MAX_LABEL_SETS:
            return ("other", "other")
        self._seen.add(key)
        return key

    def observe_enqueue(self, tasks: Sequence[Task], seconds: float) -> None:
        if not tasks:
            return
        counts: dict[tuple[str, str], int] = {}
        for t in tasks:
            k = self.labels(t.queue, t.type)
            counts[k] = counts.get(k, 0) + 1
        for (q, ty), n in counts.items():
            self.tasks_total.labels(q, ty, "waiting").inc(n)
        first = self.labels(tasks[0].queue, tasks[0].type)
        self.enqueue_duration.labels(*first).observe(seconds)

    def observe_claimed(self, tasks: Iterable[Task]) -> None:
        for t in tasks:
            q, ty = self.labels(t.queue, t.type)
            self.tasks_total.labels(q, ty, "running").inc()
            if t.started_at is not None:
                wait = (t.started_at - t.run_at).total_seconds()
                self.queue_wait.labels(q, ty).observe(max(wait, 0.0))

    def observe_heartbeats(self, n: int) -> None:
        if n:
            self.heartbeats.inc(n)

    def observe_ended(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            q, ty = self.labels(row["queue"], row["type"])
            status = row["status"]
            self.tasks_total.labels(q, ty, status).inc()
            started: dt.datetime | None = row.get("started_at")
            ended: dt.datetime | None = row.get("finished_at")
            if started is not None and ended is not None:
                self.run_duration.labels(q, ty, status).observe(
                    max((ended - started).total_seconds(), 0.0)
                )

    def observe_rescued(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            q, ty = self.labels(row["queue"], row["type"])
            self.rescues.labels(q, ty, row["status"]).inc()
