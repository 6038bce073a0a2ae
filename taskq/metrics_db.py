"""Gauges read from the database when Prometheus scrapes: one query per scrape.

- ``taskq_queue_tasks{queue,status}``: tasks per queue and status;
- ``taskq_queue_oldest_waiting_seconds{queue}``: age of the oldest runnable task;
- ``taskq_workers_live``: worker processes seen within the staleness window.

A scrape that cannot reach the database reports ``taskq_database_up 0`` and no
other gauges, rather than failing the whole scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from taskq.db import Database
from taskq.queries import Queries
from taskq.worker.identity import WORKER_STALE

STATUSES = ("waiting", "running", "cancelled", "finished", "failed")


class DatabaseCollector(Collector):
    def __init__(self, db: Database, namespace: str = "taskq") -> None:
        self.db = db
        self.q = Queries(db.schema)
        self.ns = namespace

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            f"{self.ns}_database_up", "Whether the last scrape reached the database."
        )
        try:
            with self.db.connection() as conn:
                rows = self.q.counts(conn, WORKER_STALE)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily(
            f"{self.ns}_queue_tasks", "Tasks per queue and status.", labels=["queue", "status"]
        )
        oldest = GaugeMetricFamily(
            f"{self.ns}_queue_oldest_waiting_seconds",
            "Age of the oldest runnable waiting task per queue.",
            labels=["queue"],
        )
        live = GaugeMetricFamily(f"{self.ns}_workers_live", "Live worker processes.")
        seen: dict[str, set[str]] = {}
        for r in rows:
            if r["queue"] is None:
                live.add_metric([], float(r["n"]))
                continue
            tasks.add_metric([r["queue"], r["status"]], float(r["n"]))
            seen.setdefault(r["queue"], set()).add(r["status"])
            if r["oldest_age"] is not None:
                oldest.add_metric([r["queue"]], float(r["oldest_age"]))
        for queue, statuses in seen.items():
            for status in STATUSES:
                if status not in statuses:
                    tasks.add_metric([queue, status], 0.0)
        yield tasks
        yield oldest
        yield live
