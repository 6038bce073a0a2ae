"""Least-privilege roles (taskq/db/roles.py): every kind of process runs under the
grants ``taskq roles grant KIND ROLE`` gives it, and is refused cleanly (one line, no
traceback) where it should not reach.

The schema is migrated by the test server's superuser, the owner; each role is a
fresh LOGIN role with nothing but those grants."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import ROOT, run_taskq, taskq_env, wait_for
from psycopg import sql
from support.roles import Role, Roles

import taskq
from taskq.core.errors import WriteRefused
from taskq.db.roles import KINDS, grants

R = taskq.TaskEnqueueRequest


def granted(database_url: str, roles: Roles, kind: str, schema: str) -> Role:
    role = roles.create(kind)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in grants(kind, role.name, schema):
            conn.execute(statement)
    return role


@pytest.fixture
def as_role(database_url: str, roles: Roles, schema: str) -> Any:
    def make(kind: str) -> Role:
        return granted(database_url, roles, kind, schema)

    return make


def one_line_refusal(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_the_cli_prints_the_same_grants_the_module_gives(database_url: str, schema: str) -> None:
    for kind in KINDS:
        r = run_taskq(database_url, schema, "roles", "grant", kind, "someone")
        assert r.returncode == 0, r.stderr
        expected = [s.as_string(None) + ";" for s in grants(kind, "someone", schema)]
        assert r.stdout.splitlines() == expected


def test_a_producer_enqueues_reads_and_waits_but_cannot_claim_or_cancel(
    as_role: Any, schema: str, queue_name: str
) -> None:
    role = as_role("producer")
    with taskq.Queuer(role.url, schema=schema) as q, taskq.Tasks(role.url, schema=schema) as t:
        task = q.enqueue(R(queue_name, "t", {"n": 1}))
        q.enqueue_many([R(queue_name, "t", {"n": i}) for i in range(3)])
        q.enqueue_chain([R(queue_name, "a"), R(queue_name, "b")])
        q.enqueue_group([R(queue_name, "g")], on_complete=R(queue_name, "done"))
        assert t.get(task.id).spec == {"n": 1}
        assert len(t.list(queue=queue_name)) == 7
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            t.cancel(task.id)
        with (
            taskq.Dequeuer(role.url, schema=schema) as d,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            d.dequeue(queue_name, timeout=0)


def test_a_worker_role_claims_writes_outcomes_and_runs_follow_ups(
    as_role: Any, database_url: str, schema: str, queue_name: str
) -> None:
    role = as_role("worker")
    with taskq.Queuer(database_url, schema=schema) as q:
        chain = q.enqueue_chain([R(queue_name, "a"), R(queue_name, "b")])
        group = q.enqueue_group([R(queue_name, "g")], on_complete=R(queue_name, "done"))
        q.enqueue(R(queue_name, "s", on_success=R(queue_name, "after")))
        flaky = q.enqueue(R(queue_name, "f", max_attempts=2, retry_delay=0))
    ran: list[str] = []
    with taskq.Dequeuer(role.url, schema=schema, worker_id=None) as d:
        while (task := d.dequeue(queue_name, timeout=0)) is not None:
            ran.append(task.type)
            d.heartbeat(task, {"step": 1})
            if task.id == flaky.id and task.attempts == 1:
                d.fail(task, error="once")
            else:
                d.finish(task, result={"ok": True})
        assert d.rescue() == 0
    assert sorted(ran) == ["a", "after", "b", "done", "f", "f", "g", "s"]
    with taskq.Tasks(database_url, schema=schema) as t:
        assert t.get_chain(chain.id).status is taskq.TaskStatus.FINISHED
        assert t.get_group(group.id).status is taskq.TaskStatus.FINISHED


def test_a_worker_process_under_the_worker_role_drains_its_queue(
    as_role: Any, database_url: str, schema: str, queue_name: str
) -> None:
    role = as_role("worker")
    with taskq.Queuer(database_url, schema=schema) as q:
        made = q.enqueue_many([R(queue_name, "echo", {"n": i}) for i in range(20)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq.cli", "worker", "taskq_test_app:registry",
         "--queue", queue_name, "--concurrency", "4"],
        env=taskq_env(role.url, schema), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with taskq.Tasks(database_url, schema=schema) as t:
            for task in made:
                assert t.wait(task.id, timeout=60).status is taskq.TaskStatus.FINISHED
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("kind", ["producer", "reader"])
def test_a_worker_process_under_a_lesser_role_refuses_to_start_in_one_line(
    as_role: Any, schema: str, kind: str
) -> None:
    role = as_role(kind)
    r = subprocess.run(
        [sys.executable, "-m", "taskq.cli", "worker", "taskq_test_app:registry"],
        env=taskq_env(role.url, schema), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = one_line_refusal(r)
    assert "cannot run a worker" in line and "UPDATE on" in line, line


def test_a_scheduler_process_under_the_scheduler_role_fires_rescues_and_prunes(
    as_role: Any, database_url: str, schema: str, queue_name: str
) -> None:
    role = as_role("scheduler")
    with taskq.Scheduler(role.url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest(queue_name, "tick", "* * * * * *"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq.cli", "scheduler", "--retention", "1s"],
        env=taskq_env(role.url, schema), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with taskq.Tasks(database_url, schema=schema) as t:
            wait_for(lambda: t.list(queue=queue_name, type="tick"), timeout=30, what="a tick")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        with taskq.Scheduler(database_url, schema=schema) as s:
            s.unschedule(queue=queue_name, type="tick")
    assert proc.returncode == 0, err


def test_a_reader_lists_and_shows_but_every_change_is_refused_in_one_line(
    as_role: Any, database_url: str, schema: str, queue_name: str
) -> None:
    role = as_role("reader")
    with taskq.Queuer(database_url, schema=schema) as q:
        task = q.enqueue(R(queue_name, "t"))
    for args in (("list", "--queue", queue_name), ("show", task.id), ("workers",)):
        r = run_taskq(role.url, schema, *args)
        assert r.returncode == 0, r.stderr
    for args in (("cancel", task.id), ("enqueue", queue_name, "t")):
        line = one_line_refusal(run_taskq(role.url, schema, *args))
        assert "permission denied" in line and "taskq roles" in line, line


def test_an_operator_cancels_retries_purges_and_manages_schedules(
    as_role: Any, database_url: str, schema: str, queue_name: str
) -> None:
    role = as_role("operator")
    with taskq.Queuer(database_url, schema=schema) as q:
        task = q.enqueue(R(queue_name, "t"))
    with taskq.Tasks(role.url, schema=schema) as t:
        assert t.cancel(task.id).status is taskq.TaskStatus.CANCELLED
        assert t.retry(task.id).status is taskq.TaskStatus.WAITING
        t.cancel(task.id)
        assert t.purge(dt.timedelta(0), queue=queue_name) == 1
    r = run_taskq(role.url, schema, "schedule", "add", queue_name, "op", "0 3 * * *")
    assert r.returncode == 0, r.stderr
    r = run_taskq(role.url, schema, "schedule", "remove", queue_name, "op")
    assert r.returncode == 0, r.stderr


def test_migrate_by_a_non_owner_says_up_to_date_and_exits_0(as_role: Any, schema: str) -> None:
    role = as_role("worker")
    r = run_taskq(role.url, schema, "migrate")
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout, r.stdout


def test_migrate_by_a_non_owner_of_a_new_schema_is_refused_in_one_line(
    database_url: str, roles: Roles
) -> None:
    role = roles.create("nobody")
    line = one_line_refusal(run_taskq(role.url, "t_never_made", "migrate"))
    assert "permission denied" in line, line


# ---- batch isolation --------------------------------------------------------------------


@pytest.fixture
def worker_without_groups(database_url: str, roles: Roles, schema: str) -> Iterator[Role]:
    """A worker role that lacks its grant on groups (a deployment mistake)."""
    role = granted(database_url, roles, "worker", schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("REVOKE ALL ON {} FROM {}").format(
                sql.Identifier(schema, "groups"), sql.Identifier(role.name)
            )
        )
    yield role


def test_one_refused_row_in_a_batched_finish_never_fails_its_neighbours(
    worker_without_groups: Role, database_url: str, schema: str, queue_name: str
) -> None:
    with taskq.Queuer(database_url, schema=schema) as q:
        plain = q.enqueue_many([R(queue_name, "t", {"n": i}) for i in range(28)])
        member = q.enqueue_group([R(queue_name, "g")], on_complete=R(queue_name, "done"))
    with taskq.Dequeuer(worker_without_groups.url, schema=schema) as d:
        claimed = d.dequeue_many([queue_name], 100)
        assert len(claimed) == 29
        errors = d.finish_many([taskq.Outcome(t, result={"ok": 1}) for t in claimed])
    assert set(errors) == {member.task_ids[0]}
    assert isinstance(errors[member.task_ids[0]], WriteRefused)
    assert "permission denied" in str(errors[member.task_ids[0]])
    with taskq.Tasks(database_url, schema=schema) as t:
        for task in plain:
            assert t.get(task.id).status is taskq.TaskStatus.FINISHED
        assert t.get(member.task_ids[0]).status is taskq.TaskStatus.RUNNING


def test_one_refused_row_in_a_batched_fail_or_rescue_never_touches_its_neighbours(
    worker_without_groups: Role, database_url: str, schema: str, queue_name: str
) -> None:
    with taskq.Queuer(database_url, schema=schema) as q:
        plain = q.enqueue_many([R(queue_name, "t", heartbeat_timeout=0.1) for _ in range(5)])
        member = q.enqueue_group([R(queue_name, "g", heartbeat_timeout=0.1)])
    with taskq.Dequeuer(worker_without_groups.url, schema=schema) as d:
        claimed = d.dequeue_many([queue_name], 100)
        assert [c.id for c in claimed[:5]] == [p.id for p in plain]
        failing = [taskq.Outcome(t, error="boom", final=True) for t in claimed[:3]]
        assert d.fail_many(failing) == {}
        # the other two plain tasks and the group member go stale; the member's rescue
        # (a group completion check) is refused, the two plain ones are rescued anyway
        assert wait_for(d.rescue, timeout=30, what="the rescue of the rest") == 2
    with taskq.Tasks(database_url, schema=schema) as t:
        assert {t.get(p.id).status for p in plain} == {taskq.TaskStatus.FAILED}
        assert t.get(member.task_ids[0]).status is taskq.TaskStatus.RUNNING
