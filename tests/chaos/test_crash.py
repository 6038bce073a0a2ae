"""Workers that die or stall mid-task: SIGKILL, SIGSTOP/SIGCONT, a handler that
kills its own process. Every signal is really sent to a real ``taskq worker``."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest
from chaoslib import Cluster, Proc, Spawn, wait_registered, worker_args
from helpers import wait_for
from psycopg import sql

import taskq
from taskq.core.defaults import RESCUE_INTERVAL as DEFAULT_RESCUE_INTERVAL

HEARTBEAT_TIMEOUT = 2.0
SLACK = 1.5
"""One rescue query plus scheduling noise on a busy two-core machine (seconds)."""


def task_row(cluster: Cluster, schema: str, task_id: str) -> dict[str, Any]:
    with cluster.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(schema, "tasks")),
            (task_id,),
        )
        names = [c.name for c in cur.description or ()]
        row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def ledger_runs(cluster: Cluster, schema: str, task_id: str) -> list[tuple[int, int]]:
    """(pid, attempt) of every run of the task's handler, in order."""
    rows = cluster.query(
        sql.SQL("SELECT pid, attempt FROM {} WHERE task_id = %s ORDER BY at").format(
            sql.Identifier(schema, "ledger")
        ),
        (task_id,),
    )
    return [(int(p), int(a)) for p, a in rows]


def wait_running_on(cluster: Cluster, schema: str, task_id: str, proc: Proc) -> None:
    """Until the task's handler runs in ``proc`` (its ledger row is written)."""
    wait_for(
        lambda: any(pid == proc.pid for pid, _ in ledger_runs(cluster, schema, task_id)),
        timeout=20, what=f"task {task_id} to start in worker {proc.pid}",
    )  # fmt: skip


def test_kill9_mid_task_comes_back_inside_the_window_and_finishes_once_elsewhere(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn
) -> None:
    a = spawn(*worker_args(concurrency=1))
    wait_registered(cluster, schema, a)
    with taskq.Queuer(cluster.url, schema=schema) as q:
        task = q.enqueue(
            queue="crash", type="ledger", spec={"first_sleep": 120},
            heartbeat_timeout=HEARTBEAT_TIMEOUT, max_attempts=3,
        )  # fmt: skip
    wait_running_on(cluster, schema, task.id, a)
    b = spawn(*worker_args(concurrency=1))  # default --rescue-interval (2 s)
    wait_registered(cluster, schema, b)

    a.kill9()
    [(killed_at,)] = cluster.query("SELECT now()")
    done = wait_for(
        lambda: (r := task_row(cluster, schema, task.id))["status"] == "finished" and r,
        timeout=HEARTBEAT_TIMEOUT + DEFAULT_RESCUE_INTERVAL + 20, what="the task to finish",
    )  # fmt: skip

    # The rescue stamped run_at with its own now() and wrote how long the heartbeat had
    # been silent (database clock) into the error, which finishing keeps.
    m = re.match(r"rescued: no heartbeat for ([0-9.]+) s", done["error"] or "")
    assert m, done["error"]
    silent = float(m.group(1))
    rescued_at = done["run_at"]
    window = HEARTBEAT_TIMEOUT + DEFAULT_RESCUE_INTERVAL + SLACK
    assert HEARTBEAT_TIMEOUT - 0.05 <= silent <= window, silent
    assert (rescued_at - killed_at).total_seconds() <= window
    assert done["started_at"] >= rescued_at

    # Finished once, elsewhere: the second attempt ran in B and its result stands.
    assert done["result"] == b.pid
    assert done["attempts"] == 2
    assert ledger_runs(cluster, schema, task.id) == [(a.pid, 1), (b.pid, 2)]
    assert b.stop() == 0, b.log()


