"""The watch hub: one reader per watched task, however many watchers it has.

``Tasks.watch`` reads a task once per change for each caller. Behind an HTTP service a
thousand browsers may watch one task; the hub reads each changed task once and hands
that snapshot to every watcher of it. Per watched task, one coroutine (a *topic*):
registers the task's key with the process's one LISTEN connection
(``AsyncDatabase.listener()``), reads the task, broadcasts it when its status, attempt
or progress changed, and sleeps until a notification for that task, or the slow poll
(the same safety net as ``Tasks.watch``: changes are still seen while the LISTEN
connection is down, and every topic re-reads when it comes back). The topic ends at
the task's final status, or when its last watcher leaves.

A watcher holds a small queue of snapshots. One that falls behind loses intermediate
snapshots (the oldest first), never the newest, and never the final one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from taskq.actions import control
from taskq.core.errors import TaskNotFound
from taskq.core.types import Task
from taskq.db import AsyncDatabase
from taskq.sql.errors import is_outage
from taskq.tasks import snapshot_key

log = logging.getLogger("taskq.server")

BACKLOG = 64
"""Snapshots a watcher may have unread before the oldest are dropped."""


class Watcher:
    """One watcher of one task: ``async for task in watcher`` yields snapshots, ending
    after the final status (TaskNotFound when the task vanishes)."""

    def __init__(self, topic: _Topic) -> None:
        self.topic = topic
        self._items: deque[Task | BaseException] = deque()
        self._ready = asyncio.Event()
        self._ended = False

    def push(self, item: Task | BaseException) -> None:
        self._items.append(item)
        while len(self._items) > BACKLOG:
            self._items.popleft()
        self._ready.set()

    async def next(self, timeout: float | None = None) -> Task | None:
        """The next snapshot; None at the end, or when ``timeout`` passes first
        (then ``ended`` is still False)."""
        if self._ended:
            return None
        if not self._items:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        item = self._items.popleft()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if item.status.is_final:
            self._ended = True
        return item

    @property
    def ended(self) -> bool:
        return self._ended

    def __aiter__(self) -> AsyncIterator[Task]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Task]:
        while (task := await self.next()) is not None:
            yield task


class _Topic:
    __slots__ = ("task_id", "watchers", "latest", "runner")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.watchers: set[Watcher] = set()
        self.latest: Task | None = None
        self.runner: asyncio.Task[None] | None = None


class WatchHub:
    """Fans task snapshots out to watchers (see the module)."""

    def __init__(self, db: AsyncDatabase, poll_interval: float | None = None) -> None:
        self._db = db
        self._poll = poll_interval or db.settings.poll_interval
        self._topics: dict[str, _Topic] = {}
        self.reads = 0
        """Task reads made by every topic so far (a measure of the fan-out's cost)."""

    @property
    def watchers(self) -> int:
        return sum(len(t.watchers) for t in self._topics.values())

    @property
    def topics(self) -> int:
        return len(self._topics)

    def subscribe(self, task_id: str) -> Watcher:
        """A new watcher of ``task_id`` (a canonical id); ``unsubscribe`` it when done."""
        topic = self._topics.get(task_id)
        if topic is None:
            topic = self._topics[task_id] = _Topic(task_id)
        watcher = Watcher(topic)
        topic.watchers.add(watcher)
        if topic.latest is not None:
            watcher.push(topic.latest)
        if topic.runner is None:
            topic.runner = asyncio.get_running_loop().create_task(
                self._run(topic), name=f"taskq-watch-{task_id}"
            )
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        topic = watcher.topic
        topic.watchers.discard(watcher)
        if not topic.watchers:
            self._drop(topic)

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[Watcher]:
        """A watcher of ``task_id`` for the duration of the block."""
        watcher = self.subscribe(task_id)
        try:
            yield watcher
        finally:
            self.unsubscribe(watcher)

    def _drop(self, topic: _Topic) -> None:
        if self._topics.get(topic.task_id) is topic:
            del self._topics[topic.task_id]
        if topic.runner is not None and not topic.runner.done():
            topic.runner.cancel()

    def _broadcast(self, topic: _Topic, item: Task | BaseException) -> None:
        for w in topic.watchers:
            w.push(item)

    async def _run(self, topic: _Topic) -> None:
        stmts = self._db.settings.stmts
        keys = [(stmts.tasks.events, topic.task_id)]
        listener = None
        try:
            with contextlib.suppress(Exception):
                listener = await self._db.listener()
            if listener is not None:
                listener.interest(keys)
            last: tuple[Any, ...] | None = None
            outage = False
            while True:
                mark = listener.mark(keys) if listener is not None else None
                try:
                    self.reads += 1
                    task = await self._db.run(control.get(stmts, topic.task_id))
                    outage = False
                except TaskNotFound as e:
                    self._broadcast(topic, e)
                    return
                except Exception as e:
                    if not is_outage(e):
                        raise
                    if not outage:
                        log.warning("watching task %s: %s; retrying", topic.task_id, e)
                        outage = True
                    await asyncio.sleep(self._poll)
                    continue
                if snapshot_key(task) != last:
                    last = snapshot_key(task)
                    topic.latest = task
                    self._broadcast(topic, task)
                if task.status.is_final:
                    return
                if listener is not None and mark is not None:
                    await listener.wait(keys, mark, self._poll)
                else:
                    await asyncio.sleep(self._poll)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a refusal: tell the watchers rather than hang them
            log.exception("watching task %s failed", topic.task_id)
            self._broadcast(topic, e)
        finally:
            if listener is not None:
                listener.forget(keys)
            if self._topics.get(topic.task_id) is topic:
                del self._topics[topic.task_id]

    async def close(self) -> None:
        runners = [t.runner for t in self._topics.values() if t.runner is not None]
        for r in runners:
            r.cancel()
        for r in runners:
            with contextlib.suppress(BaseException):
                await r
        self._topics.clear()
