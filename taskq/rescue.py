"""The rescue: taking back tasks whose worker stopped heartbeating or vanished.

A running task is stale when its ``last_heartbeat_at`` is older than its own
``heartbeat_timeout``, or when the worker process holding it (``worker_id``) has
stopped or has not been seen for ``worker_stale`` seconds. A stale task goes back to
waiting if attempts remain (the crashed attempt counts), else it fails with an error
that says so. Both tests use the database clock only.

Safe from any number of processes at once: stale rows are picked ``FOR UPDATE SKIP
LOCKED`` and each update re-checks ``status = 'running'``, so a task that a worker
finishes while the rescue looks at it stays finished. Clearing the lease is what
fences the old worker out afterwards (see dequeuer.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from taskq.db import Database
from taskq.queries import Queries
from taskq.workflow import after_final

if TYPE_CHECKING:
    from taskq.metrics import Metrics

events = logging.getLogger("taskq.events")


def rescue_once(
    db: Database,
    q: Queries,
    *,
    worker_stale: float,
    limit: int = 1000,
    metrics: Metrics | None = None,
) -> int:
    """Rescue stale tasks in batches of ``limit`` until none is left; returns how many."""
    total = 0
    while True:
        with db.transaction() as conn:
            rows = q.rescue(conn, worker_stale, limit)
            after_final(conn, q, rows)
        total += len(rows)
        if metrics is not None and rows:
            metrics.observe_rescued(rows)
        for r in rows:
            events.warning("task rescued", extra={
                "task_id": str(r["id"]), "queue": r["queue"], "task_type": r["type"],
                "attempt": r["attempts"], "status": r["status"], "error": r.get("error"),
            })  # fmt: skip
        if len(rows) < limit:
            return total
