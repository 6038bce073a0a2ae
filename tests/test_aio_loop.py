"""``taskq.aio`` never blocks the event loop (contract §7).

Two checks run around every scenario (``guard.watched()``):

- Timing: a ticker coroutine sleeps 10 ms at a time and records the longest gap
  between its wake-ups, and the loop runs in debug mode, so asyncio names any callback
  that held it. Each wait below lasts WAIT seconds or more (a timeout with nothing to
  claim, a wait for a task that does not end, a statement held up by a lock another
  connection holds), so a face that blocked the loop for it would show a gap that
  long; MAX_GAP is a third of that, far above what a busy machine's scheduling does to
  a free loop (0.7 s was seen at a load average of 13 on two cores). A liveness check,
  not a speed assertion.
- Structure: while the scenario runs, a call on the event loop's thread to a blocking
  wait (``time.sleep``, psycopg's synchronous waits, ``threading`` waits) or a hand-off
  to a thread (``run_in_executor``) made from taskq code, or from a library taskq
  called, is recorded and fails the test: such stalls are too short to see in the
  timing under traffic.

The lock scenarios release the lock only once the ticker has ticked a number of times
while taskq's statement waits in the database: if the loop were blocked, the ticks
could not come, the lock would be released by its holder's watchdog instead, and the
gap would be the watchdog's 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import psycopg
import psycopg.waiting
import pytest
from psycopg import sql

import taskq
from taskq.aio import AsyncDequeuer, AsyncQueuer, AsyncScheduler, AsyncTasks

R = taskq.TaskEnqueueRequest

TICK = 0.01
WAIT = 3.0
"""How long each idle wait lasts: a blocked loop would show a gap this long."""

MAX_GAP = WAIT / 3
"""The longest the loop may go without running the ticker (seconds)."""


class Ticker:
    """Ticks every TICK seconds on the running loop; keeps the longest gap."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    async def after(self, n: int) -> None:
        """Until the ticker has ticked ``n`` more times."""
        target = self.ticks + n
        while self.ticks < target:
            await asyncio.sleep(TICK)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Ticker]:
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield self
        finally:
            self._stop = True
            await self._task


def _from_taskq() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("taskq."):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class Guard:
    """Watches one scenario; see the module docstring."""

    def __init__(self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
        self.caplog = caplog
        self.monkeypatch = monkeypatch
        self.blocking: list[str] = []
        self.on = False

    def _on_loop(self) -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return self.on

    def _spy(self, owner: Any, name: str) -> None:
        """Record calls of ``owner.name`` made by taskq (directly or through a library
        it calls) on the thread that runs the event loop."""
        original = getattr(owner, name)
        guard = self

        @functools.wraps(original)
        def spy(*args: Any, **kwargs: Any) -> Any:
            if guard._on_loop() and _from_taskq():
                if not (name == "run_in_executor" and socket.getaddrinfo in args):
                    guard.blocking.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, spy)

    def slow_callbacks(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name == "asyncio"]

    @contextlib.asynccontextmanager
    async def watched(self) -> AsyncIterator[Ticker]:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = MAX_GAP
        self.caplog.set_level(logging.WARNING, logger="asyncio")
        for owner, name in ((time, "sleep"), (psycopg.waiting, "wait"),
                            (psycopg.waiting, "wait_conn"), (threading.Event, "wait"),
                            (threading.Condition, "wait")):  # fmt: skip
            self._spy(owner, name)
        self._spy(asyncio.BaseEventLoop, "run_in_executor")
        self.on = True
        try:
            async with Ticker().running() as ticker:
                yield ticker
        finally:
            self.on = False
        assert self.blocking == [], f"blocking calls on the event loop: {self.blocking[:5]}"
        assert ticker.max_gap < MAX_GAP, (
            f"the event loop stalled for {ticker.max_gap:.3f} s; "
            f"asyncio says: {self.slow_callbacks()[:3]}"
        )
        assert [m for m in self.slow_callbacks() if "Executing" in m] == []


