"""What every public taskq object shares: where its SQL runs, and its life.

An object built from a URI (or None: ``TASKQ_DATABASE_URL``, else the embedded
server) owns a pool, is safe to share between threads (tasks of one event loop for the
asyncio face), has ``close()`` (``await close()``) and is a context manager. Given a
caller's pool or connection it owns nothing: closing it closes nothing of the caller's.
Given a ``Database`` (``AsyncDatabase``), several objects share that one and closing
one of them leaves it open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from taskq.db import AsyncDatabase, Database
from taskq.sql import Statements

if TYPE_CHECKING:
    from taskq.db.alisten import AsyncListener
    from taskq.db.listen import Listener


D = TypeVar("D", Database, AsyncDatabase)


class _Base(Generic[D]):
    """What both faces' objects share: the database they use (given, or made from a
    URI, and then theirs to close) and its statements."""

    _database: type[D]

    def __init__(
        self,
        db: Any,
        *,
        schema: str | None,
        pool_size: int,
        pooler: str | None = None,
        listen_url: str | None = None,
        read_url: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self._owns_db = not isinstance(db, self._database)
        self._db: D = (
            db if not self._owns_db
            else self._database(db, schema, max_size=pool_size, pooler=pooler,
                                listen_url=listen_url, read_url=read_url,
                                poll_interval=poll_interval)
        )  # fmt: skip
        self._stmts: Statements = self._db.settings.stmts

    @property
    def schema(self) -> str:
        return self._db.schema

    @property
    def database(self) -> D:
        return self._db


class Client(_Base[Database]):
    """Base of the synchronous objects (Queuer, Dequeuer, Tasks, Scheduler)."""

    _database = Database

    def listener(self) -> Listener | None:
        """The LISTEN connection this object's waits use (started now if not yet), or
        None when it only polls (a caller's connection; a transaction pooler with no
        ``listen_url``)."""
        return self._db.listener()

    def close(self) -> None:
        """Close the pool (and LISTEN connection) this object made; idempotent."""
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base[AsyncDatabase]):
    """Base of the asyncio objects (AsyncQueuer, AsyncDequeuer, AsyncTasks,
    AsyncScheduler)."""

    _database = AsyncDatabase

    async def listener(self) -> AsyncListener | None:
        """The LISTEN connection this object's waits use (started now if not yet), or
        None when it only polls."""
        return await self._db.listener()

    async def close(self) -> None:
        if self._owns_db:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
