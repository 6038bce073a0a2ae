"""The registry ``taskq bench`` runs its workers with: two task types that do nothing.

    taskq worker taskq.tools.bench_app:registry --queue bench --concurrency 10

``bench.noop`` returns at once (burn-down). ``bench.stamp`` returns the wall-clock time
its handler started, ``{"started": <epoch seconds>}``, so the steady-rate mode can
measure enqueue-to-handler latency on the handler's side too (see taskq/bench.py).
"""

from __future__ import annotations

import time

from taskq.registry import Registry, TaskContext

NOOP = "bench.noop"
STAMP = "bench.stamp"

registry = Registry()


@registry.task(NOOP)
def noop(ctx: TaskContext) -> None:
    return None


@registry.task(STAMP)
def stamp(ctx: TaskContext) -> dict[str, float]:
    return {"started": time.time()}
