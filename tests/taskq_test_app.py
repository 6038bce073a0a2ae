"""Handlers the worker tests run in real `taskq worker` processes.

taskq worker taskq_test_app:registry
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

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
