"""The rescue: taking back tasks whose worker stopped heartbeating or vanished.

A running task is stale when its ``last_heartbeat_at`` is older than its own
``heartbeat_timeout``, or when the worker process holding it (``worker_id``) has
stopped or has not been seen for ``worker_stale`` seconds. A stale task goes back to
waiting if attempts remain (the crashed attempt counts), else it fails with an error
that says so. Both tests use the database clock only.

Safe from any number of processes at once: stale rows are picked ``FOR UPDATE SKIP
LOCKED`` and each update re-checks ``status = 'running'``, so a task that a worker
finishes while the rescue looks at it stays finished. Clearing the lease is what
fences the old worker out afterwards (see taskq/dequeuer.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from taskq.actions import outcomes as plans
from taskq.core.defaults import RESCUE_BATCH, RESCUE_INTERVAL, WORKER_STALE
from taskq.db import Database
from taskq.dequeuer import log_rescued
from taskq.services.base import Service

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics

log = logging.getLogger("taskq.services")


class Rescuer(Service):
    """Takes back stale running tasks every ``interval`` seconds."""

    name = "rescuer"

    def __init__(
        self,
        db: Database,
        *,
        interval: float = RESCUE_INTERVAL,
        worker_stale: float = WORKER_STALE,
        batch: int = RESCUE_BATCH,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.interval = interval
        self.worker_stale = worker_stale
        self.batch = batch
        self.metrics = metrics

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Rescue every task stale as of ``now`` (the database clock when None), in
        batches; returns how many were rescued."""
        s = self.db.settings
        total = 0
        while True:
            written = self.db.run(plans.rescue(s.stmts, s.columns, self.worker_stale,
                                               self.batch, now))  # fmt: skip
            total += len(written.rows)
            log_rescued(written)
            if self.metrics is not None and written.rows:
                self.metrics.observe_rescued(written.rows)
            if len(written.rows) + len(written.errors) < self.batch or not written.rows:
                break
        if total:
            log.warning("rescued %d stale task(s)", total)
        return total
