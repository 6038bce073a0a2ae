"""The two executors: they run a Query or a plan (``taskq.actions.plan``) on one
connection, synchronously or on asyncio. They are the only code that sends taskq's
SQL; everything they run comes from ``taskq.sql`` and ``taskq.actions``.

- A statement's errors go through ``taskq.sql.errors.translate`` and are thrown into
  the plan at the statement.
- ``Atomic`` sub-plans run in a savepoint inside a transaction, in a transaction of
  their own otherwise; a one-statement sub-plan under autocommit runs as it is. A
  caller's connection that is not in autocommit and has not begun its transaction is
  begun first (as psycopg would at its first statement), so the sub-plan is a
  savepoint in the caller's transaction and nothing is ever committed for the caller.
- On a caller's connection, rows are decoded with taskq's own JSON loaders on the
  cursor (a framework may have registered others on the connection, Django does),
  and the caller's connection is not changed.
- ``prepare`` False sends no server-side prepared statement (behind a
  transaction-mode pooler).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.types.json import JsonbLoader, JsonLoader

from taskq.actions.plan import Atomic, Plan
from taskq.sql.errors import translate
from taskq.sql.query import Query

R = TypeVar("R")
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_IDLE = pq.TransactionStatus.IDLE


def _columns(res: pq.abc.PGresult, encoding: str) -> list[str]:
    """The result's column names, read from the libpq result itself: building
    ``cursor.description`` creates a Column object per column on every query, which
    costs more than the rest of a wide claim's Python side."""
    return [(res.fname(i) or b"").decode(encoding) for i in range(res.nfields)]


def _own_loaders(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> None:
    cur.adapters.register_loader("jsonb", JsonbLoader)
    cur.adapters.register_loader("json", JsonLoader)


def _error(e: Exception, query: Query[Any]) -> Exception:
    translated = translate(e, query)
    assert isinstance(translated, Exception)
    return translated


class SyncExecutor:
    """Runs Queries and plans on one psycopg Connection."""

    __slots__ = ("conn", "prepare", "caller")

    def __init__(self, conn: psycopg.Connection[Any], *, prepare: bool | None, caller: bool):
        self.conn = conn
        self.prepare = prepare
        self.caller = caller

    def query(self, query: Query[R]) -> R:
        conn = self.conn
        cur = conn.cursor()
        if self.caller:
            _own_loaders(cur)
        try:
            cur.execute(query.text, query.params, prepare=self.prepare)
        except psycopg.Error as e:
            err = _error(e, query)
            if err is e:
                raise
            raise err from None
        res = cur.pgresult
        if res is None or res.status != _TUPLES_OK:
            return query.read([], [])
        rows: Sequence[Any] = cur.fetchall()
        return query.read(_columns(res, conn.info.encoding), rows)  # type: ignore[arg-type]

    def atomic(self, op: Atomic[R]) -> R:
        conn = self.conn
        status = conn.info.transaction_status
        if status == _IDLE:
            if conn.autocommit:
                if op.single:
                    return self.run(op.plan)
            else:  # a caller's transaction that has not started: start it, never commit
                conn.wait(conn._start_query())
        with conn.transaction():
            return self.run(op.plan)

    def ddl(self, statements: Sequence[sql.Composed]) -> None:
        """Run composed DDL (grants, reference columns) as one transaction."""
        with self.conn.transaction():
            for statement in statements:
                self.conn.execute(statement)

    def run(self, plan: Plan[R]) -> R:
        """Drive ``plan`` to its end; its return value is the result."""
        try:
            op = next(plan)
            while True:
                try:
                    value = self.query(op) if isinstance(op, Query) else self.atomic(op)
                except Exception as e:
                    op = plan.throw(e)
                    continue
                op = plan.send(value)
        except StopIteration as stop:
            result: R = stop.value
            return result


class AsyncExecutor:
    """Runs Queries and plans on one psycopg AsyncConnection; never blocks the loop."""

    __slots__ = ("conn", "prepare", "caller")

    def __init__(self, conn: psycopg.AsyncConnection[Any], *, prepare: bool | None, caller: bool):
        self.conn = conn
        self.prepare = prepare
        self.caller = caller

    async def query(self, query: Query[R]) -> R:
        conn = self.conn
        cur = conn.cursor()
        if self.caller:
            _own_loaders(cur)
        try:
            await cur.execute(query.text, query.params, prepare=self.prepare)
        except psycopg.Error as e:
            err = _error(e, query)
            if err is e:
                raise
            raise err from None
        res = cur.pgresult
        if res is None or res.status != _TUPLES_OK:
            return query.read([], [])
        rows: Sequence[Any] = await cur.fetchall()
        return query.read(_columns(res, conn.info.encoding), rows)  # type: ignore[arg-type]

    async def atomic(self, op: Atomic[R]) -> R:
        conn = self.conn
        status = conn.info.transaction_status
        if status == _IDLE:
            if conn.autocommit:
                if op.single:
                    return await self.run(op.plan)
            else:
                await conn.wait(conn._start_query())
        async with conn.transaction():
            return await self.run(op.plan)

    async def run(self, plan: Plan[R]) -> R:
        try:
            op = next(plan)
            while True:
                try:
                    if isinstance(op, Query):
                        value = await self.query(op)
                    else:
                        value = await self.atomic(op)
                except Exception as e:
                    op = plan.throw(e)
                    continue
                op = plan.send(value)
        except StopIteration as stop:
            result: R = stop.value
            return result
