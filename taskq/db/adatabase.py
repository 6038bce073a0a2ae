"""``AsyncDatabase``: the asyncio twin of ``taskq.db.database.Database``. Statements
run on psycopg's ``AsyncConnection`` (a pool it owns, a caller's
``AsyncConnectionPool`` or ``AsyncConnection``, or SQLAlchemy's ``AsyncConnection`` /
``AsyncSession``), through the same plans; nothing blocks the event loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from taskq.actions.plan import Plan
from taskq.core.defaults import POOL_SIZE
from taskq.db.connection import (
    async_connection_class,
    connect_kwargs,
    is_sqlalchemy,
    sqlalchemy_async_connection,
)
from taskq.db.executor import AsyncExecutor
from taskq.db.settings import Settings, resolve
from taskq.sql.query import Query

if TYPE_CHECKING:
    from taskq.db.alisten import AsyncListener

R = TypeVar("R")

AsyncDb = Any
"""A URI string, a ``psycopg_pool.AsyncConnectionPool``, a ``psycopg.AsyncConnection``,
or a SQLAlchemy ``AsyncConnection``/``AsyncSession`` bound to psycopg 3."""


def _pool(url: str, settings: Settings, min_size: int, max_size: int, timeout: float,
          name: str) -> AsyncConnectionPool[Any]:  # fmt: skip
    return AsyncConnectionPool(
        url,
        connection_class=async_connection_class(url),
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(url, pooler=settings.pooler, application_name=name),
        open=False,
        name=name,
        reconnect_timeout=60.0,
        timeout=timeout,
        max_idle=60.0,
    )


class AsyncDatabase:
    """Connections for asyncio taskq objects (see ``Database`` for the arguments).

    A pool it owns is opened on first use, inside the running event loop.
    """

    def __init__(
        self,
        db: AsyncDb = None,
        schema: str | None = None,
        *,
        pooler: str | None = None,
        listen_url: str | None = None,
        read_url: str | None = None,
        poll_interval: float | None = None,
        min_size: int = 1,
        max_size: int = POOL_SIZE,
        application_name: str = "taskq",
        timeout: float = 30.0,
        listen_channels: Sequence[str] = (),
    ) -> None:
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._sqlalchemy: Any = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._read_pool: AsyncConnectionPool[Any] | None = None
        self.owns_pool = db is None or isinstance(db, str)
        url: str | None = db if isinstance(db, str) else None
        if isinstance(db, AsyncConnectionPool):
            url = db.conninfo if isinstance(db.conninfo, str) else None
        elif (
            not self.owns_pool
            and not isinstance(db, psycopg.AsyncConnection)
            and not is_sqlalchemy(db, asyncio=True)
        ):
            raise TypeError(
                "db must be a database URI, a psycopg_pool.AsyncConnectionPool, a psycopg "
                "AsyncConnection, or a SQLAlchemy AsyncConnection/AsyncSession; got "
                f"{type(db).__name__}"
            )
        self.settings = resolve(
            schema=schema, url=url, owns=self.owns_pool, pooler=pooler, listen=listen_url,
            read=read_url, poll_interval=poll_interval, application_name=application_name,
        )  # fmt: skip
        s = self.settings
        if self.owns_pool:
            assert s.url is not None
            self._pool = _pool(s.url, s, min_size, max_size, timeout, application_name)
        elif isinstance(db, AsyncConnectionPool):
            self._pool = db
        elif isinstance(db, psycopg.AsyncConnection):
            self._conn = db
        else:
            self._sqlalchemy = db
        if s.read_url is not None and not self.joins_caller:
            self._read_pool = _pool(s.read_url, s, 0, max_size, timeout, f"{application_name}-read")
        self._opened = False
        self._listener: AsyncListener | None = None
        self._extra_channels = tuple(listen_channels)

    @property
    def schema(self) -> str:
        return self.settings.schema

    @property
    def url(self) -> str | None:
        return self.settings.url

    @property
    def joins_caller(self) -> bool:
        return self._conn is not None or self._sqlalchemy is not None

    async def _open(self) -> None:
        if not self._opened:
            self._opened = True
            for pool in (self._pool, self._read_pool):
                if pool is not None and (pool is not self._pool or self.owns_pool):
                    await pool.open(wait=False)

    @contextlib.asynccontextmanager
    async def connection(
        self, *, read: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._read_pool if read and self._read_pool is not None else self._pool
        if pool is not None:
            await self._open()
            async with pool.connection() as conn:
                yield conn
        elif self._conn is not None:
            yield self._conn
        else:
            yield await sqlalchemy_async_connection(self._sqlalchemy)

    def executor(self, conn: psycopg.AsyncConnection[Any]) -> AsyncExecutor:
        return AsyncExecutor(conn, prepare=self.settings.prepare, caller=self.joins_caller)

    async def run(self, plan: Plan[R], *, read: bool = False) -> R:
        async with self.connection(read=read) as conn:
            return await self.executor(conn).run(plan)

    async def query(self, query: Query[R], *, read: bool = False) -> R:
        async with self.connection(read=read) as conn:
            return await self.executor(conn).query(query)

    async def listener(self) -> AsyncListener | None:
        """The LISTEN connection for this database (started on first use in the running
        loop, shared by every waiter), or None: poll only."""
        url = self.settings.listen_url
        if url is None:
            return None
        if self._listener is None:
            from taskq.db.alisten import AsyncListener

            stmts = self.settings.stmts
            self._listener = AsyncListener(
                url, [stmts.tasks.channel, stmts.tasks.events, stmts.schedules.channel,
                      *self._extra_channels],
                stmts.catalog, name=f"{self.settings.application_name}-listen",
            )  # fmt: skip
            await self._listener.wait_connected(2.0)
        return self._listener

    async def wait_ready(self, timeout: float = 30.0) -> None:
        if self._pool is not None:
            await self._open()
            await self._pool.wait(timeout)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        if self._read_pool is not None:
            await self._read_pool.close()
        if self._pool is not None and self.owns_pool:
            await self._pool.close()
