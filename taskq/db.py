"""Where taskq's SQL runs: a pool it owns, a caller's pool, or a caller's connection.

The rule for a connection handed in by the caller (psycopg, or SQLAlchemy's
Connection/Session on psycopg 3): taskq joins the caller's transaction and never
commits it. Work that needs several statements runs in a savepoint when the caller
is inside a transaction, so a taskq error leaves the caller's transaction usable.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from psycopg_pool import ConnectionPool

from taskq.config import database_url, resolve_schema

Db = Any
"""A URI string, a ``psycopg_pool.ConnectionPool``, a ``psycopg.Connection``, or a
SQLAlchemy ``Connection``/``Session`` bound to psycopg 3."""

# TCP keepalives and a connect timeout so a half-open connection is noticed.
CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}


DEFAULT_ANSWER_TIMEOUT = CONNECT_KWARGS["tcp_user_timeout"] / 1000
"""Seconds taskq waits for any answer on its own connections (the URL's
``tcp_user_timeout``, in ms, overrides it), after which the connection is closed."""

RV = TypeVar("RV")


class BoundedConnection(psycopg.Connection[Any]):
    """A connection that waits at most ``answer_timeout`` seconds for the server in any
    operation without a timeout of its own, then closes itself and raises
    ``OperationalError``, so the pool replaces it.

    Keepalives and ``tcp_user_timeout`` notice a peer that stops acknowledging; they
    cannot notice one that acknowledges but never answers: a hung server, or a proxy or
    load balancer that stopped forwarding an established flow. Without this, a thread
    waiting on such a connection waits forever. Every statement taskq runs on its own
    connections is short, so a longer silence means the connection is dead.
    """

    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if timeout is not None:  # the caller's own limit (notifies(timeout=...))
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.answer_timeout)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()  # mid-protocol: the connection cannot be reused
            raise psycopg.OperationalError(
                f"no answer from the server for {self.answer_timeout:g} s; connection closed"
            ) from None


@functools.cache
def _bounded(seconds: float) -> type[BoundedConnection]:
    return type("BoundedConnection", (BoundedConnection,), {"answer_timeout": seconds})


def connection_class(url: str) -> type[BoundedConnection]:
    """The connection class for ``url``: its ``tcp_user_timeout`` bounds every wait."""
    given = psycopg.conninfo.conninfo_to_dict(url).get("tcp_user_timeout")
    try:
        ms = float(given) if given is not None else None
    except ValueError:
        ms = None
    return _bounded(ms / 1000 if ms else DEFAULT_ANSWER_TIMEOUT)


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection of taskq's own to ``url``: keepalives on TCP, bounded waits."""
    params = {**_tcp_kwargs(url), **kwargs}
    return connection_class(url).connect(url, **params)


def _is_sqlalchemy(db: object) -> bool:
    return type(db).__module__.startswith("sqlalchemy.")


def _driver_connection(db: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy Connection or Session.

    SQLAlchemy is told a transaction is under way (``Session.connection()`` does that
    itself; a ``Connection`` is begun the way its autobegin on ``execute`` would),
    so the caller's ``commit()``/``rollback()`` really end taskq's statements too.
    """
    if hasattr(db, "get_bind"):
        sa_conn = db.connection()
    else:
        sa_conn = db
        if not sa_conn.in_transaction():
            sa_conn.begin()
    raw = sa_conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(
            "taskq needs a SQLAlchemy connection on the psycopg 3 driver "
            "(postgresql+psycopg://...), got " + type(raw).__module__
        )
    return raw


def _tcp_kwargs(url: str) -> dict[str, Any]:
    """Keepalive settings for TCP connections (a Unix socket takes none of them)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "")
    if not host or host.startswith("/"):
        return {"connect_timeout": CONNECT_KWARGS["connect_timeout"]}
    return {k: v for k, v in CONNECT_KWARGS.items() if k not in info}


class Database:
    """Connections for one taskq object, and the schema its SQL addresses."""

    def __init__(
        self,
        db: Db = None,
        schema: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        application_name: str = "taskq",
        timeout: float = 30.0,
    ) -> None:
        self.schema = resolve_schema(schema)
        self._pool: ConnectionPool[Any] | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._sqlalchemy: Any = None
        self.owns_pool = False
        self.url: str | None = None
        self._lock = threading.Lock()
        if db is None or isinstance(db, str):
            url = database_url(db)
            if url is None:
                from taskq.embedded import embedded_url

                url = embedded_url()
            self.url = url
            kwargs = {"autocommit": True, "application_name": application_name}
            kwargs.update(_tcp_kwargs(url))
            self._pool = ConnectionPool(
                url,
                connection_class=connection_class(url),
                min_size=min_size,
                max_size=max_size,
                kwargs=kwargs,
                open=False,
                name=application_name,
                reconnect_timeout=60.0,
                timeout=timeout,
                max_idle=60.0,
            )
            self._pool.open(wait=False)
            self.owns_pool = True
        elif isinstance(db, ConnectionPool):
            self._pool = db
            self.url = db.conninfo if isinstance(db.conninfo, str) else db.conninfo()
        elif isinstance(db, psycopg.Connection):
            self._conn = db
        elif _is_sqlalchemy(db):
            self._sqlalchemy = db
        else:
            raise TypeError(
                "db must be a database URI, a psycopg_pool.ConnectionPool, a psycopg "
                f"Connection, or a SQLAlchemy Connection/Session; got {type(db).__name__}"
            )

    @property
    def joins_caller(self) -> bool:
        """True when statements run in the caller's own connection and transaction."""
        return self._conn is not None or self._sqlalchemy is not None

    def listen_url(self) -> str | None:
        """A URI a separate LISTEN connection can use, if one is known."""
        return self.url

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one statement (atomic on its own under autocommit)."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        elif self._conn is not None:
            yield self._conn
        else:
            yield _driver_connection(self._sqlalchemy)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one atomic unit of work.

        Owned pool: BEGIN ... COMMIT. A caller's connection already in a transaction:
        a savepoint inside it, never a commit. A caller's idle connection that is not
        in autocommit: the statements open the caller's transaction, which the caller
        commits or rolls back. A caller's autocommit connection: BEGIN ... COMMIT.
        """
        with self.connection() as conn:
            status = conn.info.transaction_status
            if conn.autocommit or status == pq.TransactionStatus.INTRANS:
                with conn.transaction():
                    yield conn
            else:
                yield conn

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the pool has a connection (raises on timeout)."""
        if self._pool is not None:
            self._pool.wait(timeout)

    def close(self) -> None:
        if self._pool is not None and self.owns_pool:
            self._pool.close()
