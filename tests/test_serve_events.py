"""`taskq serve`: waiting and watching over HTTP. Server-Sent Events show every
progress change and the final status, then close; a watcher keeps receiving while the
server's LISTEN connection is killed; many watchers of one task cost one read per
change (the hub); the long poll returns once the task is final; paging visits every
task exactly once while tasks are inserted concurrently."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import wait_for
from support.serve import Server, make_token

import taskq

pytest.importorskip("fastapi")

APP = f"taskq-serve-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(database_url: str, schema: str) -> Iterator[Server]:
    s = Server(database_url, schema, "--application-name", APP)
    yield s
    assert s.stop() == 0
    assert not any("Traceback" in line for line in s.stderr), "".join(s.stderr)


@pytest.fixture(scope="module")
def token(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "read")


class Collector:
    """Reads an event stream on a thread."""

    def __init__(self, server: Server, task_id: str, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(server, task_id, token), daemon=True)
        self._t.start()

    def _run(self, server: Server, task_id: str, token: str) -> None:
        try:
            for e in server.events(f"/api/v1/tasks/{task_id}/events", token, timeout=60):
                self.events.append(e)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.closed = True

    def progress(self) -> list[Any]:
        return [e["data"]["progress"] for e in self.events]

    def saw(self, progress: Any) -> bool:
        assert self.error is None, self.error
        return progress in self.progress()


def test_a_watcher_sees_every_progress_change_then_the_final_status(
    server: Server, token: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    t = queuer.enqueue(queue=queue_name, type="watched")
    watchers = [Collector(server, t.id, token) for _ in range(3)]
    for w in watchers:
        wait_for(lambda w=w: w.events, what="the first snapshot")
    claimed = dequeuer.dequeue(queue_name, timeout=10)
    assert claimed is not None
    for step in range(1, 6):
        dequeuer.heartbeat(claimed, {"step": step, "steps": 5})
        for w in watchers:
            wait_for(lambda w=w, step=step: w.saw({"step": step, "steps": 5}),
                     what=f"step {step}")  # fmt: skip
    dequeuer.finish(claimed, {"step": 5, "steps": 5}, result={"ok": True})
    for w in watchers:
        wait_for(lambda w=w: w.closed, what="the stream to close after the final status")
        assert w.error is None
        statuses = [e["data"]["status"] for e in w.events]
        assert statuses[0] == "waiting" and statuses[-1] == "finished"
        assert w.events[-1]["data"]["result"] == {"ok": True}
        running = [e["data"]["progress"] for e in w.events if e["data"]["status"] == "running"]
        assert [p["step"] for p in running if p] == [1, 2, 3, 4, 5]  # each change, once


def test_events_of_an_ended_task_are_one_snapshot_and_unknown_tasks_404(
    server: Server, token: str, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    t = queuer.enqueue(queue=queue_name, type="ended")
    tasks.cancel(t.id)
    events = list(server.events(f"/api/v1/tasks/{t.id}/events", token))
    assert [e["data"]["status"] for e in events] == ["cancelled"]
    r = server.request("GET", f"/api/v1/tasks/{uuid.uuid4()}/events", token=token)
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    assert server.request("GET", f"/api/v1/tasks/{t.id}/events").status == 401


def _listen_backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                         (f"{APP}-listen",)).fetchall()  # fmt: skip
    return [r[0] for r in rows]


def test_a_watcher_keeps_receiving_when_the_listen_connection_is_killed(
    server: Server, token: str, database_url: str, queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer, queue_name: str,
) -> None:  # fmt: skip
    t = queuer.enqueue(queue=queue_name, type="resilient")
    w = Collector(server, t.id, token)
    wait_for(lambda: w.events, what="the first snapshot")
    claimed = dequeuer.dequeue(queue_name, timeout=10)
    assert claimed is not None
    dequeuer.heartbeat(claimed, {"percent": 0.1})
    wait_for(lambda: w.saw({"percent": 0.1}))
    (old,) = wait_for(lambda: _listen_backends(database_url), what="the LISTEN backend")
    with psycopg.connect(database_url, autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (old,)).fetchone() == (True,)
    for i in range(2, 6):  # while the connection is down, and after it came back
        dequeuer.heartbeat(claimed, {"percent": i / 10})
        wait_for(lambda i=i: w.saw({"percent": i / 10}), timeout=30, what=f"progress {i}")
    wait_for(lambda: (pids := _listen_backends(database_url)) and old not in pids,
             timeout=30, what="a new LISTEN connection")  # fmt: skip
    dequeuer.finish(claimed, None, result=1)
    wait_for(lambda: w.closed)
    assert w.events[-1]["data"]["status"] == "finished"


def test_the_long_poll_returns_once_the_task_is_final(
    server: Server, token: str, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    t = queuer.enqueue(queue=queue_name, type="waited")
    result: dict[str, Any] = {}

    def wait() -> None:
        r = server.request("GET", f"/api/v1/tasks/{t.id}/wait?timeout=60", token=token,
                           timeout=90)  # fmt: skip
        result["reply"] = r

    th = threading.Thread(target=wait, daemon=True)
    th.start()
    tasks.cancel(t.id)
    wait_for(lambda: "reply" in result, timeout=30, what="the long poll to return")
    assert (result["reply"].status, result["reply"].json["status"]) == (200, "cancelled")


def test_many_watchers_of_one_task_cost_one_read_per_change(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    queue_name: str,
) -> None:  # fmt: skip
    from taskq.db import AsyncDatabase
    from taskq.server.hub import WatchHub

    t = queuer.enqueue(queue=queue_name, type="fan-out")
    changes = 5

    async def main() -> tuple[int, list[list[Any]]]:
        db = AsyncDatabase(database_url, schema, max_size=2)
        hub = WatchHub(db, poll_interval=30.0)  # only notifications wake it here
        try:
            watchers = [hub.subscribe(t.id) for _ in range(200)]
            assert hub.topics == 1
            seen: list[list[Any]] = [[] for _ in watchers]

            async def drain(i: int) -> None:
                async for task in watchers[i]:
                    seen[i].append(task.progress)

            readers = [asyncio.ensure_future(drain(i)) for i in range(len(watchers))]
            while not all(seen):
                await asyncio.sleep(0.01)
            claimed = await asyncio.to_thread(dequeuer.dequeue, queue_name, timeout=10)
            for step in range(1, changes + 1):
                await asyncio.to_thread(dequeuer.heartbeat, claimed, {"step": step})
                while not all(s and s[-1] == {"step": step} for s in seen):
                    await asyncio.sleep(0.01)
            await asyncio.to_thread(dequeuer.finish, claimed, None)
            await asyncio.wait_for(asyncio.gather(*readers), 30)
            return hub.reads, seen
        finally:
            await hub.close()
            await db.close()

    reads, seen = asyncio.run(main())
    assert all(s[-1] == {"step": changes} for s in seen)
    # one read to start, one per notification (the claim, each heartbeat, the finish);
    # never one per watcher
    assert reads <= 2 + changes + 2, reads


def test_paging_visits_every_task_exactly_once_while_tasks_are_inserted(
    server: Server, token: str, database_url: str, schema: str, queue_name: str
) -> None:
    with taskq.Queuer(database_url, schema=schema) as q:
        existing = {t.id for t in q.enqueue_many(
            [taskq.TaskEnqueueRequest(queue_name, "page", spec={"i": i}) for i in range(150)])}  # fmt: skip
        stop = threading.Event()
        inserted: list[str] = []

        def insert() -> None:
            while not stop.is_set():
                inserted.append(q.enqueue(queue=queue_name, type="page-new").id)
                time.sleep(0.005)

        th = threading.Thread(target=insert, daemon=True)
        th.start()
        seen: list[str] = []
        cursor = None
        pages = 0
        try:
            while True:
                path = f"/api/v1/tasks?queue={queue_name}&limit=7"
                if cursor:
                    path += f"&cursor={cursor}"
                r = server.request("GET", path, token=token)
                assert r.status == 200, r.text
                seen += [t["id"] for t in r.json["tasks"]]
                pages += 1
                cursor = r.json["next_cursor"]
                if cursor is None:
                    break
        finally:
            stop.set()
            th.join()
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert existing <= set(seen), "a task that existed before paging began was skipped"
    assert set(seen) <= existing | set(inserted)
    assert pages >= 150 // 7
    created = [t for t in seen if t in existing]
    assert created, "newest first"
