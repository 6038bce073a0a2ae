"""`taskq demo` runs to completion: worker, scheduler, retries, cancellation, cron."""

from __future__ import annotations

import pytest
from helpers import run_taskq

import taskq
from taskq import TaskStatus

# The subject is `taskq demo`; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")


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


@pytest.mark.skipif(
    bool(__import__("os").environ.get("TASKQ_TEST_DATABASE_URL")),
    reason="needs the embedded PostgreSQL as the default (the embedded leg runs it)",
)
def test_on_the_embedded_server_the_demo_ends_saying_it_still_runs_and_how_to_stop_it(
    schema: str,
) -> None:
    import subprocess

    from helpers import taskq_cmd, taskq_env

    env = taskq_env("", schema)
    del env["TASKQ_DATABASE_URL"]  # the default: the embedded server the suite started
    r = subprocess.run(taskq_cmd("demo", "--timeout", "90", "--no-serve"), env=env,
                       capture_output=True, text=True, timeout=150)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-2:]
    assert "still running" in last[0] and "taskq embedded stop" in last[1], last
