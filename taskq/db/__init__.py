"""The database layer: connections (taskq's own, a caller's, the embedded server),
the executors that run ``taskq.sql`` statements and ``taskq.actions`` plans, LISTEN,
migrations and DDL helpers."""

from taskq.db.adatabase import AsyncDatabase
from taskq.db.database import Database, Db

__all__ = ["AsyncDatabase", "Database", "Db"]
