"""The statements of ``taskq/sql/stats.sql`` (read-only summaries of the tasks table
for the HTTP service and its dashboard) for one schema: one typed function each."""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import sql

from taskq.sql.blocks import load, render
from taskq.sql.query import Query, read_dicts, statement

Dicts = list[dict[str, Any]]


class StatsStatements:
    """``stats.sql`` rendered for ``schema``."""

    FILE = "stats.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        table = sql.Identifier(schema, "tasks")
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, tasks=table) for b in load(self.FILE).values()
        }

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def queue_counts(self) -> Query[Dicts]:
        """Rows of (queue, status, n)."""
        return Query("stats.queue_counts", self._text["queue_counts"], {}, read_dicts)

    @statement
    def throughput(self, minutes: int) -> Query[Dicts]:
        """Rows of (queue, status, ago, n): ``ago`` whole minutes back from now."""
        return Query("stats.throughput", self._text["throughput"], {"minutes": minutes},
                     read_dicts)  # fmt: skip
