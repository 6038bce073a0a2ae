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


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached (rather than a bad query)."""
    import psycopg
    import psycopg_pool

    return isinstance(
        error, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout
    )


class Maintenance:
    """Runs services on one thread each until ``stop()``; a failing round is logged once
    per outage and retried after the service's delay (capped backoff on errors).

    A service may have ``wait(delay, stop_event)``: it is called instead of sleeping
    ``delay`` seconds, so the service can wake early (the cron tick wakes on NOTIFY); it
    must return soon after ``stop_event`` is set.

    With ``one_outage_line``, losing the database is logged once for all services
    together ("database unreachable ..."), and its return once at INFO, however many
    services notice; other errors are still logged once per service.
    """

    def __init__(
        self,
        services: Sequence[Service],
        stop: threading.Event | None = None,
        *,
        one_outage_line: bool = False,
    ) -> None:
        self.services = list(services)
        self.stop_event = stop or threading.Event()
        self._threads: list[threading.Thread] = []
        self.healthy = True
        self.one_outage_line = one_outage_line
        self._outage = False
        self._outage_lock = threading.Lock()

    def start(self) -> None:
        for s in self.services:
            t = threading.Thread(target=self._loop, args=(s,), name=f"taskq-{s.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def _outage_began(self, first: str) -> None:
        with self._outage_lock:
            if not self._outage:
                self._outage = True
                log.warning("database unreachable (%s); retrying", first)

    def _outage_ended(self) -> None:
        with self._outage_lock:
            if self._outage:
                self._outage = False
                log.info("database reachable again")

    def _loop(self, service: Service) -> None:
        failing: str | None = None  # None, "outage" or "error"
        backoff = 1.0
        waiter = getattr(service, "wait", None)
        while not self.stop_event.is_set():
            try:
                service.run_once()
                if failing == "outage":
                    self._outage_ended()
                elif failing:
                    log.warning("%s: working again", service.name)
                failing = None
                backoff = 1.0
                delay = service.next_delay()
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if self.one_outage_line and is_outage(e):
                    self._outage_began(first)
                    failing = "outage"
                elif not failing:
                    log.warning("%s: %s (retrying)", service.name, first)
                    failing = "error"
                delay = min(backoff, service.next_delay() if service.next_delay() > 0 else 5.0)
                backoff = min(backoff * 2, 30.0)
            if waiter is not None and failing is None:
                waiter(delay, self.stop_event)
            else:
                self.stop_event.wait(delay)
