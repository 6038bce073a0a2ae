"""The SQL layer: every statement taskq runs is a named block in ``taskq/sql/*.sql``,
exposed by exactly one typed function that returns a ``Query`` (text, parameters, and
how to read the result). Nothing here opens a connection: ``taskq.db`` runs Queries,
synchronously or on asyncio, the same way.
"""

from __future__ import annotations

from functools import lru_cache

from taskq.core.schedules import ScheduleKey
from taskq.sql.catalog import CatalogStatements, GaugeStatements
from taskq.sql.listing import ListingStatements
from taskq.sql.query import Query
from taskq.sql.schedules import ScheduleStatements
from taskq.sql.stats import StatsStatements
from taskq.sql.tasks import TaskStatements
from taskq.sql.tokens import TokenStatements
from taskq.sql.workers import WorkerStatements


class Statements:
    """Every statement of one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.tasks = TaskStatements(schema)
        self.listing = ListingStatements(schema)
        self.schedules = ScheduleStatements(schema)
        self.workers = WorkerStatements(schema)
        self.catalog = CatalogStatements(schema)
        self.gauges = GaugeStatements(schema)
        self.stats = StatsStatements(schema)
        self.tokens = TokenStatements(schema)


@lru_cache(maxsize=64)
def statements(schema: str) -> Statements:
    """The statements of ``schema`` (rendered once per schema and process)."""
    return Statements(schema)


STATEMENT_CLASSES = (
    TaskStatements, ScheduleStatements, WorkerStatements, CatalogStatements, GaugeStatements,
    StatsStatements, TokenStatements, ListingStatements,
)  # fmt: skip

__all__ = ["STATEMENT_CLASSES", "Query", "ScheduleKey", "Statements", "statements"]
