"""Failures you can read: every failed attempt keeps its exception type, message and
traceback (bounded, NUL-safe), with the attempt number, the worker and the time, as a
history on the task; rescues and timeouts get entries of their own."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from helpers import ROOT, taskq_env

import taskq
from taskq.core.fencing import MAX_TRACEBACK
from taskq.db import Database
from taskq.services.rescuer import Rescuer

R = taskq.TaskEnqueueRequest


def raise_key_error() -> None:
    spec = {"name": "x"}
    spec["to"]  # noqa: B018 - the failure under test


def test_each_failed_attempt_keeps_type_message_traceback_attempt_and_worker(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t", max_attempts=3, retry_delay=0))
    for n in range(3):
        claimed = dequeuer.dequeue(queue_name, timeout=5)
        assert claimed is not None and claimed.attempts == n + 1
        try:
            raise_key_error()
        except KeyError as e:
            dequeuer.fail(claimed, error=e)
    failed = tasks.get(task.id)
    assert failed.status is taskq.TaskStatus.FAILED
    assert failed.error == "'to'"
    assert [e.attempt for e in failed.errors] == [1, 2, 3]
    first = failed.errors[0]
    assert (first.kind, first.type, first.message) == ("exception", "KeyError", "'to'")
    assert first.summary() == "KeyError: 'to'"
    assert first.traceback is not None and "raise_key_error" in first.traceback
    assert first.traceback.rstrip().endswith("KeyError: 'to'")
    assert first.at is not None and first.at.tzinfo is not None


def test_a_failure_given_as_text_is_kept_as_text(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    claimed = dequeuer.dequeue(queue_name, timeout=5)
    assert claimed is not None
    dequeuer.fail(claimed, error="upstream said no")
    [entry] = tasks.get(task.id).errors
    assert (entry.kind, entry.type, entry.message, entry.traceback) == (
        "failed",
        None,
        "upstream said no",
        None,
    )


def test_the_history_is_nul_safe_bounded_and_keeps_the_last_twenty(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t", max_attempts=25, retry_delay=0))
    for n in range(25):
        claimed = dequeuer.dequeue(queue_name, timeout=5)
        assert claimed is not None
        try:
            raise ValueError(f"bad\x00byte {n} " + "x" * 20_000)
        except ValueError as e:
            dequeuer.fail(claimed, error=e)
    history = tasks.get(task.id).errors
    assert [e.attempt for e in history] == list(range(6, 26))
    for e in history:
        assert "\x00" not in e.message and "\x00" not in (e.traceback or "")
        assert len(e.traceback or "") <= MAX_TRACEBACK
        assert len(e.message) <= taskq.core.defaults.MAX_ERROR_LENGTH


def test_rescues_say_what_happened(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    stalled = queuer.enqueue(R(queue_name, "t", heartbeat_timeout=5, max_attempts=2))
    vanished = queuer.enqueue(R(queue_name, "t", heartbeat_timeout=600, max_attempts=2))
    db = Database(database_url, schema)
    worker_id = str(uuid.uuid4())
    stmts = db.settings.stmts
    try:
        db.query(stmts.workers.register(worker_id, "host", 1, [queue_name], 1))
        with taskq.Dequeuer(db, worker_id=worker_id) as d:
            assert len(d.dequeue_many([queue_name], 2)) == 2
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
        assert Rescuer(db, worker_stale=3600).run_once(now=later) == 1
        [entry] = tasks.get(stalled.id).errors
        assert entry.kind == "rescue" and entry.attempt == 1
        assert entry.message.startswith("rescued: no heartbeat for ")
        assert "heartbeat_timeout 5" in entry.message
        assert Rescuer(db, worker_stale=30).run_once(now=later) == 1
        [entry] = tasks.get(vanished.id).errors
        assert entry.message.startswith(f"rescued: worker {worker_id} not seen for ")
        assert entry.worker_id == worker_id
    finally:
        db.close()


@pytest.mark.faces("sync")
def test_a_worker_keeps_the_exception_and_a_timeout_gets_its_own_entry(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    import subprocess
    import sys

    raises = queuer.enqueue(R(queue_name, "boom"))
    slow = queuer.enqueue(R(queue_name, "hang"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq.cli", "worker", "taskq_test_app:registry",
         "--queue", queue_name, "--concurrency", "2", "--grace", "0"],
        env=taskq_env(database_url, schema), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        failed = tasks.wait(raises.id, timeout=60)
        timed_out = tasks.wait(slow.id, timeout=60)
    finally:
        proc.terminate()
        proc.wait(30)
    [entry] = failed.errors
    assert (entry.kind, entry.type, entry.message) == ("exception", "ValueError", "boom")
    assert entry.traceback is not None and 'raise ValueError("boom")' in entry.traceback
    assert entry.worker_id is not None
    [entry] = timed_out.errors
    assert (entry.kind, entry.message) == ("timeout", "timed out after 0.5 s")


@pytest.mark.faces("sync")
def test_show_prints_the_history_and_list_of_failed_tasks_the_last_error(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    queue_name: str,
) -> None:  # fmt: skip
    from helpers import run_taskq

    task = queuer.enqueue(R(queue_name, "t", max_attempts=2, retry_delay=0))
    for _ in range(2):
        claimed = dequeuer.dequeue(queue_name, timeout=5)
        assert claimed is not None
        try:
            raise_key_error()
        except KeyError as e:
            dequeuer.fail(claimed, error=e)
    shown = run_taskq(database_url, schema, "show", task.id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    attempts = [line for line in lines if line.strip().startswith("attempt ")]
    assert len(attempts) == 2 and all("exception  KeyError: 'to'" in a for a in attempts)
    assert "last traceback:" in lines and "raise_key_error" in shown.stdout
    listed = run_taskq(database_url, schema, "list", "--status", "failed",
                       "--queue", queue_name)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "LAST ERROR" in listed.stdout and "KeyError: 'to'" in listed.stdout
