"""What one ``taskq serve`` process holds: its settings, its one ``AsyncDatabase``
(a pool and one LISTEN connection) with the asyncio taskq objects on it, the watch
hub, short-lived caches of the whole-table summaries, and its metrics registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry

from taskq.aio import AsyncQueuer, AsyncScheduler, AsyncTasks
from taskq.core.config import resolve_schema
from taskq.core.defaults import MAX_SPEC_BYTES
from taskq.db import AsyncDatabase
from taskq.server.hub import WatchHub
from taskq.server.tokens import TokenCache
from taskq.sql.tokens import TokenStatements

T = TypeVar("T")

POOL_WAIT = 10.0
"""Longest a request waits for a database connection before it is answered 503."""

STATUSES = ("waiting", "running", "finished", "failed", "cancelled")
MAX_BODY = MAX_SPEC_BYTES + 64 * 1024
"""Largest request body: one spec at its limit, with room for the other fields."""


@dataclass(frozen=True)
class ServeConfig:
    url: str
    schema: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = MAX_BODY
    pool_size: int = 10
    poll_interval: float | None = None
    cookie_secure: bool = False
    application_name: str = "taskq-serve"
    counts_ttl: float = 2.0
    """Seconds the per-queue counts (a read of the whole table) are reused."""


class Cached(Generic[T]):
    """The value of ``load()``, reused for ``ttl`` seconds; concurrent callers share
    one load."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._value: T | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._at < self._ttl:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl:
                self._value = await self._load()
                self._at = time.monotonic()
            return self._value


class ServerState:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.db = AsyncDatabase(
            config.url, config.schema, max_size=config.pool_size,
            poll_interval=config.poll_interval, application_name=config.application_name,
            listen_channels=[TokenStatements(resolve_schema(config.schema)).channel],
            timeout=POOL_WAIT,
        )  # fmt: skip
        self.stmts = self.db.settings.stmts
        self.queuer = AsyncQueuer(self.db)
        self.tasks = AsyncTasks(self.db)
        self.scheduler = AsyncScheduler(self.db)
        self.hub = WatchHub(self.db)
        self.tokens = TokenCache(self.db)
        self.registry = CollectorRegistry()
        self.counts = Cached(self._queue_counts, config.counts_ttl)
        self.throughput = Cached(self._throughput, 5.0)

    async def _queue_counts(self) -> list[dict[str, Any]]:
        rows = await self.db.query(self.stmts.stats.queue_counts())
        by_queue: dict[str, dict[str, Any]] = {}
        for r in rows:
            q = by_queue.setdefault(r["queue"], {"queue": r["queue"], **dict.fromkeys(STATUSES, 0)})
            q[r["status"]] = int(r["n"])
        return list(by_queue.values())

    async def _throughput(self) -> list[dict[str, Any]]:
        return await self.db.query(self.stmts.stats.throughput(THROUGHPUT_MINUTES))

    async def start(self) -> None:
        await self.db.wait_ready(30.0)
        await self.db.listener()
        await self.tokens.start()

    async def close(self) -> None:
        await self.hub.close()
        await self.db.close()


THROUGHPUT_MINUTES = 15
