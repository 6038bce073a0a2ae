"""Gauges read from the database when Prometheus scrapes: one cheap query per scrape.

- ``taskq_queue_tasks{queue,status}``: waiting and running tasks per queue, exact;
  finished, failed and cancelled ones too while the table is at most 64 MiB
  (``EXACT_FINAL_COUNTS_BYTES``), above which the estimate below stands in;
- ``taskq_queue_oldest_waiting_seconds{queue}``: age of the oldest runnable waiting
  task (``run_at`` passed), 0 when none;
- ``taskq_tasks_stored_estimate{status}``: rows per status in the whole table, from the
  planner's statistics (no samples before the table's first ANALYZE);
- ``taskq_workers_live``: worker processes seen within the staleness window;
- ``taskq_database_up``: 1 when the scrape's query succeeded, else 0 and no other gauge.

Cost: the query (``counts`` in taskq/sql/gauges.sql) counts waiting and running rows through
their partial indexes and never scans finished, failed or cancelled rows, so it stays
cheap however much history the table holds; transitions into those statuses are
counted by ``taskq_tasks_total``. It runs under a statement timeout, so a slow
database makes a scrape report ``taskq_database_up 0`` instead of hanging.

Bounded labels: at most ``max_queues`` queues (those with the most waiting + running
tasks) get their own series; the rest are added up under ``queue="other"``. A queue
that this collector reported before, or that this process's ``Metrics`` has seen, is
reported with zeros once it is empty (rather than its series vanishing), as long as
every non-empty queue fits under the cap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from threading import Lock
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from taskq.core.defaults import SCRAPE_TIMEOUT, WORKER_STALE
from taskq.db import Database
from taskq.db.side import SideConnection

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics

DEFAULT_MAX_QUEUES = 200
"""Queues with their own gauge series; the rest share queue="other"."""
OTHER = "other"
EXACT_FINAL_COUNTS_BYTES = 64 * 1024 * 1024
"""Up to this table size a scrape also counts finished, failed and cancelled tasks per
queue exactly; above it only the planner's estimate per status is reported."""


class DatabaseCollector(Collector):
    """Register on a registry: ``registry.register(DatabaseCollector(db))``."""

    def __init__(
        self,
        db: Database,
        namespace: str = "taskq",
        *,
        max_queues: int = DEFAULT_MAX_QUEUES,
        metrics: Metrics | None = None,
        worker_stale: float = WORKER_STALE,
        timeout: float = SCRAPE_TIMEOUT,
        exact_bytes: int = EXACT_FINAL_COUNTS_BYTES,
        side: SideConnection | None = None,
    ) -> None:
        if max_queues < 1:
            raise ValueError("max_queues must be at least 1")
        self.db = db
        self.ns = namespace
        self.max_queues = max_queues
        self.metrics = metrics
        self.worker_stale = worker_stale
        self.timeout = timeout
        self.exact_bytes = exact_bytes
        self._known: OrderedDict[str, None] = OrderedDict()  # queues reported before
        self._lock = Lock()
        self.side = (
            side if side is not None else SideConnection(db, application_name="taskq-metrics")
        )

    def _query(self) -> list[dict[str, object]]:
        counts = self.db.settings.stmts.gauges.counts
        return self.side.run(
            lambda: counts(self.worker_stale, self.max_queues, self.exact_bytes), self.timeout
        )

    def close(self) -> None:
        """Close the collector's own connection (it reopens on the next scrape)."""
        self.side.close()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            f"{self.ns}_database_up", "Whether the last scrape reached the database."
        )
        try:
            rows = self._query()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily(
            f"{self.ns}_queue_tasks",
            "Tasks per queue and status (final statuses only while the table is small).",
            labels=["queue", "status"],
        )
        oldest = GaugeMetricFamily(
            f"{self.ns}_queue_oldest_waiting_seconds",
            "Age of the oldest runnable waiting task per queue (0 when none).",
            labels=["queue"],
        )
        stored = GaugeMetricFamily(
            f"{self.ns}_tasks_stored_estimate",
            "Rows per status in the tasks table, estimated from planner statistics.",
            labels=["status"],
        )
        live = GaugeMetricFamily(f"{self.ns}_workers_live", "Live worker processes.")
        per_queue: dict[str, tuple[float, float, float]] = {}  # waiting, running, age
        reported: list[str] = []
        overflow = False
        for r in rows:
            kind = r["kind"]
            if kind == "queue" or kind == "other":
                queue = str(r["queue"]) if kind == "queue" else OTHER
                w, n, a = per_queue.get(queue, (0.0, 0.0, 0.0))  # a queue named "other"
                per_queue[queue] = (
                    w + _f(r["waiting"]),
                    n + _f(r["running"]),
                    max(a, _f(r["oldest_age"])),
                )
                if kind == "queue":
                    reported.append(queue)
                else:
                    overflow = True
            elif kind == "estimate":  # the count is in the first number column
                stored.add_metric([str(r["status"])], _f(r["waiting"]))
            elif kind == "final":  # the count is in the first number column
                queue = str(r["queue"])
                tasks.add_metric([queue, str(r["status"])], _f(r["waiting"]))
                if queue not in per_queue:  # a queue with only ended tasks: zeros below
                    per_queue[queue] = (0.0, 0.0, 0.0)
                    reported.append(queue)
            elif kind == "workers":
                live.add_metric([], _f(r["waiting"]))
        with self._lock:
            for queue in reported:
                self._known[queue] = None
                self._known.move_to_end(queue)
            while len(self._known) > self.max_queues:
                self._known.popitem(last=False)
            known = list(self._known)
        if not overflow:
            # Every non-empty queue is listed, so any other queue we know of is empty.
            extra = set(known) | (self.metrics.queues() if self.metrics else set())
            room = self.max_queues - len(reported)
            for queue in sorted(extra - set(per_queue) - {OTHER})[: max(room, 0)]:
                per_queue[queue] = (0.0, 0.0, 0.0)
        for queue, (waiting, running, age) in per_queue.items():
            tasks.add_metric([queue, "waiting"], waiting)
            tasks.add_metric([queue, "running"], running)
            oldest.add_metric([queue], age)
        yield tasks
        yield oldest
        yield stored
        yield live


def _f(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
