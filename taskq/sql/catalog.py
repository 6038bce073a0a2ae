"""The statements of ``taskq/sql/catalog.sql`` (PostgreSQL's own catalogs and
per-transaction settings) and ``taskq/sql/gauges.sql`` (the database gauges)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from taskq.sql.blocks import load, render
from taskq.sql.query import (
    Query,
    Rows,
    read_column,
    read_dicts,
    read_nothing,
    read_scalar,
    statement,
)


def _missing(names: Sequence[str], rows: Rows) -> list[tuple[str, str, bool]]:
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


class CatalogStatements:
    """``catalog.sql`` (schema-independent but for the names it is given)."""

    FILE = "catalog.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._text: dict[str, LiteralString] = {b.name: b.text for b in load(self.FILE).values()}

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def table_columns(self, table: str) -> Query[list[str]]:
        params = {"schema": self.schema, "table": table}
        return Query("catalog.table_columns", self._text["table_columns"], params, read_column)

    @statement
    def statement_timeout(self, seconds: float) -> Query[None]:
        """Bound the rest of the current transaction's statements (no session state)."""
        params = {"ms": f"{max(1, int(seconds * 1000))}ms"}
        return Query("catalog.statement_timeout", self._text["statement_timeout"], params,
                     read_nothing)  # fmt: skip

    @statement
    def ping(self) -> Query[Any]:
        return Query("catalog.ping", self._text["ping"], {}, read_scalar)

    @statement
    def plan_once(self) -> Query[None]:
        return Query("catalog.plan_once", self._text["plan_once"], {}, read_nothing)

    @statement
    def missing_privileges(
        self, pairs: list[tuple[str, str]]
    ) -> Query[list[tuple[str, str, bool]]]:
        """Of (table, privilege) pairs, those the current role lacks, each with whether
        the table is absent altogether."""
        params = {"schema": self.schema, "tables": [t for t, _ in pairs],
                  "privileges": [p for _, p in pairs]}  # fmt: skip
        return Query("catalog.missing_privileges", self._text["missing_privileges"], params,
                     _missing)  # fmt: skip

    @statement
    def listen(self, channel: str) -> Query[None]:
        text = render(self._text["listen"], channel=sql.Identifier(channel))
        return Query("catalog.listen", text, {}, read_nothing)


class GaugeStatements:
    """``gauges.sql`` rendered for ``schema``."""

    FILE = "gauges.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        parts = {
            "tasks": sql.Identifier(schema, "tasks"),
            "workers": sql.Identifier(schema, "workers"),
        }
        self._text = {b.name: render(b.text, **parts) for b in load(self.FILE).values()}

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def counts(
        self, worker_stale: float, max_queues: int, exact_bytes: int
    ) -> Query[list[dict[str, Any]]]:
        """The gauges of one scrape (see the statement's comment)."""
        params = {"stale": worker_stale, "max_queues": max_queues, "schema": self.schema,
                  "exact_bytes": exact_bytes}  # fmt: skip
        return Query("gauges.counts", self._text["counts"], params, read_dicts)
