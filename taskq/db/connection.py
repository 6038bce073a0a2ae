"""Connections: taskq's own (bounded waits, keepalives, pooler-safe settings) and a
caller's (psycopg, or SQLAlchemy on psycopg 3, sync or asyncio).

The rule for a connection handed in by the caller: taskq joins the caller's
transaction and never commits it (see ``taskq.db.executor``).
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

from taskq.core.defaults import ANSWER_TIMEOUT, CONNECT_TIMEOUT

RV = TypeVar("RV")

# TCP keepalives so a half-open connection is noticed; tcp_user_timeout (ms) bounds
# unacknowledged sends.
_TCP_KWARGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": int(ANSWER_TIMEOUT * 1000),
}


def _answer_timeout(url: str) -> float:
    given = psycopg.conninfo.conninfo_to_dict(url).get("tcp_user_timeout")
    try:
        ms = float(given) if given is not None else None
    except ValueError:
        ms = None
    return ms / 1000 if ms else ANSWER_TIMEOUT


def connect_kwargs(url: str, *, pooler: str | None, application_name: str) -> dict[str, Any]:
    """Keyword arguments for every connection taskq opens to ``url``.

    Over TCP: keepalives and ``tcp_user_timeout`` (a Unix socket takes none). Behind a
    transaction-mode pooler: no server-side prepared statements (``prepare_threshold``
    None), since the pooler hands each transaction to any server connection and
    prepared names of different clients collide there.
    """
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "")
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": application_name,
        "connect_timeout": int(info.get("connect_timeout") or CONNECT_TIMEOUT),
    }
    if host and not host.startswith("/"):
        kwargs.update({k: v for k, v in _TCP_KWARGS.items() if k not in info})
    if pooler == "transaction":
        kwargs["prepare_threshold"] = None
    return kwargs


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

    answer_timeout: float = ANSWER_TIMEOUT

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


class AsyncBoundedConnection(psycopg.AsyncConnection[Any]):
    """The asyncio twin of :class:`BoundedConnection`."""

    answer_timeout: float = ANSWER_TIMEOUT

    async def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if timeout is not None:
            return await super().wait(gen, interval, timeout)
        try:
            return await super().wait(gen, interval, self.answer_timeout)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the server for {self.answer_timeout:g} s; connection closed"
            ) from None


@functools.cache
def _bounded(seconds: float) -> type[BoundedConnection]:
    return type("BoundedConnection", (BoundedConnection,), {"answer_timeout": seconds})


@functools.cache
def _abounded(seconds: float) -> type[AsyncBoundedConnection]:
    return type("AsyncBoundedConnection", (AsyncBoundedConnection,), {"answer_timeout": seconds})


def connection_class(url: str) -> type[BoundedConnection]:
    """The connection class for ``url``: its ``tcp_user_timeout`` bounds every wait."""
    return _bounded(_answer_timeout(url))


def async_connection_class(url: str) -> type[AsyncBoundedConnection]:
    return _abounded(_answer_timeout(url))


def connect(
    url: str, *, pooler: str | None = None, application_name: str = "taskq", **kwargs: Any
) -> psycopg.Connection[Any]:
    """A connection of taskq's own to ``url`` (autocommit, bounded waits)."""
    params = connect_kwargs(url, pooler=pooler, application_name=application_name) | kwargs
    return connection_class(url).connect(url, **params)


async def aconnect(
    url: str, *, pooler: str | None = None, application_name: str = "taskq", **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    params = connect_kwargs(url, pooler=pooler, application_name=application_name) | kwargs
    return await async_connection_class(url).connect(url, **params)


# ---- a caller's connection ---------------------------------------------------------------


def is_sqlalchemy(db: object, *, asyncio: bool = False) -> bool:
    """Whether ``db`` is a SQLAlchemy object of the synchronous API (``asyncio``: of
    ``sqlalchemy.ext.asyncio``); one of the other face is refused where it is given."""
    module = type(db).__module__
    return module.startswith("sqlalchemy.") and (
        module.startswith("sqlalchemy.ext.asyncio.") == asyncio
    )


def _psycopg3(raw: object, kind: type) -> None:
    if not isinstance(raw, kind):
        raise TypeError(
            "taskq needs a SQLAlchemy connection on the psycopg 3 driver "
            "(postgresql+psycopg://...), got " + type(raw).__module__
        )


def sqlalchemy_connection(db: Any) -> psycopg.Connection[Any]:
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
    _psycopg3(raw, psycopg.Connection)
    return raw  # type: ignore[no-any-return]


async def sqlalchemy_async_connection(db: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg AsyncConnection under a SQLAlchemy AsyncConnection or AsyncSession,
    begun the same way as :func:`sqlalchemy_connection`."""
    if hasattr(db, "get_bind"):
        sa_conn = await db.connection()
    else:
        sa_conn = db
        if not sa_conn.in_transaction():
            await sa_conn.begin()
    fairy = await sa_conn.get_raw_connection()
    raw = fairy.driver_connection
    _psycopg3(raw, psycopg.AsyncConnection)
    return raw  # type: ignore[no-any-return]
