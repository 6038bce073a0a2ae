"""Prometheus metrics, on a registry that is passed in (no module-level state).

One ``Metrics`` object holds every metric taskq's own code updates; hand the same
object to each taskq object of a process (registering two on one registry is refused
by prometheus-client as duplicated time series)::

    from prometheus_client import REGISTRY      # or your own CollectorRegistry
    from taskq.ops.metrics import Metrics

    metrics = Metrics(REGISTRY)                  # namespace="taskq" by default
    queuer = taskq.Queuer(url, metrics=metrics)  # producer side

Producer side (``Queuer(metrics=...)``): ``taskq_tasks_total{status="waiting"}`` per
task stored and ``taskq_enqueue_duration_seconds`` per enqueue call (counted when the
call returns: with a caller's connection, before the caller commits or rolls back).
Worker side (``Dequeuer``/``taskq worker``): transitions into running, finished,
failed and back to waiting (retry, rescue); run duration per attempt; queue wait (due
``run_at`` to start); heartbeats; rescues. Scheduler side:
``taskq_scheduler_schedules_total`` and ``taskq_scheduler_errors_total``. Gauges read
from the database on scrape are in ``taskq.metrics_db.DatabaseCollector``.

Label sets are bounded: at most ``max_label_sets`` distinct (queue, type) pairs get
their own labels; later pairs share ``queue="other", type="other"``, so a flood of
distinct queue names cannot grow the registry without limit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from taskq.core.types import Task

DEFAULT_NAMESPACE = "taskq"
MAX_LABEL_SETS = 250
"""Distinct (queue, type) pairs tracked per process; beyond it they share OTHER.

Worst case per process, with every pair in use: about 70 series per pair on a worker
(histogram buckets dominate), so about 18,000 series."""
OTHER = "other"
"""The queue and type label of pairs beyond the cap."""

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
_RUN_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """taskq's metric objects, registered on ``registry`` (a private one if None)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        max_label_sets: int = MAX_LABEL_SETS,
    ) -> None:
        if max_label_sets < 1:
            raise ValueError("max_label_sets must be at least 1")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.max_label_sets = max_label_sets
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
            "task_run_duration_seconds",
            "Time from start to end of an attempt, by the status it ended in "
            "(waiting: failed and will be retried).",
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
            "rescues_total", "Stale running tasks taken back by the rescue, by the status "
            "they went to.", ["queue", "type", "status"], namespace=ns, registry=r,
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
        self._lock = threading.Lock()

    def labels(self, queue: str, type_: str) -> tuple[str, str]:
        """(queue, type), or (OTHER, OTHER) once ``max_label_sets`` pairs are tracked,
        so a flood of distinct queue names cannot blow up the label sets."""
        key = (queue, type_)
        with self._lock:
            if key in self._seen:
                return key
            if len(self._seen) >= self.max_label_sets:
                return (OTHER, OTHER)
            self._seen.add(key)
            return key

    def queues(self) -> set[str]:
        """The queues this process has labels for (at most ``max_label_sets``)."""
        with self._lock:
            return {q for q, _ in self._seen}

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
        """Attempts that ended by finish or fail: rows with queue, type, the status they
        went to, started_at and the end time (``ended_at``, else ``finished_at``)."""
        for row in rows:
            q, ty = self.labels(row["queue"], row["type"])
            status = row["status"]
            self.tasks_total.labels(q, ty, status).inc()
            started: dt.datetime | None = row.get("started_at")
            ended: dt.datetime | None = row.get("ended_at") or row.get("finished_at")
            if started is not None and ended is not None:
                self.run_duration.labels(q, ty, status).observe(
                    max((ended - started).total_seconds(), 0.0)
                )

    def observe_released(self, tasks: Iterable[Task]) -> None:
        """Claimed tasks given back to waiting at shutdown (no attempt charged)."""
        for t in tasks:
            self.tasks_total.labels(*self.labels(t.queue, t.type), "waiting").inc()

    def observe_rescued(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Tasks the rescue took back: a transition (to waiting or failed) and a rescue.
        Their run time is not observed: it ends at the rescue, not at the crash."""
        for row in rows:
            q, ty = self.labels(row["queue"], row["type"])
            self.tasks_total.labels(q, ty, row["status"]).inc()
            self.rescues.labels(q, ty, row["status"]).inc()
