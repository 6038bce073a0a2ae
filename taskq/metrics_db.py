"""Gauges read from the database when Prometheus scrapes: one cheap query per scrape.

- ``taskq_queue_tasks{queue,status}``: waiting and running tasks per queue, exact;
  finished, failed and cancelled ones too while the table is at most 64 MiB
  (``queries.EXACT_FINAL_COUNTS_BYTES``), above which the estimate below stands in;
- ``taskq_queue_oldest_waiting_seconds{queue}``: age of the oldest runnable waiting
  task (``run_at`` passed), 0 when none;
- ``taskq_tasks_stored_estimate{status}``: rows per status in the whole table, from the
  planner's statistics (no samples before the table's first ANALYZE);
- ``taskq_workers_live``: worker processes seen within the staleness window;
- ``taskq_database_up``: 1 when the scrape's query succeeded, else 0 and no other gauge.

Cost: the query (``counts`` in sql/tasks.sql) counts waiting and running rows through
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
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from taskq.db import Database, _tcp_kwargs
from taskq.queries import EXACT_FINAL_COUNTS_BYTES, Queries
from taskq.worker.identity import WORKER_STALE

if TYPE_CHECKING:
    from taskq.metrics import Metrics

DEFAULT_MAX_QUEUES = 200
"""Queues with their own gauge series; the rest share queue="other"."""
OTHER = "other"
SCRAPE_TIMEOUT = 5.0
"""Seconds the scrape's query may run."""


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
    ) -> None:
        if max_queues < 1:
            raise ValueError("max_queues must be at least 1")
        self.db = db
        self.q = Queries(db.schema)
        self.ns = namespace
        self.max_queues = max_queues
        self.metrics = metrics
        self.worker_stale = worker_stale
        self.timeout = timeout
        self.exact_bytes = exact_bytes
        self._known: OrderedDict[str, None] = OrderedDict()  # queues reported before
        self._lock = Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_lock = Lock()

    def _query(self) -> list[dict[str, object]]:
        if self.db.url is None:  # a caller's pool or connection: use it
            with self.db.transaction() as conn:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (f"{int(self.timeout * 1000)}ms",),
                )
                return self.q.counts(conn, self.worker_stale, self.max_queues, self.exact_bytes)
        # Its own connection, not one from the process's pool: a scrape never waits for
        # the pool (or holds a connection the work needs), and when the database is
        # unreachable it fails within the timeout instead of hanging the scrape.
        if not self._conn_lock.acquire(timeout=self.timeout):
            raise TimeoutError("another scrape holds the metrics connection")
        try:
            own = self._conn
            if own is None or own.closed:
                own = psycopg.connect(
                    self.db.url,
                    **(_tcp_kwargs(self.db.url) | {"connect_timeout": max(2, int(self.timeout))}),
                    autocommit=True,
                    application_name="taskq-metrics",
                )
                own.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (f"{int(self.timeout * 1000)}ms",),
                )
                self._conn = own
            try:
                return self.q.counts(own, self.worker_stale, self.max_queues, self.exact_bytes)
            except Exception:
                own.close()
                self._conn = None
                raise
        finally:
            self._conn_lock.release()

    def close(self) -> None:
        """Close the collector's own connection (it reopens on the next scrape)."""
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

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
