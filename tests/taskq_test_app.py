"""Handlers the worker tests run in real `taskq worker` processes.

taskq worker taskq_test_app:registry
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg

import taskq

registry = taskq.Registry()


@registry.task("noop")
def noop(ctx: taskq.TaskContext) -> None:
    return None


@registry.task("echo")
def echo(ctx: taskq.TaskContext) -> Any:
    return {"spec": ctx.spec, "attempt": ctx.task.attempts, "current": taskq.current_task_id()}


@registry.task("add")
def add(ctx: taskq.TaskContext) -> Any:
    base = ctx.previous_result or 0
    return base + (ctx.spec or 0)


@registry.task("flaky", retry_delay=0.05, max_attempts=3)
def flaky(ctx: taskq.TaskContext) -> Any:
    """Fails until attempt `spec["succeed_on"]`."""
    if ctx.task.attempts < ctx.spec["succeed_on"]:
        raise RuntimeError(f"flaky failure on attempt {ctx.task.attempts}")
    return "ok"


@registry.task("boom")
def boom(ctx: taskq.TaskContext) -> None:
    raise ValueError("boom")


@registry.task("give_up", max_attempts=5)
def give_up(ctx: taskq.TaskContext) -> None:
    raise taskq.TaskFailed("not worth retrying")


@registry.task("steps")
def steps(ctx: taskq.TaskContext) -> Any:
    n = ctx.spec.get("steps", 5)
    for i in range(1, n + 1):
        ctx.progress(taskq.Progress(step=i, steps=n, status=f"step {i}"))
        ctx.wait_cancelled(ctx.spec.get("pause", 0.05))
    return n


@registry.task("until_cancelled")
def until_cancelled(ctx: taskq.TaskContext) -> Any:
    """Reports progress until told the task is cancelled."""
    i = 0
    while True:
        i += 1
        ctx.progress({"i": i})  # raises TaskCancelled once cancelled
        time.sleep(0.05)


@registry.task("sleepy")
def sleepy(ctx: taskq.TaskContext) -> Any:
    """Sleeps `spec` seconds (ignoring cancellation), then returns."""
    time.sleep(float(ctx.spec))
    return "slept"


@registry.task("nap")
def nap(ctx: taskq.TaskContext) -> Any:
    """``sleepy`` that first reports progress "started", so a test can tell that its
    handler runs, not only that a worker claimed it (helpers.handler_started)."""
    ctx.progress("started")
    time.sleep(float(ctx.spec))
    return "slept"


@registry.task("hang", timeout=0.5, max_attempts=1)
def hang(ctx: taskq.TaskContext) -> Any:
    ctx.wait_cancelled(30)
    return "woke"


@registry.task("die", max_attempts=2, heartbeat_timeout=2)
def die(ctx: taskq.TaskContext) -> None:
    os._exit(3)


@registry.task("record_pid")
def record_pid(ctx: taskq.TaskContext) -> Any:
    time.sleep(float(ctx.spec or 0))
    return os.getpid()


@registry.task("async_echo")
async def async_echo(ctx: taskq.TaskContext) -> Any:
    await asyncio.sleep(0.01)
    return {"async": True, "spec": ctx.spec, "current": taskq.current_task_id()}


@registry.task("async_hang", timeout=0.5)
async def async_hang(ctx: taskq.TaskContext) -> Any:
    await asyncio.sleep(30)
    return "woke"


# ---- chaos suite (tests/chaos) ---------------------------------------------------

_ledger_conn = threading.local()


def _ledger_append(task: taskq.Task) -> None:
    """Append (task id, pid, attempt) to <TASKQ_SCHEMA>.ledger on this thread's own
    connection, reconnecting once if the database dropped it."""
    from psycopg import sql

    query = sql.SQL("INSERT INTO {} (task_id, pid, attempt) VALUES (%s, %s, %s)").format(
        sql.Identifier(os.environ.get("TASKQ_SCHEMA", "taskq"), "ledger")
    )
    for retry in (False, True):
        conn = getattr(_ledger_conn, "conn", None)
        if conn is None or conn.closed:
            conn = _ledger_conn.conn = psycopg.connect(
                os.environ["TASKQ_DATABASE_URL"], autocommit=True, connect_timeout=5
            )
        try:
            conn.execute(query, (task.id, os.getpid(), task.attempts))
            return
        except psycopg.OperationalError:
            conn.close()
            if retry:
                raise


@registry.task("ledger", max_attempts=5, retry_delay=0.1)
def ledger(ctx: taskq.TaskContext) -> Any:
    """Appends to the ledger table, then sleeps ``spec["sleep"]`` seconds (and
    ``spec["first_sleep"]`` more on the first attempt); returns the worker's pid."""
    spec = ctx.spec or {}
    _ledger_append(ctx.task)
    pause = float(spec.get("sleep", 0))
    if ctx.task.attempts == 1:
        pause += float(spec.get("first_sleep", 0))
    if pause:
        time.sleep(pause)
    return os.getpid()


# ---- workflows (tests/test_workflows.py) -------------------------------------------


@registry.task("gated")
def gated(ctx: taskq.TaskContext) -> Any:
    """Waits until the file ``spec["gate"]`` exists (when given; at most 60 s), then
    returns what it was handed: ``{"previous": ctx.previous_result, "value": ...}``."""
    spec = ctx.spec or {}
    gate = spec.get("gate")
    deadline = time.monotonic() + 60
    while gate and not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        if ctx.wait_cancelled(0.01):
            raise taskq.TaskCancelled(ctx.task.id)
    return {"previous": ctx.previous_result, "value": spec.get("value")}


@registry.task("cpu_burn", heartbeat_timeout=1, max_attempts=1)
def cpu_burn(ctx: taskq.TaskContext) -> Any:
    """Pure-Python CPU work for `spec` seconds, never reporting progress."""
    end = time.monotonic() + float(ctx.spec)
    n = 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(1000))
    return "burnt"


@registry.task("loop_blocker", heartbeat_timeout=1, max_attempts=1)
async def loop_blocker(ctx: taskq.TaskContext) -> Any:
    """An async handler that blocks its event loop for `spec` seconds."""
    time.sleep(float(ctx.spec))
    return "unblocked"
