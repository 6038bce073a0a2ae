"""Progress has one meaning: ``percent`` is the fraction done, 0.0 to 1.0. A value
outside that range (or NaN, infinity, a negative step, a step past steps) is refused
where progress enters, with nothing written; it is never clamped. A finished task
reads as done, whatever progress it reported last."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest

import taskq
from taskq.cli.output import progress_text
from taskq.core.types import checked_progress
from taskq.registry import TaskContext
from taskq.testing import drain

R = taskq.TaskEnqueueRequest


def running(queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue: str) -> taskq.Task:
    queuer.enqueue(R(queue, "t"))
    claimed = dequeuer.dequeue(queue, timeout=0)
    assert claimed is not None
    return claimed


# ---- the value ---------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [50, 1.01, -0.1, math.nan, math.inf, -math.inf])
def test_a_percent_outside_zero_to_one_is_refused_not_clamped(percent: float) -> None:
    with pytest.raises(taskq.InvalidProgress, match=r"from 0\.0 to 1\.0") as e:
        taskq.Progress(percent=percent)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"percent": True}, "must be a number"), ({"step": -1, "steps": 4}, "at least 0"),
     ({"step": 5, "steps": 4}, "past steps"), ({"steps": -2}, "at least 0")],
)  # fmt: skip
def test_steps_that_make_no_sense_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(taskq.InvalidProgress, match=words):
        taskq.Progress(**fields)


def test_the_ends_of_the_range_are_fractions() -> None:
    assert taskq.Progress(percent=0).fraction() == 0.0
    assert taskq.Progress(percent=1).fraction() == 1.0
    assert taskq.Progress(step=4, steps=4).fraction() == 1.0


def test_progress_stored_before_the_rules_is_not_read_as_a_progress() -> None:
    # {"percent": 50} once read as 100 %; now it is shown as the JSON it is
    assert taskq.Progress.from_json({"percent": 50}) is None
    assert taskq.Progress.from_json({"percent": 0.5}) == taskq.Progress(percent=0.5)


def test_a_dict_is_held_to_the_rules_only_where_it_uses_progress_fields() -> None:
    assert checked_progress({"percent": 0.5, "eta": 3}) == {"percent": 0.5, "eta": 3}
    assert checked_progress({"percent": "half"}) == {"percent": "half"}  # not a Progress
    assert checked_progress([50]) == [50]
    assert checked_progress(taskq.Progress(step=1, steps=2)) == {"step": 1, "steps": 2,
                                                                  "done": False}  # fmt: skip
    with pytest.raises(taskq.InvalidProgress, match="progress of x: percent"):
        checked_progress({"percent": 50}, "progress of x")


# ---- where progress enters ---------------------------------------------------------------


def test_heartbeat_refuses_a_percent_outside_the_range_and_writes_nothing(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, {"percent": 0.25})
    before = tasks.get(claimed.id)
    with pytest.raises(taskq.InvalidProgress, match=f"progress of task {claimed.id}: percent"):
        dequeuer.heartbeat(claimed, {"percent": 50, "status": "halfway"})
    after = tasks.get(claimed.id)
    assert after.progress == {"percent": 0.25}
    assert after.last_heartbeat_at == before.last_heartbeat_at


def test_heartbeat_takes_a_progress_value(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, taskq.Progress(step=1, steps=4, status="one"))
    got = tasks.get(claimed.id)
    assert taskq.Progress.from_json(got.progress) == taskq.Progress(step=1, steps=4, status="one")
    assert got.fraction() == 0.25


def test_finish_refuses_a_percent_outside_the_range_and_the_task_keeps_running(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    with pytest.raises(taskq.InvalidProgress):
        dequeuer.finish(claimed, {"percent": 100}, result="done")
    assert tasks.get(claimed.id).status is taskq.TaskStatus.RUNNING


def test_a_handler_reporting_percent_50_is_told_so_and_nothing_is_written() -> None:
    seen: list[Any] = []
    task: Any = type("T", (), {"id": "t-1"})()
    ctx = TaskContext(task, lambda t, v: seen.append(v))
    with pytest.raises(taskq.InvalidProgress, match="progress of task t-1: percent"):
        ctx.progress({"percent": 50})
    with pytest.raises(taskq.InvalidProgress):
        asyncio.run(ctx.aprogress({"percent": -1}))
    ctx.progress(taskq.Progress(percent=0.5))
    asyncio.run(ctx.aprogress({"percent": 0.75}))
    assert seen == [{"percent": 0.5, "done": False}, {"percent": 0.75}]


# ---- a finished task is done -------------------------------------------------------------


def test_a_finished_task_reads_as_done_whatever_it_reported_last(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    waiting = queuer.enqueue(R(queue_name, "t"))
    assert tasks.get(waiting.id).fraction() is None
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.heartbeat(claimed, taskq.Progress(percent=0.4))
    assert tasks.get(claimed.id).fraction() == 0.4
    assert "40%" in progress_text(tasks.get(claimed.id))
    dequeuer.finish(claimed, None, result=1)
    done = tasks.get(claimed.id)
    assert done.status is taskq.TaskStatus.FINISHED
    assert done.progress == {"percent": 0.4, "done": False}  # what it said is kept
    assert done.fraction() == 1.0
    assert "100%" in progress_text(done)


def test_a_failed_task_keeps_the_fraction_it_reached(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(claimed, {"percent": 0.3}, error="boom")
    failed = tasks.get(claimed.id)
    assert failed.status is taskq.TaskStatus.FAILED and failed.fraction() == 0.3


@pytest.mark.faces("sync")
def test_a_worker_run_handler_with_a_bad_percent_fails_and_a_good_one_reads_done(
    database_url: str, schema: str
) -> None:
    registry = taskq.Registry()
    q = f"q-{uuid.uuid4().hex[:8]}"

    @registry.task("p.bad", queue=q)
    def bad(ctx: taskq.TaskContext) -> None:
        ctx.progress({"percent": 50})

    @registry.task("p.good", queue=q)
    def good(ctx: taskq.TaskContext) -> str:
        ctx.progress(taskq.Progress(percent=0.5, status="half"))
        return "ok"

    with taskq.Queuer(database_url, schema=schema) as queuer:
        b = queuer.enqueue(R(q, "p.bad"))
        g = queuer.enqueue(R(q, "p.good"))
    drain(registry, database_url, [q], schema=schema)
    with taskq.Tasks(database_url, schema=schema) as tasks:
        failed, finished = tasks.get(b.id), tasks.get(g.id)
    assert failed.status is taskq.TaskStatus.FAILED
    assert failed.error is not None and "from 0.0 to 1.0" in failed.error
    assert failed.progress is None
    assert finished.status is taskq.TaskStatus.FINISHED and finished.fraction() == 1.0
