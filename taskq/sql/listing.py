"""The statement of ``taskq/sql/listing.sql`` for one schema: listing tasks (the query
itself is written by the schema's ``list_query`` function, migration 0007)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from taskq.core.types import Task
from taskq.sql.blocks import load, render
from taskq.sql.query import Query, read_tasks, statement


class ListingStatements:
    """``listing.sql`` rendered for ``schema``."""

    FILE = "listing.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        parts = {"list_tasks": sql.Identifier(schema, "list_tasks")}
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, **parts) for b in load(self.FILE).values()
        }

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def list_tasks(
        self,
        *,
        limit: int,
        queue: str | None = None,
        statuses: Sequence[str] | None = None,
        type: str | None = None,
        user_id: str | None = None,
        title: str | None = None,
        before: Any = None,
        before_seq: int | None = None,
    ) -> Query[list[Task]]:
        params = {
            "limit": limit, "queue": queue,
            "statuses": None if statuses is None else list(dict.fromkeys(statuses)),
            "type": type, "user_id": user_id, "title": title,
            "before": before, "before_seq": before_seq,
        }  # fmt: skip
        return Query("listing.list_tasks", self._text["list_tasks"], params, read_tasks)
