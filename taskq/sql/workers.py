"""The statements of ``taskq/sql/workers.sql`` for one schema: one typed function each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from taskq.sql.blocks import load, render
from taskq.sql.query import Query, read_count, read_dicts, read_nothing, read_scalar, statement


class WorkerStatements:
    """``workers.sql`` rendered for ``schema``."""

    FILE = "workers.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        table = sql.Identifier(schema, "workers")
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, workers=table) for b in load(self.FILE).values()
        }

    def _q(self, name: str, params: dict[str, Any], read: Any) -> Query[Any]:
        return Query(f"workers.{name}", self._text[name], params, read)

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def register(
        self, worker_id: str, host: str, pid: int, queues: Sequence[str], concurrency: int
    ) -> Query[None]:
        params = {"id": worker_id, "host": host, "pid": pid, "queues": list(queues),
                  "concurrency": concurrency}  # fmt: skip
        return self._q("register", params, read_nothing)

    @statement
    def seen(self, worker_id: str, running: int) -> Query[int]:
        """Reads as 1 when the worker's row exists (0: it was forgotten; register again)."""
        return self._q("seen", {"id": worker_id, "running": running}, read_scalar)

    @statement
    def stopped(self, worker_id: str) -> Query[None]:
        return self._q("stopped", {"id": worker_id}, read_nothing)

    @statement
    def list_workers(self, stale: float, limit: int) -> Query[list[dict[str, Any]]]:
        return self._q("list_workers", {"stale": stale, "limit": limit}, read_dicts)

    @statement
    def forget(self, older_than: float, limit: int, now: dt.datetime | None = None) -> Query[int]:
        params = {"older_than": older_than, "limit": limit, "now": now}
        return self._q("forget", params, read_count)
