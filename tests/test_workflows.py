"""Results, chains, groups and follow-ups (issue 5), run by real `taskq worker`s.

Most tests share one worker process that serves the queue ``wf`` and find their tasks
by id or title. Tasks that must never be claimed by a worker go to a queue of their
own that nobody serves; the group race has three workers of its own.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import run_taskq, taskq_cmd, taskq_env, wait_for

import taskq
from taskq import TaskEnqueueRequest, TaskStatus

WF = "wf"
"""The queue the module's worker serves."""

TIMEOUT = 60.0
"""Generous: the machine is small and shared."""


# ---- fixtures ----------------------------------------------------------------------


def start_worker(
    url: str, schema: str, queue: str, concurrency: int, *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        taskq_cmd("worker", "taskq_test_app:registry", "--queue", queue,
                  "--concurrency", str(concurrency), "--poll-interval", "0.5",
                  "--rescue-interval", "0.5", *args),
        env=taskq_env(url, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


@pytest.fixture(scope="module")
def worker(database_url: str, schema: str) -> Iterator[subprocess.Popen[str]]:
    p = start_worker(database_url, schema, WF, 4)
    yield p
    stop_workers([p])


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return Gates(tmp_path)


class Gates:
    """Files that ``gated`` handlers wait for: a test opens one to let them return."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def new(self) -> str:
        return str(self.folder / f"gate-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def open(gate: str) -> None:
        Path(gate).touch()


def gated(value: Any = None, gate: str | None = None, **kw: Any) -> TaskEnqueueRequest:
    return TaskEnqueueRequest(queue=kw.pop("queue", WF), type="gated",
                              spec={"gate": gate, "value": value}, **kw)  # fmt: skip


def unserved() -> str:
    """A queue no worker serves."""
    return f"idle-{uuid.uuid4().hex[:8]}"


def status_of(tasks: taskq.Tasks, task_id: str) -> TaskStatus:
    return tasks.get(task_id).status


# ---- results -----------------------------------------------------------------------


def test_result_of_a_finished_task(worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks) -> None:
    t = queuer.enqueue(queue=WF, type="echo", spec={"x": [1, 2.5, "three"]})
    assert tasks.wait(t.id, timeout=TIMEOUT).status is TaskStatus.FINISHED
    expected = {"spec": {"x": [1, 2.5, "three"]}, "attempt": 1, "current": t.id}
    assert tasks.result(t.id) == expected
    assert tasks.get(t.id).result == expected


def test_result_of_an_unknown_task_is_task_not_found(tasks: taskq.Tasks) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(taskq.TaskNotFound) as e:
        tasks.result(missing)
    assert missing in str(e.value)
    with pytest.raises(taskq.TaskNotFound):
        tasks.result("not-a-task-id")


def test_result_before_the_end_is_a_clear_error(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    idle = queuer.enqueue(queue=unserved(), type="noop")
    with pytest.raises(taskq.TaskqError, match=f"task {idle.id} .*waiting") as e:
        tasks.result(idle.id)
    assert not isinstance(e.value, taskq.TaskNotFound)

    gate = gates.new()
    t = queuer.enqueue(gated("late", gate))
    wait_for(lambda: status_of(tasks, t.id) is TaskStatus.RUNNING, TIMEOUT, what="running")
    with pytest.raises(taskq.TaskqError, match=f"task {t.id} .*running"):
        tasks.result(t.id)
    gates.open(gate)
    tasks.wait(t.id, timeout=TIMEOUT)
    assert tasks.result(t.id) == {"previous": None, "value": "late"}

    bad = queuer.enqueue(queue=WF, type="boom")
    assert tasks.wait(bad.id, timeout=TIMEOUT).status is TaskStatus.FAILED
    with pytest.raises(taskq.TaskqError, match=f"task {bad.id} .*failed.*boom"):
        tasks.result(bad.id)


# ---- chains ------------------------------------------------------------------------


def test_chain_passes_results_along(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    g = [gates.new() for _ in range(3)]
    chain = queuer.enqueue_chain([gated("a", g[0]), gated("b", g[1]), gated("c", g[2])])
    ids = chain.task_ids
    assert len(ids) == 3 and len(set(ids)) == 3

    def at(link: int) -> taskq.Workflow | None:
        c = tasks.get_chain(chain.id)
        return c if c.tasks[link].status is TaskStatus.RUNNING else None

    for link in range(3):
        c = wait_for(lambda link=link: at(link), TIMEOUT, what=f"link {link} running")
        assert c.id == chain.id
        assert c.task_ids == ids
        assert c.status is TaskStatus.RUNNING
        assert c.current is not None and c.current.id == ids[link]
        assert [t.id for t in c.finished] == list(ids[:link])
        # the links after the current one wait, and no worker takes them early
        assert [t.status for t in c.tasks[link + 1 :]] == [TaskStatus.WAITING] * (2 - link)
        assert all(t.attempts == 0 for t in c.tasks[link + 1 :])
        gates.open(g[link])

    last = tasks.wait(ids[2], timeout=TIMEOUT)
    c = tasks.get_chain(chain.id)
    assert c.status is TaskStatus.FINISHED
    assert c.current is None
    assert [t.id for t in c.finished] == list(ids)
    first = {"previous": None, "value": "a"}  # the first link is handed None
    second = {"previous": first, "value": "b"}
    assert tasks.result(ids[0]) == first
    assert tasks.result(ids[1]) == second
    assert last.result == {"previous": second, "value": "c"}
    assert tasks.get(ids[1]).previous_result == first


def test_chain_whose_middle_link_fails_for_good_cancels_the_rest(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    chain = queuer.enqueue_chain([
        gated("first"),
        TaskEnqueueRequest(queue=WF, type="boom", max_attempts=2, retry_delay=0.05),
        gated("third"),
        gated("fourth"),
    ])  # fmt: skip
    ids = chain.task_ids
    c = wait_for(
        lambda: (c := tasks.get_chain(chain.id)).status is TaskStatus.FAILED and c,
        TIMEOUT, what="chain failed",
    )  # fmt: skip
    assert [t.status for t in c.tasks] == [
        TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.CANCELLED,
    ]  # fmt: skip
    assert c.current is None
    assert [t.id for t in c.finished] == [ids[0]]
    middle = c.tasks[1]
    assert (middle.error, middle.attempts) == ("boom", 2)  # retried first, then for good
    for rest in c.tasks[2:]:
        assert rest.attempts == 0 and rest.started_at is None
        assert rest.error is not None and ids[1] in rest.error
        with pytest.raises(taskq.TaskqError, match="cancelled"):
            tasks.result(rest.id)


def test_unknown_chain_and_group(tasks: taskq.Tasks) -> None:
    with pytest.raises(taskq.TaskqError, match="not found"):
        tasks.get_chain(str(uuid.uuid4()))
    with pytest.raises(taskq.TaskqError, match="not found"):
        tasks.get_group("nope")


# ---- groups ------------------------------------------------------------------------


def test_group_follow_up_runs_once_with_workers_racing(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    race = f"race-{uuid.uuid4().hex[:8]}"
    gate = gates.new()
    members = [gated(i, gate, queue=race) for i in range(20)]
    done = gated("after", queue=race, title="group-done")
    group = queuer.enqueue_group(members, on_complete=done)
    assert len(group.task_ids) == 20
    # each worker claims only what its 4 slots run
    procs = [start_worker(database_url, schema, race, 4) for _ in range(3)]
    try:
        # Every slot of the three workers holds a member at the gate; then all of them
        # finish at once, and the last eight right after.
        wait_for(lambda: len(tasks.list(queue=race, status="running")) == 12, TIMEOUT,
                 what="12 members running")  # fmt: skip
        g = tasks.get_group(group.id)
        assert g.status is TaskStatus.RUNNING
        assert g.task_ids == group.task_ids
        assert sorted(t.status.value for t in g.tasks) == ["running"] * 12 + ["waiting"] * 8
        assert tasks.list(queue=race, title="group-done") == []
        gates.open(gate)
        follow = wait_for(lambda: tasks.list(queue=race, title="group-done"), TIMEOUT,
                          what="the follow-up")  # fmt: skip
        ended = tasks.wait(follow[0].id, timeout=TIMEOUT)
    finally:
        stop_workers(procs)
    g = tasks.get_group(group.id)
    assert g.status is TaskStatus.FINISHED
    assert all(t.status is TaskStatus.FINISHED for t in g.tasks)
    # Every member has ended and committed, so no other follow-up can come.
    assert len(tasks.list(queue=race, title="group-done")) == 1
    assert ended.status is TaskStatus.FINISHED
    assert ended.result["previous"] == [
        {"id": tid, "status": "finished", "result": {"previous": None, "value": i},
         "error": None}
        for i, tid in enumerate(group.task_ids)
    ]  # fmt: skip


def test_group_with_a_failed_member(worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks) -> None:
    title = f"after-{uuid.uuid4().hex[:8]}"
    group = queuer.enqueue_group(
        [gated(0), TaskEnqueueRequest(queue=WF, type="boom"), gated(2)],
        on_complete=gated("after", title=title),
    )
    follow = wait_for(lambda: tasks.list(queue=WF, title=title), TIMEOUT, what="follow-up")
    ended = tasks.wait(follow[0].id, timeout=TIMEOUT)
    g = tasks.get_group(group.id)
    assert g.status is TaskStatus.FAILED
    assert [t.status for t in g.tasks] == [
        TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.FINISHED
    ]  # fmt: skip
    outcomes = ended.result["previous"]
    assert [o["status"] for o in outcomes] == ["finished", "failed", "finished"]
    assert outcomes[1] == {"id": group.task_ids[1], "status": "failed", "result": None,
                           "error": "boom"}  # fmt: skip
    assert len(tasks.list(queue=WF, title=title)) == 1


def test_last_two_members_finished_at_once_enqueue_the_follow_up_once(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
) -> None:  # fmt: skip
    """Two transactions finish the last two members concurrently: the second waits
    for the first on the group's lock, then sees its commit."""
    q = unserved()
    group = queuer.enqueue_group(
        [TaskEnqueueRequest(queue=q, type="noop") for _ in range(2)],
        on_complete=TaskEnqueueRequest(queue=q, type="after"),
    )
    claimed = {t.id: t for t in (dequeuer.dequeue(q, timeout=5) for _ in range(2)) if t}
    assert sorted(claimed) == sorted(group.task_ids)
    first, second = (claimed[i] for i in group.task_ids)
    conn_a = psycopg.connect(database_url)
    conn_b = psycopg.connect(database_url)
    try:
        taskq.Dequeuer(conn_a, schema=schema).finish(first, result="a")
        errors: list[BaseException] = []

        def finish_b() -> None:
            try:
                taskq.Dequeuer(conn_b, schema=schema).finish(second, result="b")
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        # the server's own pid for conn_b's transaction (behind a transaction pooler,
        # conn_b.info.backend_pid is the pooler's, and the server connection is the
        # transaction's: this statement opens it)
        row = conn_b.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid_b = row[0]
        thread = threading.Thread(target=finish_b)
        thread.start()
        with psycopg.connect(database_url, autocommit=True) as look:
            wait_for(
                lambda: look.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                    (pid_b,),
                ).fetchone() == (True,),
                TIMEOUT, what="the second finisher to wait for the first",
            )  # fmt: skip
        assert tasks.list(queue=q, type="after") == []
        conn_a.commit()
        thread.join(TIMEOUT)
        assert not thread.is_alive() and not errors
        assert tasks.list(queue=q, type="after") == []  # not committed yet
        conn_b.commit()
    finally:
        conn_a.close()
        conn_b.close()
    follow = tasks.list(queue=q, type="after")
    assert len(follow) == 1
    assert [o["result"] for o in follow[0].previous_result] == ["a", "b"]
    assert tasks.get_group(group.id).status is TaskStatus.FINISHED


# ---- follow-up on success ----------------------------------------------------------


def test_on_success_follow_up_is_enqueued_when_the_task_finishes(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    title = f"next-{uuid.uuid4().hex[:8]}"
    gate = gates.new()  # the first task cannot finish before the check below
    t = queuer.enqueue(gated("first", gate, on_success=gated("second", title=title)))
    wait_for(lambda: status_of(tasks, t.id) is TaskStatus.RUNNING, TIMEOUT, what="running")
    assert tasks.list(queue=WF, title=title) == []
    gates.open(gate)
    first = tasks.wait(t.id, timeout=TIMEOUT)
    assert first.status is TaskStatus.FINISHED
    follow = tasks.list(queue=WF, title=title)  # enqueued with the finish, not after it
    assert len(follow) == 1
    ended = tasks.wait(follow[0].id, timeout=TIMEOUT)
    # The follow-up is handed the result of the task it follows.
    assert ended.result == {"previous": first.result, "value": "second"}


def test_on_success_follow_up_is_not_enqueued_when_the_task_fails(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    title = f"never-{uuid.uuid4().hex[:8]}"
    t = queuer.enqueue(TaskEnqueueRequest(queue=WF, type="boom", max_attempts=2,
                                          retry_delay=0.05,
                                          on_success=gated("no", title=title)))  # fmt: skip
    failed = tasks.wait(t.id, timeout=TIMEOUT)
    assert (failed.status, failed.attempts) == (TaskStatus.FAILED, 2)
    assert tasks.list(title=title) == []


def test_on_success_follow_up_commits_with_the_finish_and_only_once(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
) -> None:  # fmt: skip
    q = unserved()
    t = queuer.enqueue(TaskEnqueueRequest(queue=q, type="noop",
                                          on_success=TaskEnqueueRequest(queue=q, type="next")))  # fmt: skip
    claimed = dequeuer.dequeue(q, timeout=5)
    assert claimed is not None and claimed.id == t.id
    with psycopg.connect(database_url) as conn:  # the caller's transaction
        taskq.Dequeuer(conn, schema=schema).finish(claimed, result=1)
        assert tasks.list(queue=q, type="next") == []  # not committed yet
        conn.rollback()
        # a finish that did not commit left neither a finished task nor a follow-up
        assert status_of(tasks, t.id) is TaskStatus.RUNNING
        assert tasks.list(queue=q, type="next") == []
        taskq.Dequeuer(conn, schema=schema).finish(claimed, result=2)  # retried
        conn.commit()
    follow = tasks.list(queue=q, type="next")
    assert len(follow) == 1 and follow[0].previous_result == 2
    with pytest.raises(taskq.TaskFinished):
        dequeuer.finish(claimed, result=3)  # and again: refused, nothing doubled
    with pytest.raises(taskq.TaskFinished):
        dequeuer.finish(t.id, result=3)
    assert len(tasks.list(queue=q, type="next")) == 1
    assert tasks.result(t.id) == 2


def test_follow_ups_keep_the_registry_defaults(
    make: Any, database_url: str, schema: str, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks
) -> None:
    """A follow-up is enqueued later, by whoever ends the task (no registry there):
    it is stored with its type's defaults, like any request the Queuer takes."""
    q, routed = unserved(), unserved()
    reg = taskq.Registry()

    @reg.task("routed", queue=routed, max_attempts=4)
    def _routed(ctx: taskq.TaskContext) -> None:
        return None

    later = TaskEnqueueRequest(queue="", type="routed")  # the type's queue applies
    with make.Queuer(database_url, schema=schema, registry=reg) as app_queuer:
        app_queuer.enqueue(TaskEnqueueRequest(queue=q, type="noop", on_success=later))
        group = app_queuer.enqueue_group([TaskEnqueueRequest(queue=q, type="noop")],
                                         on_complete=later)  # fmt: skip
    for _ in range(2):
        claimed = dequeuer.dequeue(q, timeout=5)
        assert claimed is not None
        dequeuer.finish(claimed)
    follow = tasks.list(queue=routed, type="routed")
    assert len(follow) == 2
    assert all(t.max_attempts == 4 for t in follow)
    assert tasks.get_group(group.id).status is TaskStatus.FINISHED


# ---- watching ----------------------------------------------------------------------


def steps_after_gate(queuer: taskq.Queuer, gate: str, steps: int, pause: float) -> str:
    """A "steps" task that becomes runnable only once ``gate`` opens (the second link
    of a chain), so a watcher can start before its first step."""
    chain = queuer.enqueue_chain([
        gated("go", gate),
        TaskEnqueueRequest(queue=WF, type="steps", spec={"steps": steps, "pause": pause}),
    ])  # fmt: skip
    return chain.task_ids[1]


def step_numbers(snapshots: list[taskq.Task]) -> list[int]:
    """The progress steps seen, each once, in the order seen."""
    out: list[int] = []
    for s in snapshots:
        p = taskq.Progress.from_json(s.progress)
        if p is not None and p.step is not None and (not out or out[-1] != p.step):
            out.append(p.step)
    return out


def test_watch_sees_every_progress_step_in_order(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    gate = gates.new()
    task_id = steps_after_gate(queuer, gate, steps=5, pause=0.2)
    watch = tasks.watch(task_id, timeout=TIMEOUT)
    first = next(watch)
    assert (first.id, first.status, first.progress) == (task_id, TaskStatus.WAITING, None)
    gates.open(gate)
    snapshots = [first, *watch]
    assert step_numbers(snapshots) == [1, 2, 3, 4, 5]
    for s in snapshots:
        if s.progress is not None:
            p = taskq.Progress.from_json(s.progress)
            assert p == taskq.Progress(step=p.step, steps=5, status=f"step {p.step}")
    last = snapshots[-1]
    assert (last.status, last.result) == (TaskStatus.FINISHED, 5)
    assert all(not s.status.is_final for s in snapshots[:-1])
    # one snapshot per change: never the same state twice in a row
    states = [(s.status, s.attempts, s.progress) for s in snapshots]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))


def test_watch_yields_changes_not_heartbeats(
    worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    # heartbeat_timeout 0.4 s: the worker heartbeats every 0.1 s while it sleeps
    t = queuer.enqueue(queue=WF, type="sleepy", spec=1.5, heartbeat_timeout=0.4)
    snapshots = list(tasks.watch(t.id, timeout=TIMEOUT))
    assert snapshots[-1].status is TaskStatus.FINISHED
    statuses = [s.status for s in snapshots]
    assert statuses.count(TaskStatus.RUNNING) <= 1, statuses
    assert len(snapshots) <= 3, statuses


def test_watch_survives_its_listen_connection_being_killed(
    database_url: str, worker: Any, queuer: taskq.Queuer, tasks: taskq.Tasks, gates: Gates
) -> None:
    look = psycopg.connect(database_url, autocommit=True)

    def listeners() -> set[int]:
        rows = look.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'taskq-listen'"
        ).fetchall()
        return {r[0] for r in rows}

    try:
        before = listeners()
        gate = gates.new()
        task_id = steps_after_gate(queuer, gate, steps=20, pause=0.2)
        watch = tasks.watch(task_id, timeout=TIMEOUT)
        snapshots = [next(watch)]  # the watcher is listening now
        ours = listeners() - before
        assert ours, "the watcher's LISTEN connection is named taskq-listen"
        gates.open(gate)
        killed_at = reconnected_at = None
        for s in watch:
            snapshots.append(s)
            step = (taskq.Progress.from_json(s.progress) or taskq.Progress()).step or 0
            if killed_at is None and step >= 3:
                for pid in ours:
                    look.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed_at = step
            elif killed_at is not None and reconnected_at is None:
                if listeners() - before - ours:
                    reconnected_at = step
    finally:
        look.close()
    assert killed_at is not None
    assert reconnected_at is not None and reconnected_at < 18, "LISTEN came back"
    steps = step_numbers(snapshots)
    assert steps == sorted(steps) and steps[-1] == 20
    # once listening again, every step is seen as it happens (a poll would miss some)
    assert [s for s in steps if s > reconnected_at + 1] == list(range(reconnected_at + 2, 21))
    assert snapshots[-1].status is TaskStatus.FINISHED


def test_wait_and_watch_time_out(queuer: taskq.Queuer, tasks: taskq.Tasks) -> None:
    t = queuer.enqueue(queue=unserved(), type="noop")
    with pytest.raises(TimeoutError):
        tasks.wait(t.id, timeout=0.3)
    watch = tasks.watch(t.id, timeout=0.3)
    assert next(watch).status is TaskStatus.WAITING
    with pytest.raises(TimeoutError):
        next(watch)
    with pytest.raises(taskq.TaskNotFound):
        tasks.wait(str(uuid.uuid4()), timeout=1)


def test_show_follow_prints_progress_until_the_task_ends(
    database_url: str, schema: str, worker: Any, queuer: taskq.Queuer, gates: Gates
) -> None:
    gate = gates.new()
    task_id = steps_after_gate(queuer, gate, steps=4, pause=0.2)
    p = subprocess.Popen(
        taskq_cmd("show", task_id, "--follow", "--timeout", str(TIMEOUT)),
        env=taskq_env(database_url, schema), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stdout is not None
        first = p.stdout.readline()  # following before the task runs
        assert first.split() == ["waiting"]
        gates.open(gate)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = out.splitlines()
    progress = [ln for ln in lines if ln.startswith(("running ", "finished "))]
    seen = [int(m) for ln in progress for m in re.findall(r"step (\d)/4", ln)[:1]]
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == [1, 2, 3, 4]
    assert progress[-1].startswith("finished ")
    assert "\r" not in out  # no terminal redraws into a pipe
    assert "status:    finished" in lines
    assert "result:    4" in lines


# ---- structured progress -----------------------------------------------------------


def test_progress_round_trips() -> None:
    p = taskq.Progress(percent=0.25, step=1, steps=4, status="copying", dest="/out",
                       error=None)  # fmt: skip
    assert taskq.Progress.from_json(p.to_json()) == p
    assert taskq.Progress.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert taskq.Progress(done=True).to_json() == {"done": True}
    assert taskq.Progress.from_json({"step": 2, "steps": 4}) == taskq.Progress(step=2, steps=4)


def test_progress_fraction() -> None:
    # percent is the fraction done, 0.0 to 1.0, as in seed 000's Progress
    assert taskq.Progress(percent=0.25).fraction() == 0.25
    assert taskq.Progress(percent=1.0).fraction() == 1.0
    assert taskq.Progress(step=3, steps=4).fraction() == 0.75
    assert taskq.Progress(step=1, steps=0).fraction() is None
    assert taskq.Progress(done=True).fraction() == 1.0
    assert taskq.Progress(status="thinking").fraction() is None


def test_progress_that_is_not_a_progress_is_not_parsed() -> None:
    for value in (None, 3, "half", [1, 2], {}, {"other": 1}, {"step": "download"},
                  {"percent": "half"}, {"steps": True}, {"done": "yes"}, {"status": 7}):  # fmt: skip
        assert taskq.Progress.from_json(value) is None, value


def test_any_json_is_allowed_as_progress(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
) -> None:  # fmt: skip
    q = unserved()
    t = queuer.enqueue(queue=q, type="noop")
    claimed = dequeuer.dequeue(q, timeout=5)
    assert claimed is not None
    values: list[Any] = [
        "copying", 42, 0.5, [1, "two"], {"percent": "half"}, {"step": "download"},
        {"nested": {"a": [True, None]}}, taskq.Progress(step=1, steps=3).to_json(),
    ]  # fmt: skip
    for value in values:
        dequeuer.heartbeat(claimed, value)
        assert tasks.get(t.id).progress == value
        listed = run_taskq(database_url, schema, "list", "--queue", q)
        assert listed.returncode == 0, listed.stderr
        shown = run_taskq(database_url, schema, "show", t.id)
        assert shown.returncode == 0, shown.stderr
    assert "step 1/3" in shown.stdout
    dequeuer.finish(claimed, {"done": True})


# ---- title and user ----------------------------------------------------------------


def test_title_and_user_are_stored_listed_and_filtered(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    q = unserved()
    user = f"user-{uuid.uuid4().hex[:6]}"
    a = queuer.enqueue(queue=q, type="noop", title="Resize photo 1", user_id=user)
    b = queuer.enqueue(queue=q, type="noop", title="Resize photo 2", user_id="someone-else")
    assert (a.title, a.user_id) == ("Resize photo 1", user)
    got = tasks.get(a.id)
    assert (got.title, got.user_id) == ("Resize photo 1", user)
    assert [t.id for t in tasks.list(user_id=user)] == [a.id]
    assert [t.id for t in tasks.list(queue=q, title="Resize photo 2")] == [b.id]
    assert [t.id for t in tasks.list(queue=q, user_id=user, title="Resize photo 2")] == []
    listed = run_taskq(database_url, schema, "list", "--queue", q)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "TITLE" in header and "USER" in header
    assert any(a.id in r and "Resize photo 1" in r and user in r for r in rows)
    mine = run_taskq(database_url, schema, "list", "--user-id", user)
    assert mine.returncode == 0, mine.stderr
    assert a.id in mine.stdout and b.id not in mine.stdout


def test_a_follow_up_whose_unique_key_is_held_is_skipped_and_the_parent_still_finishes(
    queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, tasks: taskq.Tasks
) -> None:
    q = unserved()
    key = f"once-{uuid.uuid4().hex[:8]}"
    holder = queuer.enqueue(queue=q, type="noop", unique_key=key)
    parent = queuer.enqueue(
        queue=q, type="noop",
        on_success=TaskEnqueueRequest(queue=q, type="noop", unique_key=key),
    )  # fmt: skip
    claimed = dequeuer.dequeue(q, timeout=5)
    while claimed is not None and claimed.id != parent.id:
        claimed = dequeuer.dequeue(q, timeout=5)
    assert claimed is not None
    dequeuer.finish(claimed)
    assert tasks.get(parent.id).status is TaskStatus.FINISHED
    assert [t.id for t in tasks.list(queue=q, limit=10) if t.unique_key == key] == [holder.id]
