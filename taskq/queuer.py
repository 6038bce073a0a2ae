"""The write side: ``Queuer`` enqueues tasks, batches, chains and groups."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskq.db import Database, Db
from taskq.queries import Conn, Queries, translate_errors
from taskq.requests import (
    MAX_SPEC_BYTES,
    Row,
    check_request,
    request_to_json,
    rows_json,
    to_row,
)
from taskq.types import Task, TaskEnqueueRequest

if TYPE_CHECKING:
    from taskq.metrics import Metrics
    from taskq.registry import Registry

BLOCKED = "9999-12-31T00:00:00+00:00"
"""The run_at of a chain link until the previous one finishes: no claim reaches it, and,
unlike 'infinity', psycopg (and every other driver) reads it back as a datetime."""


@dataclass(frozen=True, slots=True)
class Chain:
    id: str
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    task_ids: tuple[str, ...]


class Queuer:
    """Enqueues tasks.

    ``db`` is a URI (the Queuer owns a pool: thread-safe, ``close()`` it or use it as a
    context manager), a ``psycopg_pool.ConnectionPool``, or a caller's connection
    (psycopg, or SQLAlchemy Connection/Session on psycopg 3): then every enqueue joins
    the caller's transaction and becomes visible exactly when the caller commits.

    With a ``registry``, a request takes its type's registered defaults where it leaves
    them unset, and the type's validator checks the spec before anything is stored.
    """

    def __init__(
        self,
        db: Db = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        metrics: Metrics | None = None,
        max_spec_bytes: int = MAX_SPEC_BYTES,
        pool_size: int = 10,
    ) -> None:
        self._db = db if isinstance(db, Database) else Database(db, schema, max_size=pool_size)
        self._q = Queries(self._db.schema)
        self.registry = registry
        self.metrics = metrics
        self.max_spec_bytes = max_spec_bytes

    @property
    def schema(self) -> str:
        return self._db.schema

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Queuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public API ----------------------------------------------------------------

    def enqueue(self, request: TaskEnqueueRequest | None = None, /, **fields: Any) -> Task:
        """Store one task; it is durable when this returns (or when the caller commits).

        Accepts a TaskEnqueueRequest or its fields as keywords. Raises
        QueueNotSpecified, TypeNotSpecified, InvalidTask (a ValueError: bad spec or
        numbers), InvalidReference, or TaskAlreadyExists; nothing is stored then.
        """
        if request is None:
            request = TaskEnqueueRequest(**fields)
        elif fields:
            raise TypeError("pass either a TaskEnqueueRequest or keyword fields, not both")
        return self.enqueue_many([request])[0]

    def enqueue_many(self, requests: Iterable[TaskEnqueueRequest]) -> list[Task]:
        """Store many tasks in one statement, all or nothing; returns them in order."""
        rows = [self._row(r) for r in requests]
        if not rows:
            return []
        return self._insert(rows)

    def enqueue_chain(self, requests: Sequence[TaskEnqueueRequest]) -> Chain:
        """Enqueue tasks that run one after another.

        Each link becomes runnable only when the previous one finished, and its handler
        reads that result as ``ctx.previous_result``. A link that ends without finishing
        (failed for good, or cancelled) cancels the links after it.
        """
        if not requests:
            raise ValueError("a chain needs at least one request")
        chain_id = str(uuid.uuid4())
        ids = [str(uuid.uuid4()) for _ in requests]
        rows = [
            self._row(
                r,
                id=ids[i],
                chain_id=chain_id,
                chain_index=i,
                depends_on=ids[i - 1] if i else None,
                run_at=BLOCKED if i else None,
            )
            for i, r in enumerate(requests)
        ]
        self._insert(rows)
        return Chain(chain_id, tuple(ids))

    def enqueue_group(
        self,
        requests: Sequence[TaskEnqueueRequest],
        on_complete: TaskEnqueueRequest | None = None,
    ) -> Group:
        """Enqueue tasks that run at once, and ``on_complete`` exactly once after all end.

        The follow-up's ``ctx.previous_result`` lists each member's outcome in request
        order: ``{"id", "status", "result", "error"}``.
        """
        if not requests:
            raise ValueError("a group needs at least one request")
        group_id = str(uuid.uuid4())
        rows = [self._row(r, group_id=group_id, chain_index=i) for i, r in enumerate(requests)]
        follow = None
        if on_complete is not None:
            self._row(on_complete)  # checked now, so a bad follow-up is refused up front
            follow = request_to_json(self._settled(on_complete))
        started = time.perf_counter()
        with self._db.transaction() as conn:
            self._q.group_create(conn, group_id, follow)
            tasks = self._insert_in(conn, rows)
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return Group(group_id, tuple(t.id for t in tasks))

    # ---- internals -----------------------------------------------------------------

    def _row(self, request: TaskEnqueueRequest, **extra: Any) -> Row:
        extra = {k: v for k, v in extra.items() if v is not None}
        follow = getattr(request, "on_success", None)  # not a request: to_row says so
        if follow is not None:
            request = replace(request, on_success=self._settled(follow))
        return to_row(request, self.registry, max_spec_bytes=self.max_spec_bytes, extra=extra)

    def _settled(self, request: TaskEnqueueRequest) -> TaskEnqueueRequest:
        """A follow-up request with its type's registered defaults filled in (and its
        own follow-up's): it is enqueued later by whoever ends the task, with no
        registry at hand."""
        if self.registry is None:
            return request
        r = check_request(request, self.registry, max_spec_bytes=self.max_spec_bytes)
        return r if r.on_success is None else replace(r, on_success=self._settled(r.on_success))

    def _insert(self, rows: list[Row]) -> list[Task]:
        started = time.perf_counter()
        refs = {r.references for r in rows}
        if any(refs) or self._db.joins_caller:
            # Several statements (references are checked against the table before SQL
            # uses them) run as one unit; in a caller's transaction that unit is a
            # savepoint, so a refused enqueue (TaskAlreadyExists) leaves it usable.
            with self._db.transaction() as conn:
                tasks = self._insert_in(conn, rows)
        else:
            with self._db.connection() as conn:
                tasks = self._insert_in(conn, rows)
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return tasks

    def _insert_in(self, conn: Conn, rows: list[Row]) -> list[Task]:
        return insert_rows(conn, self._q, rows)


def insert_rows(conn: Conn, q: Queries, rows: list[Row]) -> list[Task]:
    """Insert ``rows`` on ``conn``, one statement per set of reference columns.

    Returns the tasks in the order of ``rows``.
    """
    by_refs: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(rows):
        by_refs.setdefault(r.references, []).append(i)
    out: list[Task | None] = [None] * len(rows)
    for cols, positions in by_refs.items():
        if cols:
            q.check_references(conn, "tasks", cols)
        group = [rows[i] for i in positions]
        with translate_errors(group[0].queue):
            tasks = q.enqueue(conn, rows_json(group), cols)
        for i, t in zip(positions, tasks, strict=True):
            out[i] = t
    return [t for t in out if t is not None]


def enqueue_followups(
    conn: Conn, q: Queries, requests: list[tuple[TaskEnqueueRequest, dict[str, Any]]]
) -> list[Task]:
    """Enqueue follow-up requests (with extra row fields) inside an ongoing transaction."""
    return insert_rows(conn, q, [to_row(r, extra=extra) for r, extra in requests])
