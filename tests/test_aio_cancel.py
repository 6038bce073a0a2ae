"""Cancelling ``taskq.aio`` coroutines: asyncio cancels a coroutine at any ``await``
(``asyncio.wait_for``, ``asyncio.timeout``, a TaskGroup, a shutdown), which the
synchronous face never sees. A cancelled wait leaves its object usable and nothing
behind; a cancelled claim must not lose the task it was claiming.

The claim case needs the cancellation to land after PostgreSQL has claimed the row
but before the rows reach the client: a small TCP proxy in front of the server holds
the server's answer back for as long as the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import taskq
from taskq.aio import AsyncDequeuer, AsyncQueuer, AsyncTasks

R = taskq.TaskEnqueueRequest


class HoldingProxy:
    """Forwards TCP connections to the server; ``hold()`` stops the server's bytes
    from reaching the clients until ``release()`` (the client's bytes always pass)."""

    def __init__(self, url: str) -> None:
        info = conninfo_to_dict(url)
        host = str(info.get("host") or "localhost")
        port = int(info.get("port") or 5432)
        self.unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self.upstream = (host, port)
        self.url = url
        self.passing = asyncio.Event()
        self.passing.set()
        self.server: asyncio.Server | None = None
        self.pumps: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HoldingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.proxy_url = make_conninfo(self.url, host="127.0.0.1", port=port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.passing.set()
        assert self.server is not None
        self.server.close()
        for t in list(self.pumps):
            t.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)

    def hold(self) -> None:
        self.passing.clear()

    def release(self) -> None:
        self.passing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.unix is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        down = asyncio.ensure_future(self._pump(up_reader, writer, held=True))
        up = asyncio.ensure_future(self._pump(reader, up_writer, held=False))
        self.pumps |= {down, up}
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for t in (down, up):
            t.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        while data := await reader.read(65536):
            if held:
                await self.passing.wait()
            writer.write(data)
            await writer.drain()


def state(conn: psycopg.Connection[Any], schema: str, task_id: str) -> tuple[str, int]:
    row = conn.execute(
        sql.SQL("SELECT status, attempts FROM {} WHERE id = %s").format(
            sql.Identifier(schema, "tasks")
        ),
        (task_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


async def until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_cancelled_wait_leaves_nothing_behind_and_the_objects_work_on(
    database_url: str, schema: str, queue_name: str
) -> None:
    async with (
        AsyncQueuer(database_url, schema=schema) as queuer,
        AsyncDequeuer(database_url, schema=schema, poll_interval=300) as dequeuer,
        AsyncTasks(database_url, schema=schema, poll_interval=300) as tasks,
    ):
        listener = await dequeuer.database.listener()
        assert listener is not None
        waiting = asyncio.create_task(dequeuer.dequeue(queue_name, timeout=60))
        await until(lambda: listener._box.interest, "the dequeue to wait")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not listener._box.interest  # the wait took its interest with it

        task = await queuer.enqueue(R(queue_name, "t"))
        claimed = await asyncio.wait_for(dequeuer.dequeue(queue_name, timeout=30), 30)
        assert claimed is not None and claimed.id == task.id

        watcher_listener = await tasks.database.listener()
        assert watcher_listener is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tasks.wait(task.id, timeout=60), 0.5)
        assert not watcher_listener._box.interest
        await dequeuer.finish(claimed, None, "ok")
        assert (await asyncio.wait_for(tasks.wait(task.id, timeout=30), 30)).result == "ok"


async def test_a_claim_cancelled_on_its_way_back_does_not_lose_the_task(
    database_url: str, schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    async with AsyncQueuer(database_url, schema=schema) as queuer:
        task = await queuer.enqueue(R(queue_name, "t"))  # max_attempts 1: no second try
    async with HoldingProxy(database_url) as proxy, AsyncDequeuer(
        proxy.proxy_url, schema=schema
    ) as dequeuer:  # fmt: skip
        assert await dequeuer.dequeue(f"{queue_name}-warm", timeout=0) is None
        proxy.hold()
        claim = asyncio.create_task(dequeuer.dequeue(queue_name, timeout=0))
        # PostgreSQL has claimed the row; its answer is on the way to the client
        await until(lambda: state(conn, schema, task.id)[0] == "running", "the claim")
        claim.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the claim
        proxy.release()
        with contextlib.suppress(asyncio.CancelledError):
            got = await asyncio.wait_for(claim, 30)
            assert got is not None and got.id == task.id  # or it was handed over after all
            return
        # Cancelled without handing the task over: it must not stay claimed by nobody
        # (the rescue would fail it, max_attempts 1, without it ever having run).
        assert state(conn, schema, task.id) == ("waiting", 0)
        again = await dequeuer.dequeue(queue_name, timeout=0)
        assert again is not None and again.id == task.id
