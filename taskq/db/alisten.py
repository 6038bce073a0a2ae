"""The asyncio twin of ``taskq.db.listen.Listener``: one LISTEN connection, driven by a
task on the event loop, wakes every coroutine of the process that waits on taskq's
channels (the same ``Mailbox`` bookkeeping and reconnect policy; no thread)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import psycopg

from taskq.db.connection import aconnect
from taskq.db.listen import _ALIVE_EVERY, Key, Mailbox, Mark, first_line
from taskq.sql.catalog import CatalogStatements

log = logging.getLogger("taskq.listen")


class AsyncListener:
    """Create it inside a running event loop; ``await close()`` it."""

    def __init__(
        self,
        url: str,
        channels: Iterable[str],
        catalog: CatalogStatements,
        *,
        name: str = "taskq-listen",
    ) -> None:
        self._url = url
        self._catalog = catalog
        self._name = name
        self._channels = list(dict.fromkeys(channels))
        self._box = Mailbox()
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def interest(self, keys: Iterable[Key]) -> None:
        self._box.add(keys)

    def forget(self, keys: Iterable[Key]) -> None:
        self._box.remove(keys)

    def mark(self, keys: Iterable[Key]) -> Mark:
        return self._box.mark(keys)

    async def wait(self, keys: Iterable[Key], mark: Mark, timeout: float) -> bool:
        """Until a key moved past ``mark`` or ``timeout`` passed; True if woken."""
        keys = tuple(keys)
        if self._box.moved(keys, mark):
            return True
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._box.moved(keys, mark)), timeout
                )
                return True
            except TimeoutError:
                return False

    def _reset(self) -> None:
        for call in self._box.reset():
            call()

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _run(self) -> None:
        delay = 0.1
        outage_logged = False
        while not self._stopping:
            try:
                conn: psycopg.AsyncConnection[tuple[object, ...]]
                async with await aconnect(
                    self._url, application_name=self._name, connect_timeout=5
                ) as conn:
                    for ch in self._channels:
                        await conn.execute(self._catalog.listen(ch).text)
                    self._connected.set()
                    self._reset()
                    await self._wake()
                    if outage_logged:
                        log.warning("LISTEN connection re-established")
                        outage_logged = False
                    delay = 0.1
                    while True:
                        async for n in conn.notifies(timeout=_ALIVE_EVERY):
                            for call in self._box.deliver(n.channel, n.payload):
                                call()
                            await self._wake()
                        await conn.execute(self._catalog.ping().text)
            except asyncio.CancelledError:
                break
            except Exception as e:
                self._connected.clear()
                self._reset()
                await self._wake()
                if not outage_logged:
                    log.warning("LISTEN connection lost (%s); retrying, polling meanwhile",
                                first_line(e))  # fmt: skip
                    outage_logged = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._connected.clear()
