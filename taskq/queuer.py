"""The write side: ``Queuer`` enqueues tasks, batches, chains and groups.

Checking and encoding requests (``taskq.core.encode``) and the insert plans
(``taskq.actions.enqueue``) are shared with ``taskq.aio.AsyncQueuer``: the same
request stores the same row whichever face enqueued it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskq.actions import enqueue as plans
from taskq.clients import Client
from taskq.core.defaults import MAX_SPEC_BYTES, POOL_SIZE
from taskq.core.encode import RequestEncoder
from taskq.core.types import JSON, Task, TaskEnqueueRequest
from taskq.core.workflows import Chain, Group
from taskq.registry import RegisteredTask

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics
    from taskq.registry import Registry

NO_SPEC: Any = object()
"""``enqueue``'s spec when none is given positionally."""

Enqueueable = TaskEnqueueRequest | RegisteredTask[Any]
"""What ``enqueue`` takes: a request, or a handler decorated with ``@registry.task``."""


def request_of(
    request: Enqueueable | None, spec: JSON, fields: dict[str, Any]
) -> TaskEnqueueRequest:
    """``enqueue``'s arguments as one request: a registered task with its spec and
    options (its registered defaults for the rest), a request, or a request's fields as
    keywords."""
    if isinstance(request, RegisteredTask):
        if spec is not NO_SPEC:
            if "spec" in fields:
                raise TypeError("spec given twice (positionally and as spec=)")
            fields = {**fields, "spec": spec}
        if "type" in fields:
            raise TypeError(f"a registered task's type is its own ({request.name!r})")
        return request.request(**fields)
    if spec is not NO_SPEC:
        raise TypeError("a spec goes after a registered task; a TaskEnqueueRequest has its own")
    if request is None:
        return TaskEnqueueRequest(**fields)
    if fields:
        raise TypeError("pass either a TaskEnqueueRequest or keyword fields, not both")
    return request


class Queuer(Client):
    """Enqueues tasks.

    ``db`` is a URI (the Queuer owns a pool: thread-safe, ``close()`` it or use it as a
    context manager), a ``psycopg_pool.ConnectionPool``, or a caller's connection
    (psycopg, or SQLAlchemy Connection/Session on psycopg 3): then every enqueue joins
    the caller's transaction and becomes visible exactly when the caller commits.

    With a ``registry``, a request takes its type's registered defaults where it leaves
    them unset, and the type's validator checks the spec before anything is stored;
    with ``strict=True`` too, a type the registry does not know is refused
    (``UnknownTaskType``, nothing stored), in batches, chains, groups and follow-ups.
    A handler decorated with ``@registry.task`` brings its own defaults and validator:
    ``queuer.enqueue(send_email, {"to": ...})``, with or without a registry here.
    ``pooler="transaction"`` makes it safe behind PgBouncer in transaction mode.
    """

    def __init__(
        self,
        db: Any = None,
        *,
        schema: str | None = None,
        registry: Registry | None = None,
        strict: bool = False,
        metrics: Metrics | None = None,
        max_spec_bytes: int = MAX_SPEC_BYTES,
        pool_size: int = POOL_SIZE,
        pooler: str | None = None,
    ) -> None:
        encoder = RequestEncoder(registry, max_spec_bytes, strict=strict)  # before a pool
        super().__init__(db, schema=schema, pool_size=pool_size, pooler=pooler)
        self.encoder = encoder
        self.metrics = metrics

    @property
    def registry(self) -> Registry | None:
        return self.encoder.registry

    def enqueue(
        self, request: Enqueueable | None = None, spec: JSON = NO_SPEC, /, **fields: Any
    ) -> Task:
        """Store one task; it is durable when this returns (or when the caller commits).

        Accepts a TaskEnqueueRequest, or its fields as keywords, or a handler decorated
        with ``@registry.task`` followed by its spec and any option as a keyword
        (``enqueue(send_email, {"to": ...}, priority=5)``): the type's registered
        defaults fill the options not given, and its validator checks the spec. Raises
        QueueNotSpecified, TypeNotSpecified, InvalidTask (a ValueError: bad spec or
        numbers), InvalidReference, or TaskAlreadyExists; nothing is stored then.
        """
        return self.enqueue_many([request_of(request, spec, fields)])[0]

    def enqueue_many(self, requests: Iterable[TaskEnqueueRequest]) -> list[Task]:
        """Store many tasks in one statement, all or nothing; returns them in order."""
        rows = self.encoder.rows(requests)
        if not rows:
            return []
        started = time.perf_counter()
        tasks = self._db.run(plans.enqueue(self._stmts, self._db.settings.columns, rows))
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return tasks

    def enqueue_chain(self, requests: Sequence[TaskEnqueueRequest]) -> Chain:
        """Enqueue tasks that run one after another.

        Each link becomes runnable only when the previous one finished, and its handler
        reads that result as ``ctx.previous_result``. A link that ends without finishing
        (failed for good, or cancelled) cancels the links after it.
        """
        chain_id, ids, rows = self.encoder.chain(requests)
        started = time.perf_counter()
        tasks = self._db.run(plans.enqueue(self._stmts, self._db.settings.columns, rows))
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
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
        group_id, rows, follow = self.encoder.group(requests, on_complete)
        started = time.perf_counter()
        plan = plans.enqueue_group(self._stmts, self._db.settings.columns, group_id, rows, follow)
        tasks = self._db.run(plan)
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return Group(group_id, tuple(t.id for t in tasks))
