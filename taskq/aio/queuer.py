"""``AsyncQueuer``: see ``taskq.aio``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskq.actions import enqueue as enqueue_plans
from taskq.clients import AsyncClient
from taskq.core.defaults import MAX_SPEC_BYTES, POOL_SIZE
from taskq.core.encode import RequestEncoder
from taskq.core.types import JSON, Task, TaskEnqueueRequest
from taskq.core.workflows import Chain, Group
from taskq.queuer import NO_SPEC, Enqueueable, request_of

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics
    from taskq.registry import Registry


class AsyncQueuer(AsyncClient):
    """Enqueues tasks (see ``taskq.Queuer``)."""

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

    async def enqueue(
        self, request: Enqueueable | None = None, spec: JSON = NO_SPEC, /, **fields: Any
    ) -> Task:
        """Store one task (see ``Queuer.enqueue``): a request, its fields as keywords, or
        a handler decorated with ``@registry.task``, its spec and options."""
        return (await self.enqueue_many([request_of(request, spec, fields)]))[0]

    async def enqueue_many(self, requests: Iterable[TaskEnqueueRequest]) -> list[Task]:
        """Store many tasks in one statement, all or nothing; returns them in order."""
        rows = self.encoder.rows(requests)
        if not rows:
            return []
        started = time.perf_counter()
        tasks = await self._db.run(
            enqueue_plans.enqueue(self._stmts, self._db.settings.columns, rows)
        )
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return tasks

    async def enqueue_chain(self, requests: Sequence[TaskEnqueueRequest]) -> Chain:
        """Enqueue tasks that run one after another (see ``Queuer.enqueue_chain``)."""
        chain_id, ids, rows = self.encoder.chain(requests)
        started = time.perf_counter()
        tasks = await self._db.run(
            enqueue_plans.enqueue(self._stmts, self._db.settings.columns, rows)
        )
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return Chain(chain_id, tuple(ids))

    async def enqueue_group(
        self,
        requests: Sequence[TaskEnqueueRequest],
        on_complete: TaskEnqueueRequest | None = None,
    ) -> Group:
        """Enqueue tasks that run at once, and ``on_complete`` once after all end."""
        group_id, rows, follow = self.encoder.group(requests, on_complete)
        started = time.perf_counter()
        plan = enqueue_plans.enqueue_group(
            self._stmts, self._db.settings.columns, group_id, rows, follow
        )
        tasks = await self._db.run(plan)
        if self.metrics is not None:
            self.metrics.observe_enqueue(tasks, time.perf_counter() - started)
        return Group(group_id, tuple(t.id for t in tasks))
