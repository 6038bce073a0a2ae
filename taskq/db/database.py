"""``Database``: where a synchronous taskq object's SQL runs (a pool it owns, a
caller's pool, or a caller's connection), and its LISTEN connection.

The asynchronous twin is ``taskq.db.adatabase.AsyncDatabase``; both run the same
plans through ``taskq.db.executor``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from taskq.actions.plan import Plan
from taskq.core.defaults import POOL_SIZE
from taskq.db.connection import (
    connect_kwargs,
    connection_class,
    is_sqlalchemy,
    sqlalchemy_connection,
)
from taskq.db.executor import SyncExecutor
from taskq.db.settings import Settings, resolve
from taskq.sql.query import Query

if TYPE_CHECKING:
    from taskq.db.listen import Listener

R = TypeVar("R")

Db = Any
"""A URI string, a ``psycopg_pool.ConnectionPool``, a ``psycopg.Connection``, or a
SQLAlchemy ``Connection``/``Session`` bound to psycopg 3."""


def _plan_once(settings: Settings) -> Callable[[psycopg.Connection[Any]], None]:
    """A worker's pool connections (``Database(generic_plans=True)``) plan each prepared
    statement once: ``plan_cache_mode = force_generic_plan`` for the session.

    PostgreSQL's default re-plans a statement on every execution while a plan for its
    parameters looks cheaper than the generic one, which for the worker's round-trip
    statement (finish, record starts, claim: one statement of four parts) took 1.6 ms of
    planning per 1.1 ms of execution. tests/test_core_plans.py checks the generic plans
    of the claims and of the writes to held tasks. A ``SET`` on each new connection,
    not a startup option, which PgBouncer refuses in any mode; never behind a
    transaction-mode pooler, where a session setting would reach other clients (and
    nothing is prepared there anyway).
    """
    query = settings.stmts.catalog.plan_once()

    def configure(conn: psycopg.Connection[Any]) -> None:
        SyncExecutor(conn, prepare=False, caller=False).query(query)

    return configure


def _pool(url: str, settings: Settings, min_size: int, max_size: int, timeout: float,
          name: str, generic_plans: bool = False) -> ConnectionPool[Any]:  # fmt: skip
    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        connection_class=connection_class(url),
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(url, pooler=settings.pooler, application_name=name),
        configure=_plan_once(settings)
        if generic_plans and settings.pooler != "transaction"
        else None,
        open=False,
        name=name,
        reconnect_timeout=60.0,
        timeout=timeout,
        max_idle=60.0,
    )
    pool.open(wait=False)
    return pool


class Database:
    """Connections for synchronous taskq objects, and the schema their SQL addresses.

    ``db`` is a URI (or None: ``TASKQ_DATABASE_URL``, else the embedded server): then
    this object owns a pool; or a caller's ``ConnectionPool``, ``Connection`` or
    SQLAlchemy ``Connection``/``Session``, whose transaction taskq joins without ever
    committing it. ``pooler="transaction"`` (or ``TASKQ_POOLER``) makes every
    connection safe behind PgBouncer in transaction mode; ``listen_url`` (or
    ``TASKQ_LISTEN_URL``) is where LISTEN runs (a direct connection); ``read_url`` (or
    ``TASKQ_READ_URL``) a replica for the reads that may lag. ``generic_plans`` (a
    worker's pool): each prepared statement is planned once per connection (see
    ``_plan_once``).
    """

    def __init__(
        self,
        db: Db = None,
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
        generic_plans: bool = False,
    ) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        self._sqlalchemy: Any = None
        self._pool: ConnectionPool[Any] | None = None
        self._read_pool: ConnectionPool[Any] | None = None
        self.owns_pool = db is None or isinstance(db, str)
        url: str | None = db if isinstance(db, str) else None
        if isinstance(db, ConnectionPool):
            url = db.conninfo if isinstance(db.conninfo, str) else None
        elif (
            not self.owns_pool and not isinstance(db, psycopg.Connection) and not is_sqlalchemy(db)
        ):
            raise TypeError(
                "db must be a database URI, a psycopg_pool.ConnectionPool, a psycopg "
                f"Connection, or a SQLAlchemy Connection/Session; got {type(db).__name__}"
            )
        self.settings = resolve(
            schema=schema, url=url, owns=self.owns_pool, pooler=pooler, listen=listen_url,
            read=read_url, poll_interval=poll_interval, application_name=application_name,
        )  # fmt: skip
        s = self.settings
        if self.owns_pool:
            assert s.url is not None
            self._pool = _pool(s.url, s, min_size, max_size, timeout, application_name,
                               generic_plans)  # fmt: skip
        elif isinstance(db, ConnectionPool):
            self._pool = db
        elif isinstance(db, psycopg.Connection):
            self._conn = db
        else:
            self._sqlalchemy = db
        if s.read_url is not None and not self.joins_caller:
            self._read_pool = _pool(s.read_url, s, 0, max_size, timeout, f"{application_name}-read")
        self._listener: Listener | None = None
        self._lock = threading.Lock()

    # ---- what it is --------------------------------------------------------------------

    @property
    def schema(self) -> str:
        return self.settings.schema

    @property
    def url(self) -> str | None:
        return self.settings.url

    @property
    def joins_caller(self) -> bool:
        """True when statements run in the caller's own connection and transaction."""
        return self._conn is not None or self._sqlalchemy is not None

    # ---- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self, *, read: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection for statements (each atomic on its own under autocommit);
        ``read``: from the replica when one is configured."""
        pool = self._read_pool if read and self._read_pool is not None else self._pool
        if pool is not None:
            with pool.connection() as conn:
                yield conn
        elif self._conn is not None:
            yield self._conn
        else:
            yield sqlalchemy_connection(self._sqlalchemy)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one atomic unit of work: BEGIN ... COMMIT on a pool's
        connection, a savepoint in a caller's transaction (never a commit for the
        caller; an idle caller's connection that is not in autocommit is left to open
        its transaction at the first statement, for the caller to end)."""
        with self.connection() as conn:
            status = conn.info.transaction_status
            if conn.autocommit or status == pq.TransactionStatus.INTRANS:
                with conn.transaction():
                    yield conn
            else:
                yield conn

    def executor(self, conn: psycopg.Connection[Any]) -> SyncExecutor:
        return SyncExecutor(conn, prepare=self.settings.prepare, caller=self.joins_caller)

    def run(self, plan: Plan[R], *, read: bool = False) -> R:
        """Run a plan on one connection (``read``: the replica's, when configured)."""
        with self.connection(read=read) as conn:
            return self.executor(conn).run(plan)

    def query(self, query: Query[R], *, read: bool = False) -> R:
        """Run one statement."""
        with self.connection(read=read) as conn:
            return self.executor(conn).query(query)

    # ---- LISTEN ------------------------------------------------------------------------

    def listener(self) -> Listener | None:
        """The process's LISTEN connection for this database (started on first use and
        shared by every waiter), or None when there is nowhere to LISTEN (a caller's
        connection, or a transaction-mode pooler with no ``listen_url``: poll only)."""
        url = self.settings.listen_url
        if url is None:
            return None
        with self._lock:
            if self._listener is None:
                from taskq.db.listen import Listener

                stmts = self.settings.stmts
                self._listener = Listener(
                    url, [stmts.tasks.channel, stmts.tasks.events, stmts.schedules.channel],
                    stmts.catalog, name=f"{self.settings.application_name}-listen",
                )  # fmt: skip
                self._listener.wait_connected(2.0)
            return self._listener

    # ---- life --------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the pool has a connection (raises on timeout)."""
        if self._pool is not None:
            self._pool.wait(timeout)

    def close(self) -> None:
        """Stop the LISTEN connection and close the pools this object owns."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._read_pool is not None:
            self._read_pool.close()
        if self._pool is not None and self.owns_pool:
            self._pool.close()