def test_sigstop_past_heartbeat_timeout_then_sigcont_has_its_writes_refused(
    cluster: Cluster, schema: str, ledger: str, spawn: Spawn
) -> None:
    a = spawn(*worker_args(concurrency=1))
    wait_registered(cluster, schema, a)
    with taskq.Queuer(cluster.url, schema=schema) as q:
        task = q.enqueue(
            queue="stall", type="ledger", spec={"first_sleep": 3},
            heartbeat_timeout=HEARTBEAT_TIMEOUT, max_attempts=3,
        )  # fmt: skip
        wait_running_on(cluster, schema, task.id, a)
        a.signal(signal.SIGSTOP)
        try:
            b = spawn(*worker_args(concurrency=1))
            wait_registered(cluster, schema, b)
            done = wait_for(
                lambda: (r := task_row(cluster, schema, task.id))["status"] == "finished" and r,
                timeout=20, what="the other worker to finish the task",
            )  # fmt: skip
            assert done["result"] == b.pid
        finally:
            a.signal(signal.SIGCONT)

        # A wakes up, its handler returns, and its finish is refused under the old lease.
        wait_for(
            lambda: "task outcome refused" in a.log() and "claim was lost" in a.log(),
            timeout=20, what="the stalled worker's write to be refused",
        )  # fmt: skip
        after = task_row(cluster, schema, task.id)
        assert after == done, "a refused write changed the row"
        assert [pid for pid, _ in ledger_runs(cluster, schema, task.id)] == [a.pid, b.pid]

        # A is still a working worker: with B gone, it takes the next task.
        assert b.stop() == 0, b.log()
        nxt = q.enqueue(queue="stall", type="ledger", heartbeat_timeout=HEARTBEAT_TIMEOUT)
    with taskq.Tasks(cluster.url, schema=schema) as tasks:
        assert tasks.wait(nxt.id, timeout=20).result == a.pid
    assert a.alive()
    assert a.stop() == 0, a.log()


@pytest.mark.parametrize("prefetch", [False, True], ids=["no-prefetch", "prefetch"])
def test_handler_that_kills_its_worker_every_time_ends_failed_while_others_flow(
    cluster: Cluster, schema: str, spawn: Spawn, prefetch: bool
) -> None:
    """``die`` calls os._exit(3) on every attempt. A supervisor (this test) restarts
    dead workers, as systemd or Kubernetes would. By default every attempt is
    charged as it is claimed, so it dies exactly max_attempts times; with --prefetch,
    a handler that kills its worker before its start could be recorded is given back
    uncharged, at most twice, then every crash counts."""
    extra = ("--prefetch",) if prefetch else ()
    workers = [spawn(*worker_args(*extra, concurrency=2)) for _ in range(2)]
    deaths = 0
    flowing = dict(queue="flow", type="noop", heartbeat_timeout=HEARTBEAT_TIMEOUT, max_attempts=5)
    with taskq.Queuer(cluster.url, schema=schema) as q, taskq.Tasks(
        cluster.url, schema=schema
    ) as tasks:  # fmt: skip
        die = q.enqueue(queue="flow", type="die", max_attempts=2,
                        heartbeat_timeout=HEARTBEAT_TIMEOUT)  # fmt: skip
        others = [q.enqueue(**flowing).id for _ in range(20)]  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while tasks.get(die.id).status not in (taskq.TaskStatus.FAILED, taskq.TaskStatus.FINISHED):
            if time.monotonic() > deadline:
                pytest.fail(f"die task still {tasks.get(die.id).status} after 60 s")
            for i, w in enumerate(workers):
                if not w.alive():
                    assert w.popen.returncode == 3, w.log()
                    deaths += 1
                    workers[i] = spawn(*worker_args(*extra, concurrency=2))
            others += [t.id for t in q.enqueue_many(
                [taskq.TaskEnqueueRequest(**flowing) for _ in range(5)]  # type: ignore[arg-type]
            )]  # fmt: skip
            time.sleep(0.2)
        final = tasks.get(die.id)
        assert final.status == taskq.TaskStatus.FAILED
        assert final.attempts == 2
        assert final.error is not None and final.error.startswith("rescued:"), final.error
        died = deaths + sum(not w.alive() for w in workers)
        if prefetch:
            assert 2 <= died <= 4, died
            assert [e.kind for e in final.errors][-2:] == ["rescue", "rescue"]
        else:
            assert died == 2
        for i, w in enumerate(workers):
            if not w.alive():
                workers[i] = spawn(*worker_args(*extra, concurrency=2))
        # Everything else finished, much of it while the die task was still going round.
        assert final.finished_at is not None
        for task_id in others:
            assert tasks.wait(task_id, timeout=30).status == taskq.TaskStatus.FINISHED
        before = [t for t in others if (f := tasks.get(t).finished_at) and f < final.finished_at]
        assert len(before) >= 10
    for w in workers:
        wait_registered(cluster, schema, w)  # a SIGTERM before start-up is a plain kill
        assert w.stop() == 0, w.log()
