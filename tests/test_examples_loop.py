"""examples/custom_loop.py: a loop of its own on the Dequeuer alone, run as a process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from examples_support import EXAMPLES, Proc, clean_env, python
from helpers import wait_for

import taskq
from taskq import TaskEnqueueRequest as R
from taskq import TaskStatus

TIMEOUT = 60.0


@pytest.fixture
def env(database_url: str, fresh_schema: str) -> dict[str, str]:
    return clean_env(TASKQ_DATABASE_URL=database_url, TASKQ_SCHEMA=fresh_schema)


def test_the_loop_finishes_fails_and_exits_when_idle(
    env: dict[str, str], database_url: str
) -> None:
    schema = env["TASKQ_SCHEMA"]
    with taskq.Queuer(database_url, schema=schema) as q:
        good = q.enqueue(R("images", "image.thumbnail",
                           spec={"width": 4000, "height": 3000, "max": 400}))  # fmt: skip
        small = q.enqueue(R("images", "image.thumbnail",
                            spec={"width": 100, "height": 50, "max": 400}))  # fmt: skip
        bad = q.enqueue(R("images", "image.thumbnail",
                          spec={"width": 0, "height": 50, "max": 400}, max_attempts=3))  # fmt: skip
        other = q.enqueue(R("images", "video.transcode"))
        elsewhere = q.enqueue(R("videos", "image.thumbnail", spec={}))
    out = subprocess.run(
        python("custom_loop.py", "--queue", "images", "--exit-when-idle", "1"),
        cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[-1] == {"handled": 4}
    with taskq.Tasks(database_url, schema=schema) as tasks:
        g = tasks.get(good.id)
        assert (g.status, g.result) == (TaskStatus.FINISHED, {"width": 400, "height": 300})
        assert taskq.Progress.from_json(g.progress) == taskq.Progress(step=3, steps=3)
        assert tasks.get(small.id).result == {"width": 100, "height": 50}
        b = tasks.get(bad.id)
        assert (b.status, b.attempts) == (TaskStatus.FAILED, 1)  # TaskFailed: no retry
        assert b.error == "bad size 0x50 (max 400)"
        assert "does not handle 'video.transcode'" in (tasks.get(other.id).error or "")
        assert tasks.get(elsewhere.id).status == TaskStatus.WAITING  # not its queue


def test_the_loop_stops_on_sigterm_with_status_0(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    loop = Proc(python("custom_loop.py", "--queue", "images"), cwd=EXAMPLES, env=env,
                log=tmp_path / "loop.log")  # fmt: skip
    try:
        with taskq.Queuer(database_url, schema=env["TASKQ_SCHEMA"]) as q:
            task = q.enqueue(R("images", "image.thumbnail",
                               spec={"width": 10, "height": 10, "max": 5}))  # fmt: skip
        with taskq.Tasks(database_url, schema=env["TASKQ_SCHEMA"]) as tasks:
            assert tasks.wait(task.id, timeout=TIMEOUT).result == {"width": 5, "height": 5}
        wait_for(lambda: task.id in loop.output(), timeout=TIMEOUT)
    finally:
        code = loop.stop()
    assert code == 0, loop.output()
    assert json.loads(loop.output().splitlines()[-1]) == {"handled": 1}
