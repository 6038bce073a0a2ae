"""`taskq demo` runs to completion: worker, scheduler, retries, cancellation, cron."""

from __future__ import annotations

from helpers import run_taskq

import taskq
from taskq import TaskStatus


def test_demo_runs_every_sample_to_its_end_and_exits_zero(
    database_url: str, schema: str, tasks: taskq.Tasks
) -> None:
    r = run_taskq(database_url, schema, "demo", "--timeout", "90", timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "All sample tasks are done" in r.stdout
    assert "Traceback" not in r.stderr
    by_type: dict[str, list[taskq.Task]] = {}
    for t in tasks.list(queue="demo", limit=1000):
        by_type.setdefault(t.type, []).append(t)
    assert [t.status for t in by_type["demo.resize"]] == [TaskStatus.FINISHED] * 2
    (flaky,) = by_type["demo.flaky"]
    assert (flaky.status, flaky.attempts) == (TaskStatus.FINISHED, 2)
    assert by_type["demo.long"][0].status is TaskStatus.CANCELLED
    assert any(t.status is TaskStatus.FINISHED for t in by_type["demo.tick"])
    # The demo removes its schedule when it ends.
    assert "demo.tick" not in run_taskq(database_url, schema, "schedule", "list").stdout