@pytest.fixture
def guard(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Guard:
    return Guard(caplog, monkeypatch)


async def idle(ticker: Ticker, work: Awaitable[Any]) -> Any:
    """``work`` (which waits WAIT seconds) while the ticker runs; it must keep ticking."""
    before = ticker.ticks
    result = await work
    assert ticker.ticks > before, "the ticker never ran while taskq waited"
    return result


# ---- waits with nothing happening --------------------------------------------------------


async def test_dequeue_waiting_with_nothing_to_claim(
    database_url: str, schema: str, queue_name: str, guard: Guard
) -> None:
    async with AsyncDequeuer(database_url, schema=schema, poll_interval=0.5) as dequeuer:
        async with guard.watched() as ticker:
            assert await idle(ticker, dequeuer.dequeue(queue_name, timeout=WAIT)) is None
            assert await idle(ticker, dequeuer.dequeue(timeout=WAIT / 2)) is None
            got = await idle(ticker, dequeuer.dequeue_many([queue_name], 5, timeout=WAIT / 2))
            assert got == []


async def test_dequeue_waiting_behind_a_transaction_pooler_polls_without_blocking(
    database_url: str, schema: str, queue_name: str, guard: Guard
) -> None:
    # pooler="transaction" with no listen_url: no LISTEN, the wait is the poll alone
    async with AsyncDequeuer(
        database_url, schema=schema, poll_interval=0.2, pooler="transaction"
    ) as dequeuer:  # fmt: skip
        async with guard.watched() as ticker:
            assert await idle(ticker, dequeuer.dequeue(queue_name, timeout=WAIT)) is None


async def test_wait_and_watch_on_a_task_that_does_not_end(
    database_url: str, schema: str, queue_name: str, guard: Guard
) -> None:
    async with (
        AsyncQueuer(database_url, schema=schema) as queuer,
        AsyncTasks(database_url, schema=schema, poll_interval=0.5) as tasks,
    ):
        task = await queuer.enqueue(R(queue_name, "t"))
        async with guard.watched() as ticker:
            with pytest.raises(TimeoutError):
                await idle(ticker, tasks.wait(task.id, timeout=WAIT))

            seen: list[taskq.Task] = []

            async def watch() -> None:
                async for snapshot in tasks.watch(task.id, timeout=WAIT):
                    seen.append(snapshot)

            with pytest.raises(TimeoutError):
                await idle(ticker, watch())
            assert [t.status for t in seen] == [taskq.TaskStatus.WAITING]


async def test_wait_and_watch_woken_while_other_coroutines_work(
    database_url: str, schema: str, queue_name: str, guard: Guard
) -> None:
    async with (
        AsyncQueuer(database_url, schema=schema) as queuer,
        AsyncDequeuer(database_url, schema=schema) as dequeuer,
        AsyncTasks(database_url, schema=schema, poll_interval=300) as tasks,
    ):
        task = await queuer.enqueue(R(queue_name, "t"))
        async with guard.watched():
            waiter = asyncio.create_task(tasks.wait(task.id, timeout=60))
            snapshots: list[taskq.Task] = []

            async def watch() -> None:
                async for snapshot in tasks.watch(task.id, timeout=60):
                    snapshots.append(snapshot)

            watcher = asyncio.create_task(watch())
            while not snapshots:  # the watcher is listening once it has the first one
                await asyncio.sleep(TICK)
            claimed = await dequeuer.dequeue(queue_name, timeout=5)
            assert claimed is not None
            for step in range(3):
                await dequeuer.heartbeat(claimed, {"step": step})
            await dequeuer.finish(claimed, None, "done")
            # liveness: the re-read poll is 300 s away, NOTIFY wakes both
            done = await asyncio.wait_for(waiter, 30)
            await asyncio.wait_for(watcher, 30)
        assert done.status is taskq.TaskStatus.FINISHED and done.result == "done"
        assert snapshots[-1].status is taskq.TaskStatus.FINISHED


# ---- statements held up in the database ---------------------------------------------------


class HeldLock:
    """A lock taken by another connection on a thread of its own, released when
    ``release()`` is called, or after 30 s by its watchdog."""

    def __init__(self, url: str, statement: sql.Composable, params: Any = None) -> None:
        self.url = url
        self.statement = statement
        self.params = params
        self.pid = 0
        self.locked = threading.Event()
        self.released = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        try:
            with psycopg.connect(self.url) as c:
                c.execute(self.statement, self.params)
                # the server's own pid for the transaction that holds the lock (behind a
                # transaction pooler, c.info.backend_pid is the pooler's, and the server
                # connection is the transaction's)
                row = c.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                self.pid = row[0]
                self.locked.set()
                self.released.wait(30)
                c.rollback()
        except BaseException as e:  # reported by the test
            self.error = e
            self.locked.set()

    def release(self) -> None:
        self.released.set()


async def blocked_by(lock: HeldLock, url: str) -> None:
    """Until some other backend waits for ``lock`` (polling pg_stat_activity)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
        deadline = time.monotonic() + 30
        while True:
            cur = await look.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (lock.pid,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            assert time.monotonic() < deadline, "taskq's statement never waited for the lock"
            await asyncio.sleep(0.02)


async def held_up(
    ticker: Ticker, url: str, lock_sql: sql.Composable, params: Any, call: Awaitable[Any]
) -> Any:
    """Run ``call`` while ``lock_sql`` (run by another connection) holds it up; the
    loop must go on ticking while it waits."""
    lock = HeldLock(url, lock_sql, params)
    await asyncio.to_thread(lock.locked.wait, 30)
    assert lock.error is None, lock.error
    try:
        task = asyncio.ensure_future(call)
        await blocked_by(lock, url)
        assert not task.done()
        await ticker.after(20)  # ticks while taskq's statement is stuck in the database
        assert not task.done()
    finally:
        lock.release()
    result = await asyncio.wait_for(task, 30)
    await asyncio.to_thread(lock.thread.join, 30)
    return result


def lock_table(schema: str, table: str) -> sql.Composable:
    return sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, table))


def lock_row(schema: str) -> sql.Composable:
    return sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(
        sql.Identifier(schema, "tasks")
    )


async def test_statements_held_up_in_the_database_do_not_hold_up_the_loop(
    database_url: str, schema: str, queue_name: str, guard: Guard
) -> None:
    url = database_url
    async with (
        AsyncQueuer(url, schema=schema) as queuer,
        AsyncDequeuer(url, schema=schema) as dequeuer,
        AsyncTasks(url, schema=schema) as tasks,
        AsyncScheduler(url, schema=schema) as scheduler,
    ):
        # every pool is open and warm: what is measured is the statements
        for obj in (queuer, dequeuer, tasks, scheduler):
            await obj.database.wait_ready(30)
        async with guard.watched() as ticker:
            tasks_table = lock_table(schema, "tasks")
            task = await held_up(ticker, url, tasks_table, None, queuer.enqueue(R(queue_name, "t")))
            assert task.queue == queue_name
            batch = await held_up(
                ticker,
                url,
                tasks_table,
                None,
                queuer.enqueue_many([R(queue_name, "t", i) for i in range(50)]),
            )
            assert len(batch) == 50
            claimed = await held_up(
                ticker, url, tasks_table, None, dequeuer.dequeue(queue_name, timeout=0)
            )
            assert claimed is not None and claimed.id == task.id
            got = await held_up(ticker, url, tasks_table, None, tasks.get(task.id))
            assert got.status is taskq.TaskStatus.RUNNING
            await held_up(ticker, url, lock_row(schema), (task.id,), dequeuer.heartbeat(claimed, 1))
            await held_up(
                ticker, url, lock_row(schema), (task.id,), dequeuer.finish(claimed, 1, "ok")
            )
            await held_up(ticker, url, lock_row(schema), (batch[0].id,), tasks.cancel(batch[0].id))
            schedule = await held_up(
                ticker,
                url,
                lock_table(schema, "schedules"),
                None,
                scheduler.schedule(taskq.TaskScheduleRequest(queue_name, "t", "* * * * *")),
            )
            assert schedule.queue == queue_name
        assert (await tasks.get(task.id)).result == "ok"


# ---- traffic -------------------------------------------------------------------------------


async def test_enqueue_and_claim_traffic_leaves_the_loop_free(
    database_url: str, fresh_schema: str, guard: Guard
) -> None:
    n, workers = 400, 10
    async with (
        AsyncQueuer(database_url, schema=fresh_schema) as queuer,
        AsyncDequeuer(database_url, schema=fresh_schema, pool_size=workers) as dequeuer,
        AsyncTasks(database_url, schema=fresh_schema, poll_interval=300) as tasks,
    ):
        async with guard.watched() as ticker:
            first = await queuer.enqueue(R("traffic", "t", -1))
            waiter = asyncio.create_task(tasks.wait(first.id, timeout=120))
            done: list[str] = []

            async def produce(k: int) -> None:
                for start in range(0, n // 4, 10):
                    await queuer.enqueue_many(
                        [R("traffic", "t", [k, start + i]) for i in range(10)]
                    )

            async def consume() -> None:
                while len(done) < n + 1:
                    task = await dequeuer.dequeue("traffic", timeout=0.5)
                    if task is not None:
                        await dequeuer.heartbeat(task, "half")
                        await dequeuer.finish(task, "all", None)
                        done.append(task.id)

            before = ticker.ticks
            await asyncio.wait_for(
                asyncio.gather(
                    *(produce(k) for k in range(4)), *(consume() for _ in range(workers))
                ),
                120,
            )
            assert (await asyncio.wait_for(waiter, 30)).status is taskq.TaskStatus.FINISHED
            assert ticker.ticks > before
        assert len(done) == len(set(done)) == n + 1
