"""The demo's task types. ``taskq worker taskq.tools.demo_app:registry --queue demo`` runs them too."""

from __future__ import annotations

import random
import time
from typing import Any

from taskq.core.types import Progress
from taskq.registry import Registry, TaskContext

registry = Registry()
QUEUE = "demo"


@registry.task("demo.resize", queue=QUEUE, heartbeat_timeout=10)
def resize(ctx: TaskContext) -> Any:
    """Pretends to resize a batch of images, reporting progress per image."""
    images = int(ctx.spec.get("images", 8))
    for i in range(1, images + 1):
        ctx.progress(Progress(step=i, steps=images, status=f"image {i} of {images}"))
        if ctx.wait_cancelled(0.25):
            return None
    return {"resized": images}


@registry.task("demo.flaky", queue=QUEUE, max_attempts=3, retry_delay=0.5)
def flaky(ctx: TaskContext) -> Any:
    """Fails on its first attempt and succeeds on the retry."""
    ctx.progress(Progress(percent=0.5, status=f"attempt {ctx.task.attempts}"))
    time.sleep(0.4)
    if ctx.task.attempts == 1:
        raise ConnectionError("upstream timed out (this first failure is on purpose)")
    return {"attempts": ctx.task.attempts}


@registry.task("demo.long", queue=QUEUE)
def long_running(ctx: TaskContext) -> Any:
    """Runs until cancelled (the demo cancels it)."""
    i = 0
    while True:
        i += 1
        ctx.progress(Progress(percent=min(0.99, i * 0.03), status="working until cancelled"))
        time.sleep(0.2)


@registry.task("demo.tick", queue=QUEUE)
def tick(ctx: TaskContext) -> Any:
    """What the demo's cron schedule enqueues."""
    ctx.progress(Progress(percent=1.0, done=True, status="tick from the scheduler"))
    return {"tick": ctx.task.run_at.isoformat(), "lucky": random.randint(1, 6)}  # noqa: S311
