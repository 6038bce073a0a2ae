"""Retention: deleting finished, failed and cancelled tasks once they are older than
the retention period, and forgetting worker rows gone as long.

Waiting and running tasks are never deleted here, whatever their timestamps (the
statement selects final statuses only). Deletes run in batches so no statement holds
locks for long, and SKIP LOCKED lets several pruners run at once.
"""

from __future__ import annotations

import datetime as dt
import logging

from taskq.actions import control as plans
from taskq.core.defaults import PRUNE_INTERVAL, PURGE_BATCH, RETENTION
from taskq.db import Database
from taskq.services.base import Service

log = logging.getLogger("taskq.services")


class Pruner(Service):
    """Deletes ended tasks older than ``retention`` every ``interval`` seconds."""

    name = "pruner"

    def __init__(
        self,
        db: Database,
        *,
        retention: dt.timedelta = RETENTION,
        interval: float = PRUNE_INTERVAL,
        batch: int = PURGE_BATCH,
    ) -> None:
        if retention < dt.timedelta(0):
            raise ValueError("retention cannot be negative")
        self.db = db
        self.retention = retention
        self.interval = interval
        self.batch = batch

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Delete what ended more than ``retention`` before ``now`` (the database clock
        when None); returns how many tasks."""
        stmts = self.db.settings.stmts
        seconds = self.retention.total_seconds()
        total = 0
        while True:
            n = self.db.run(plans.purge(stmts, seconds, None, self.batch, now))
            total += n
            if n < self.batch:
                break
        self.db.query(stmts.workers.forget(seconds, self.batch, now))
        if total:
            log.info("pruned %d task(s) that ended more than %s ago", total, self.retention)
        return total
