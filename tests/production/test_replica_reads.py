"""`read_url` (TASKQ_READ_URL, `taskq list --read-url`) sends the reads that may lag to
a real streaming replica, and everything else to the primary.

Proof by replication delay: replay is paused on the replica (pg_wal_replay_pause), then
a task is enqueued on the primary. Reads through read_url (Tasks.list/get on both
faces, `taskq list`, a worker's metrics gauges) do not see it; writes (cancel, retry)
reach it on the primary at once. Once replay resumes, the reads catch up.

The replica comes from tests/support/replica.py. This machine's server refuses
replication (no `replication` line in its pg_hba.conf), so when the test server
refuses, the module runs against an embedded PostgreSQL of its own (whose default
pg_hba.conf allows local replication); where neither works, it skips with the reason.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from helpers import run_taskq, wait_for
from support.replica import Replica
from test_metrics import WorkerProcess, scrape

import taskq
import taskq.aio

pytestmark = pytest.mark.faces("sync")


@dataclass
class Pair:
    primary: str
    replica: Replica
    schema: str

    def pause(self) -> None:
        with psycopg.connect(self.replica.url, autocommit=True) as c:
            c.execute("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        with psycopg.connect(self.replica.url, autocommit=True) as c:
            c.execute("SELECT pg_wal_replay_resume()")


def _replica_of(url: str) -> Iterator[Replica]:
    with Replica(url) as standby:
        yield standby


@pytest.fixture(scope="module")
def pair(database_url: str) -> Iterator[Pair]:
    schema = f"t_replica_{uuid.uuid4().hex[:10]}"
    folder: Path | None = None
    primary = database_url
    try:
        replica = Replica(primary).__enter__()
    except pytest.skip.Exception as refused:
        from taskq.db.embedded import embedded_url

        folder = Path(tempfile.mkdtemp(prefix="taskq-replica-primary-"))
        folder.chmod(0o755)  # the server may run as another user (root runs it so)
        try:
            primary = embedded_url(folder / "data")
        except Exception as e:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(f"{refused.msg}; and no embedded primary: {e}")
        try:
            replica = Replica(primary).__enter__()
        except BaseException:
            _stop(folder)
            raise
    try:
        taskq.migrate(primary, schema)
        replica.wait_caught_up(timeout=60)
        yield Pair(primary, replica, schema)
    finally:
        try:
            replica.__exit__(None, None, None)
        finally:
            if folder is not None:
                _stop(folder)


def _stop(folder: Path) -> None:
    from taskq.db.embedded import stop

    try:
        stop(folder / "data")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def paused(pair: Pair) -> Iterator[Pair]:
    pair.replica.wait_caught_up(timeout=60)
    pair.pause()
    try:
        yield pair
    finally:
        pair.resume()
        pair.replica.wait_caught_up(timeout=60)


def test_sync_list_and_get_read_the_replica_and_writes_go_to_the_primary(paused: Pair) -> None:
    p, queue = paused, f"r-{uuid.uuid4().hex[:8]}"
    with (
        taskq.Queuer(p.primary, schema=p.schema) as q,
        taskq.Tasks(p.primary, schema=p.schema, read_url=p.replica.url) as t,
        taskq.Tasks(p.primary, schema=p.schema) as direct,
    ):
        new = q.enqueue(queue=queue, type="x")
        assert [x.id for x in direct.list(queue=queue)] == [new.id]
        assert t.list(queue=queue) == []  # the replica has not replayed it
        with pytest.raises(taskq.TaskNotFound):
            t.get(new.id)
        cancelled = t.cancel(new.id)  # a write: the primary, which has it
        assert cancelled.status == taskq.TaskStatus.CANCELLED
        assert t.retry(new.id).status == taskq.TaskStatus.WAITING
        assert direct.get(new.id).status == taskq.TaskStatus.WAITING
        assert t.list(queue=queue) == []
        p.resume()
        p.replica.wait_caught_up(timeout=60)
        assert [x.id for x in t.list(queue=queue)] == [new.id]
        assert t.get(new.id).status == taskq.TaskStatus.WAITING


def test_async_list_and_get_read_the_replica_and_writes_go_to_the_primary(paused: Pair) -> None:
    p, queue = paused, f"r-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with (
            taskq.aio.AsyncQueuer(p.primary, schema=p.schema) as q,
            taskq.aio.AsyncTasks(p.primary, schema=p.schema, read_url=p.replica.url) as t,
        ):
            new = await q.enqueue(queue=queue, type="x")
            assert await t.list(queue=queue) == []
            with pytest.raises(taskq.TaskNotFound):
                await t.get(new.id)
            assert (await t.cancel(new.id)).status == taskq.TaskStatus.CANCELLED
            assert (await t.retry(new.id)).status == taskq.TaskStatus.WAITING
            p.resume()
            p.replica.wait_caught_up(timeout=60)
            assert [x.id for x in await t.list(queue=queue)] == [new.id]

    asyncio.run(scenario())


def test_cli_list_reads_the_replica_with_read_url_or_taskq_read_url(paused: Pair) -> None:
    p, queue = paused, f"r-{uuid.uuid4().hex[:8]}"
    with taskq.Queuer(p.primary, schema=p.schema) as q:
        new = q.enqueue(queue=queue, type="x")
    plain = run_taskq(p.primary, p.schema, "list", "--queue", queue)
    assert plain.returncode == 0 and new.id in plain.stdout, plain.stderr
    by_option = run_taskq(p.primary, p.schema, "list", "--queue", queue,
                          "--read-url", p.replica.url)  # fmt: skip
    assert by_option.returncode == 0, by_option.stderr
    assert new.id not in by_option.stdout
    by_env = run_taskq(p.primary, p.schema, "list", "--queue", queue,
                       TASKQ_READ_URL=p.replica.url)  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert new.id not in by_env.stdout
    shown = run_taskq(p.primary, p.schema, "cancel", new.id, TASKQ_READ_URL=p.replica.url)
    assert shown.returncode == 0, shown.stderr  # a write: the primary
    p.resume()
    p.replica.wait_caught_up(timeout=60)
    caught_up = run_taskq(p.primary, p.schema, "list", "--queue", queue, "--json",
                          "--read-url", p.replica.url)  # fmt: skip
    assert new.id in caught_up.stdout and "cancelled" in caught_up.stdout


def test_a_workers_metrics_gauges_read_the_replica(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, queue = pair, f"g-{uuid.uuid4().hex[:8]}"
    with taskq.Queuer(p.primary, schema=p.schema) as q:
        q.enqueue_many([taskq.TaskEnqueueRequest(queue=queue, type="x") for _ in range(2)])
    p.replica.wait_caught_up(timeout=60)
    monkeypatch.setenv("TASKQ_READ_URL", p.replica.url)  # the worker's environment
    w = WorkerProcess(p.primary, p.schema, "--queue", "elsewhere")

    def waiting() -> float | None:
        return scrape(w.port).get("taskq_queue_tasks", queue=queue, status="waiting")

    try:
        w.wait_serving()
        wait_for(lambda: waiting() == 2, timeout=60, what="the gauge")
        p.pause()
        try:
            with taskq.Queuer(p.primary, schema=p.schema) as q:
                q.enqueue_many([taskq.TaskEnqueueRequest(queue=queue, type="x") for _ in range(3)])
            for _ in range(3):  # scrapes read the paused replica: still 2, never 5
                assert waiting() == 2
        finally:
            p.resume()
        wait_for(lambda: waiting() == 5, timeout=60, what="the replica to catch up")
    finally:
        w.close()
