"""A side connection for operations: one connection of a process's own for the metrics
scrape and ``/healthz``, reused between requests, every use bounded by a statement
timeout local to its transaction (nothing stays set on the session, so it is safe
behind a transaction pooler), never waiting on (or holding) a connection of the pool
the work needs. A database that cannot be reached fails a use within the timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from taskq.actions.plan import Plan, atomic, run
from taskq.db.connection import connect
from taskq.db.database import Database
from taskq.db.executor import SyncExecutor
from taskq.sql.query import Query

R = TypeVar("R")


class SideConnection:
    """Thread-safe; uses take turns. Built on a ``Database`` (its URL, pooler mode and
    schema); with a caller's pool or connection (no URL), uses run there instead."""

    def __init__(
        self, db: Database, *, application_name: str = "taskq-ops", read: bool = False
    ) -> None:
        self.db = db
        self.application_name = application_name
        # ``read``: on the replica (``read_url``) where the database has one; only for
        # statements that may see its replication delay (the metrics gauges)
        self.url = (db.settings.read_url or db.url) if read else db.url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def run(self, make: Callable[[], Query[R]], timeout: float) -> R:
        """Run the statement ``make()`` builds under a ``timeout`` (seconds)."""
        stmts = self.db.settings.stmts

        def bounded() -> Plan[R]:
            yield from run(stmts.catalog.statement_timeout(timeout))
            return (yield from run(make()))

        if self.url is None:  # a caller's pool or connection: use it
            return self.db.run(atomic(bounded()))
        if not self._lock.acquire(timeout=timeout):
            raise TimeoutError("another request holds the operations connection")
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = connect(
                    self.url, pooler=self.db.settings.pooler,
                    application_name=self.application_name,
                    connect_timeout=max(2, int(timeout)),
                )  # fmt: skip
                self._conn = conn
            try:
                executor = SyncExecutor(conn, prepare=self.db.settings.prepare, caller=False)
                return executor.run(atomic(bounded()))
            except Exception:
                conn.close()
                self._conn = None
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
