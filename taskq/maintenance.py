"""Background services with one shape: a ``run_once`` that tests call directly, and a
loop that runs it every ``interval`` seconds on a thread until stopped.

The worker runs the rescuer; the scheduler process runs the rescuer, the pruner and
the cron tick. Every service is safe to run in any number of processes at once (see
each module), so no leader is needed for correctness.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from taskq.db import Database
from taskq.queries import Queries
from taskq.rescue import rescue_once

if TYPE_CHECKING:
    from taskq.metrics import Metrics

log = logging.getLogger("taskq.maintenance")

DEFAULT_RESCUE_INTERVAL = 2.0
DEFAULT_RETENTION = dt.timedelta(days=7)
DEFAULT_PRUNE_INTERVAL = 60.0
PURGE_BATCH = 1000


class Service(Protocol):
    name: str

    def run_once(self) -> Any:
        """Do one round of work and return a small result (for tests and logs)."""

    def next_delay(self) -> float:
        """Seconds to sleep before the next round."""


class Rescuer:
    """Takes back stale running tasks (see rescue.py) every ``interval`` seconds."""

    name = "rescuer"

    def __init__(
        self,
        db: Database,
        *,
        interval: float = DEFAULT_RESCUE_INTERVAL,
        worker_stale: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.q = Queries(db.schema)
        self.interval = interval
        self.worker_stale = worker_stale
        self.metrics = metrics

    def run_once(self) -> int:
        n = rescue_once(self.db, self.q, worker_stale=self.worker_stale, metrics=self.metrics)
        if n:
            log.warning("rescued %d stale task(s)", n)
        return n

    def next_delay(self) -> float:
        return self.interval


class Pruner:
    """Deletes finished, failed and cancelled tasks older than ``retention``, in
    batches of PURGE_BATCH rows so no statement holds locks for long; also forgets
    worker rows gone for longer than ``retention``."""

    name = "pruner"

    def __init__(
        self,
        db: Database,
        *,
        retention: dt.timedelta = DEFAULT_RETENTION,
        interval: float = DEFAULT_PRUNE_INTERVAL,
    ) -> None:
        self.db = db
        self.q = Queries(db.schema)
        self.retention = retention
        self.interval = interval

    def run_once(self) -> int:
        total = 0
        with self.db.connection() as conn:
            row = conn.execute("SELECT now() - %s::interval", (self.retention,)).fetchone()
            assert row is not None
            while True:
                n = self.q.purge(conn, row[0], PURGE_BATCH)
                total += n
                if n < PURGE_BATCH:
                    break
            self.q.worker(conn, "forget", before=row[0], limit=PURGE_BATCH)
        if total:
            log.info("pruned %d task(s) that ended before %s", total, row[0])
        return total

    def next_delay(self) -> float:
        return self.interval


class Maintenance:
    """Runs services on one thread each until ``stop()``; a failing round is logged once
    per outage and retried after the service's delay (capped backoff on errors)."""

    def __init__(self, services: Sequence[Service], stop: threading.Event | None = None) -> None:
        self.services = list(services)
        self.stop_event = stop or threading.Event()
        self._threads: list[threading.Thread] = []
        self.healthy = True

    def start(self) -> None:
        for s in self.services:
            t = threading.Thread(target=self._loop, args=(s,), name=f"taskq-{s.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def _loop(self, service: Service) -> None:
        failing = False
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                service.run_once()
                if failing:
                    log.warning("%s: working again", service.name)
                failing = False
                backoff = 1.0
                delay = service.next_delay()
            except Exception as e:
                if not failing:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    log.warning("%s: %s (retrying)", service.name, first)
                failing = True
                delay = min(backoff, service.next_delay() if service.next_delay() > 0 else 5.0)
                backoff = min(backoff * 2, 30.0)
            self.stop_event.wait(delay)
