"""Tasks: get, list, cancel, wait, watch, delete, retry, purge, result."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import wait_for

import taskq
import taskq.tasks

R = taskq.TaskEnqueueRequest
UNKNOWN = "6f1f8a43-0000-4000-8000-00000000abcd"


def running(queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue: str, **kw: Any) -> taskq.Task:
    task = queuer.enqueue(R(queue, "t", **kw))
    claimed = dequeuer.dequeue(queue, timeout=0)
    assert claimed is not None and claimed.id == task.id
    return claimed


@pytest.fixture
def notify_only(tasks: taskq.Tasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the waiters' safety-net re-read far longer than any test waits, so a
    waiter that returns in time was woken by NOTIFY."""
    slow = dataclasses.replace(tasks.database.settings, poll_interval=300.0)
    monkeypatch.setattr(tasks.database, "settings", slow)


class Background:
    """Runs ``fn`` in a thread and keeps its result or exception."""

    def __init__(self, fn: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self.result = fn()
        except BaseException as e:  # reported by join()
            self.error = e

    def join(self, timeout: float = 20) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background call did not return in time"
        if self.error is not None:
            raise self.error
        return self.result


# ---- get ------------------------------------------------------------------------------


def test_get_returns_the_current_row(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t", {"a": 1}))
    assert tasks.get(task.id) == task
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None
    assert tasks.get(task.id).status is taskq.TaskStatus.RUNNING


@pytest.mark.parametrize("task_id", [UNKNOWN, "not-a-uuid", "", "'; DROP TABLE tasks; --"])
def test_get_unknown_or_malformed_id_raises_task_not_found(
    tasks: taskq.Tasks, task_id: str
) -> None:
    with pytest.raises(taskq.TaskNotFound) as e:
        tasks.get(task_id)
    assert task_id in str(e.value)
    assert isinstance(e.value, taskq.TaskqError)


# ---- list -----------------------------------------------------------------------------


def test_list_filters_and_orders_newest_first(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    other_queue = f"{queue_name}-other"
    first = queuer.enqueue(R(queue_name, "alpha", 1, user_id="u1", title="First"))
    batch = queuer.enqueue_many([R(queue_name, "beta", i, user_id="u2") for i in range(3)])
    last = queuer.enqueue(R(queue_name, "alpha", 5))
    queuer.enqueue(R(other_queue, "alpha", 6))
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None and claimed.id == first.id

    everything = [first.id, *(t.id for t in batch), last.id]
    assert [t.id for t in tasks.list(queue=queue_name)] == everything[::-1]
    assert [t.id for t in tasks.list(queue=queue_name, type="alpha")] == [last.id, first.id]
    assert [t.id for t in tasks.list(queue=queue_name, status="running")] == [first.id]
    assert [t.id for t in tasks.list(queue=queue_name, status=taskq.TaskStatus.WAITING)] == [
        t for t in everything[::-1] if t != first.id
    ]
    both = tasks.list(queue=queue_name, status=["running", taskq.TaskStatus.WAITING])
    assert len(both) == 5
    assert [t.id for t in tasks.list(queue=queue_name, user_id="u2")] == [
        t.id for t in reversed(batch)
    ]
    assert [t.id for t in tasks.list(queue=queue_name, title="First")] == [first.id]
    assert [t.id for t in tasks.list(queue=queue_name, limit=2)] == [last.id, batch[2].id]
    assert tasks.list(queue=queue_name, type="nope") == []
    assert all(t.queue == other_queue for t in tasks.list(queue=other_queue))


def test_list_pages_with_created_before(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    made = [queuer.enqueue(R(queue_name, "t", i)) for i in range(4)]
    page = tasks.list(queue=queue_name, limit=2)
    assert [t.id for t in page] == [made[3].id, made[2].id]
    rest = tasks.list(queue=queue_name, limit=10, created_before=page[-1].created_at)
    assert [t.id for t in rest] == [made[1].id, made[0].id]


def test_list_without_filters_spans_queues(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    a = queuer.enqueue(R(f"{queue_name}-a", "t"))
    b = queuer.enqueue(R(f"{queue_name}-b", "t"))
    assert [t.id for t in tasks.list(limit=2)] == [b.id, a.id]


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": -1}, {"status": "sleeping"}])
def test_list_refuses_bad_arguments(tasks: taskq.Tasks, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tasks.list(**kwargs)


# ---- cancel ---------------------------------------------------------------------------


def test_cancel_waiting_task_at_once(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    cancelled = tasks.cancel(task.id)
    assert cancelled.status is taskq.TaskStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert tasks.get(task.id) == cancelled
    assert dequeuer.dequeue(queue_name, timeout=0) is None


def test_cancel_running_task_is_seen_at_the_workers_next_heartbeat(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name, max_attempts=3)
    dequeuer.heartbeat(claimed, "working")
    cancelled = tasks.cancel(claimed.id)
    assert cancelled.status is taskq.TaskStatus.CANCELLED
    with pytest.raises(taskq.TaskCancelled) as e:
        dequeuer.heartbeat(claimed, "still working")
    assert claimed.id in str(e.value)
    # not retried, never claimed again
    assert tasks.get(claimed.id).status is taskq.TaskStatus.CANCELLED
    assert dequeuer.dequeue(queue_name, timeout=0) is None


def test_cancel_a_cancelled_task_returns_it_unchanged(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    first = tasks.cancel(task.id)
    assert tasks.cancel(task.id) == first
    assert tasks.get(task.id) == first


@pytest.mark.parametrize("ending", ["finish", "fail"])
def test_cancel_an_ended_task_raises_task_finished(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
    ending: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    getattr(dequeuer, ending)(claimed)
    ended = tasks.get(claimed.id)
    with pytest.raises(taskq.TaskFinished) as e:
        tasks.cancel(claimed.id)
    assert claimed.id in str(e.value)
    assert tasks.get(claimed.id) == ended


@pytest.mark.parametrize("task_id", [UNKNOWN, "garbage"])
def test_cancel_unknown_task_raises_task_not_found(tasks: taskq.Tasks, task_id: str) -> None:
    with pytest.raises(taskq.TaskNotFound):
        tasks.cancel(task_id)


# ---- wait and watch -------------------------------------------------------------------


def test_wait_returns_when_another_thread_finishes_the_task(
    notify_only: None,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    waiter = Background(lambda: tasks.wait(claimed.id, timeout=60))
    dequeuer.finish(claimed, None, {"answer": 42})
    done = waiter.join(20)  # liveness: the re-read safety net is 300 s away
    assert done.status is taskq.TaskStatus.FINISHED
    assert done.result == {"answer": 42}


def test_wait_returns_on_failure_and_on_cancel(
    notify_only: None,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    waiter = Background(lambda: tasks.wait(claimed.id, timeout=60))
    dequeuer.fail(claimed, None, "nope")
    assert waiter.join(20).status is taskq.TaskStatus.FAILED

    waiting = queuer.enqueue(R(queue_name, "t"))
    waiter = Background(lambda: tasks.wait(waiting.id, timeout=60))
    tasks.cancel(waiting.id)
    assert waiter.join(20).status is taskq.TaskStatus.CANCELLED


def test_wait_on_an_ended_task_returns_at_once(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.finish(claimed, None, "r")
    assert tasks.wait(claimed.id, timeout=0).result == "r"


def test_wait_raises_timeout_error(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    with pytest.raises(TimeoutError) as e:
        tasks.wait(task.id, timeout=0.2)
    assert task.id in str(e.value)


def test_wait_unknown_task_raises_task_not_found(tasks: taskq.Tasks) -> None:
    with pytest.raises(taskq.TaskNotFound):
        tasks.wait(UNKNOWN, timeout=1)


def test_watch_yields_each_progress_change_and_ends_final(
    notify_only: None,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    seen: list[taskq.Task] = []

    def collect() -> None:
        for snapshot in tasks.watch(task.id, timeout=60):
            seen.append(snapshot)

    watcher = Background(collect)
    wait_for(lambda: seen, what="the first snapshot")
    assert seen[0].status is taskq.TaskStatus.WAITING
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None
    for step in (1, 2, 3):
        dequeuer.heartbeat(claimed, {"step": step})
        # in lock step, so each change is seen before the next is made
        wait_for(lambda s=step: any(t.progress == {"step": s} for t in seen), what=f"step {step}")
    dequeuer.finish(claimed, {"step": 4}, "done")
    watcher.join(20)
    progress = [t.progress for t in seen if t.progress is not None]
    assert progress[:3] == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert seen[-1].status is taskq.TaskStatus.FINISHED
    assert seen[-1].result == "done" and seen[-1].progress == {"step": 4}
    assert all(not t.status.is_final for t in seen[:-1])


def test_watch_does_not_yield_heartbeats_that_change_nothing(
    notify_only: None,
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    seen: list[taskq.Task] = []
    watcher = Background(lambda: seen.extend(tasks.watch(task.id, timeout=60)))
    wait_for(lambda: seen, what="the first snapshot")
    claimed = dequeuer.dequeue(queue_name, timeout=0)
    assert claimed is not None
    # a claim notifies no watcher (it is the hot path); its first heartbeat does
    for _ in range(3):
        dequeuer.heartbeat(claimed)  # after the first, nothing a watcher sees changes
    wait_for(lambda: len(seen) == 2, what="the running snapshot")
    dequeuer.heartbeat(claimed, "half")
    wait_for(lambda: len(seen) == 3, what="the progress snapshot")
    dequeuer.finish(claimed, "all", None)
    watcher.join(20)
    assert [(t.status.value, t.progress) for t in seen] == [
        ("waiting", None),
        ("running", None),
        ("running", "half"),
        ("finished", "all"),
    ]


def test_watch_raises_timeout_error(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    snapshots: Iterator[taskq.Task] = tasks.watch(task.id, timeout=0.2)
    assert next(snapshots).id == task.id
    with pytest.raises(TimeoutError):
        next(snapshots)


# ---- delete, retry, purge, result ------------------------------------------------------


def test_delete_removes_the_task(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    waiting = queuer.enqueue(R(queue_name, "t"))
    tasks.delete(waiting.id)
    with pytest.raises(taskq.TaskNotFound):
        tasks.get(waiting.id)
    with pytest.raises(taskq.TaskNotFound):
        tasks.delete(waiting.id)
    claimed = running(queuer, dequeuer, queue_name)
    tasks.delete(claimed.id)  # whatever its status
    with pytest.raises(taskq.TaskNotFound):
        dequeuer.heartbeat(claimed)


def test_retry_puts_a_failed_task_back_with_attempts_reset(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(claimed, None, "broken")
    retried = tasks.retry(claimed.id)
    assert retried.status is taskq.TaskStatus.WAITING
    assert retried.attempts == 0 and retried.error is None and retried.finished_at is None
    again = dequeuer.dequeue(queue_name, timeout=0)
    assert again is not None and again.id == claimed.id and again.attempts == 1


def test_retry_puts_a_cancelled_task_back(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    tasks.cancel(task.id)
    assert tasks.retry(task.id).status is taskq.TaskStatus.WAITING


@pytest.mark.parametrize("state", ["waiting", "running", "finished"])
def test_retry_refuses_tasks_that_did_not_fail(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    queue_name: str,
    state: str,
) -> None:
    task = queuer.enqueue(R(queue_name, "t"))
    if state != "waiting":
        claimed = dequeuer.dequeue(queue_name, timeout=0)
        assert claimed is not None
        if state == "finished":
            dequeuer.finish(claimed)
    before = tasks.get(task.id)
    with pytest.raises(taskq.TaskqError) as e:
        tasks.retry(task.id)
    assert task.id in str(e.value)
    assert tasks.get(task.id) == before
    with pytest.raises(taskq.TaskNotFound):
        tasks.retry(UNKNOWN)


def test_purge_deletes_only_ended_tasks_older_than_given(
    queuer: taskq.Queuer,
    dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
    schema: str,
    queue_name: str,
) -> None:
    finished = running(queuer, dequeuer, queue_name)
    dequeuer.finish(finished)
    failed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(failed)
    cancelled = queuer.enqueue(R(queue_name, "t"))
    tasks.cancel(cancelled.id)
    still_running = running(queuer, dequeuer, queue_name)
    waiting = queuer.enqueue(R(queue_name, "t"))
    elsewhere = running(queuer, dequeuer, f"{queue_name}-elsewhere")
    dequeuer.finish(elsewhere)

    assert tasks.purge(dt.timedelta(hours=1), queue=queue_name) == 0
    assert tasks.purge(dt.timedelta(0), queue=queue_name, batch=2) == 3
    left = {t.id for t in tasks.list(queue=queue_name)}
    assert left == {still_running.id, waiting.id}
    assert tasks.get(elsewhere.id).status is taskq.TaskStatus.FINISHED
    with pytest.raises(ValueError):
        tasks.purge(dt.timedelta(seconds=-1))


def test_result_of_a_finished_task(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    claimed = running(queuer, dequeuer, queue_name)
    with pytest.raises(taskq.TaskqError) as e:
        tasks.result(claimed.id)
    assert claimed.id in str(e.value) and "running" in str(e.value)
    dequeuer.finish(claimed, None, [1, {"two": 2}])
    assert tasks.result(claimed.id) == [1, {"two": 2}]


def test_result_raises_while_not_finished(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    waiting = queuer.enqueue(R(f"{queue_name}-idle", "t"))
    with pytest.raises(taskq.TaskqError, match="waiting"):
        tasks.result(waiting.id)
    claimed = running(queuer, dequeuer, queue_name)
    dequeuer.fail(claimed, None, "it broke")
    with pytest.raises(taskq.TaskqError, match="it broke"):
        tasks.result(claimed.id)
    with pytest.raises(taskq.TaskNotFound):
        tasks.result(UNKNOWN)
