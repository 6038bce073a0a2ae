"""taskq.contrib.django: Django's Tasks framework on taskq, against a real Django
project (tests/djsite) on the test database, with real worker processes started by
``python -m django taskq_worker``.

Django is set up once in this process (its settings are process-wide), with Django's
tables in a PostgreSQL schema of their own (search_path) and taskq's in another;
``manage.py migrate`` creates both (taskq's through the app's migration).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from helpers import POOLER_SETTINGS, ROOT, open_connections, schema_role, wait_for
from psycopg import sql

import taskq
from taskq import TaskStatus

pytest.importorskip("django")

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def site(database_url: str) -> Iterator[dict[str, str]]:
    """Django set up on fresh schemas; yields the environment of the project. Django
    connects as a role of its own whose search_path is Django's schema (set on the
    role, as behind PgBouncer, which refuses a search_path given at connection)."""
    suffix = uuid.uuid4().hex[:8]
    db_schema = f"dj_{suffix}"
    with schema_role(database_url, db_schema) as django_url:
        env = {
            "DJSITE_DATABASE_URL": django_url,
            "DJSITE_TASKQ_SCHEMA": f"tq_{suffix}",
            "DJSITE_APP_NAME": f"djsite-tests-{suffix}",
            "DJANGO_SETTINGS_MODULE": "djsite.settings",
        }
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield env
        from django.db import connections

        connections.close_all()
        with psycopg.connect(database_url, autocommit=True) as c:
            for name in (db_schema, env["DJSITE_TASKQ_SCHEMA"]):
                c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def worker_env(site: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k in POOLER_SETTINGS or not k.startswith("TASKQ_")}  # fmt: skip
    env.update(site)
    env["PYTHONPATH"] = str(ROOT / "tests")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start_worker(site: dict[str, str], *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "taskq_worker", "--poll-interval", "0.5",
         "--rescue-interval", "0.5", *args],
        env=worker_env(site, **extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=ROOT,
    )  # fmt: skip


def stop(p: subprocess.Popen[str]) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    assert p.returncode == 0, out
    return out


@pytest.fixture(scope="module")
def worker(site: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """One worker process serving the queues default and mail."""
    p = start_worker(site, "--concurrency", "2", "--queue", "default", "--queue", "mail",
                     DJSITE_APP_NAME=site["DJSITE_APP_NAME"] + "-w")  # fmt: skip
    yield p
    stop(p)


@pytest.fixture(scope="module")
def tasks_module(site: dict[str, str]) -> Any:
    from djsite.orders import tasks

    return tasks


@pytest.fixture
def taskq_tasks(site: dict[str, str], database_url: str) -> Iterator[taskq.Tasks]:
    """taskq's view of the backend's schema, on a connection of its own."""
    with taskq.Tasks(database_url, schema=site["DJSITE_TASKQ_SCHEMA"]) as t:
        yield t


def final(task: Any, result_id: str) -> Any:
    """The TaskResult once it has finished or failed."""
    return wait_for(lambda: (r := task.get_result(result_id)).is_finished and r,
                    timeout=TIMEOUT, what=f"task {result_id} to end")  # fmt: skip


def orders() -> Any:
    from djsite.orders.models import Order

    return Order


# ---- enqueue in Django's transaction ---------------------------------------------------------


def test_rolled_back_enqueue_never_runs_and_committed_runs_once(
    worker: Any, tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    from django.db import transaction

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        gone = orders().objects.create(email="gone@example.com")
        lost = tasks_module.confirm_order.enqueue(gone.id)
        assert tasks_module.confirm_order.get_result(lost.id).status == "READY"  # own view
        raise Rollback

    with transaction.atomic():
        kept = orders().objects.create(email="kept@example.com")
        result = tasks_module.confirm_order.enqueue(kept.id)
        with pytest.raises(taskq.TaskNotFound):  # not visible outside before the commit
            taskq_tasks.get(result.id)

    done = final(tasks_module.confirm_order, result.id)
    assert done.status == "SUCCESSFUL"
    assert done.return_value == {"order": kept.id, "updated": 1}
    assert orders().objects.get(id=kept.id).confirmations == 1
    assert not orders().objects.filter(id=gone.id).exists()
    with pytest.raises(taskq.TaskNotFound):
        taskq_tasks.get(lost.id)
    from taskq.contrib.django.compat import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        tasks_module.confirm_order.get_result(lost.id)
    assert taskq_tasks.get(result.id).attempts == 1


def test_on_commit_enqueue_follows_the_transaction(
    worker: Any, tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    """Django's documented way to enqueue after commit works unchanged."""
    from django.db import transaction

    email = f"{uuid.uuid4().hex[:6]}@example.com"
    with pytest.raises(RuntimeError), transaction.atomic():
        transaction.on_commit(functools.partial(tasks_module.send_receipt.enqueue, email,
                                                lines=["never"]))  # fmt: skip
        raise RuntimeError("roll back")
    with transaction.atomic():
        transaction.on_commit(functools.partial(tasks_module.send_receipt.enqueue, email,
                                                lines=["a", "b"]))  # fmt: skip
        assert receipts_for(taskq_tasks, email) == []
    [row] = receipts_for(taskq_tasks, email)
    done = final(tasks_module.send_receipt, row.id)
    assert done.return_value == f"{email}: 2 lines"


def receipts_for(tasks: taskq.Tasks, email: str) -> list[taskq.Task]:
    return [t for t in tasks.list(queue="mail", limit=1000) if t.spec["args"] == [email]]


# ---- what is stored, and read back ---------------------------------------------------------------


def test_queue_priority_run_after_and_arguments_map_onto_taskq(
    site: dict[str, str], tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    from django.utils import timezone

    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks_module.send_receipt.using(priority=-7, run_after=later).enqueue(
        "ada@example.com", lines=[(1, "x"), {"k": b"v"}]
    )
    row = taskq_tasks.get(result.id)
    assert row.type == "djsite.orders.tasks.send_receipt"
    assert (row.queue, row.priority, row.status) == ("mail", -7, TaskStatus.WAITING)
    assert abs((row.run_at - later).total_seconds()) < 0.01
    assert row.spec == {"args": ["ada@example.com"],
                        "kwargs": {"lines": [[1, "x"], {"k": "v"}]}, "backend": "default"}  # fmt: skip
    assert result.args == ["ada@example.com"]
    assert result.kwargs == {"lines": [[1, "x"], {"k": "v"}]}

    back = tasks_module.send_receipt.get_result(result.id)
    assert back.status == "READY" and not back.is_finished
    # Django's connection loads jsonb as text (its own loader); taskq decodes its rows
    # with its own loaders on that same connection all the same.
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("""SELECT '{"a": 1}'::jsonb""")
        assert cur.fetchone()[0] == '{"a": 1}'
    assert back.kwargs == {"lines": [[1, "x"], {"k": "v"}]}
    assert (back.task.queue_name, back.task.priority) == ("mail", -7)
    assert back.task.run_after == row.run_at
    assert back.enqueued_at == row.created_at and back.enqueued_at.tzinfo is not None
    assert (back.started_at, back.finished_at, back.errors, back.worker_ids) == (None, None, [], [])
    with pytest.raises(ValueError, match="not finished"):
        _ = back.return_value
    taskq_tasks.cancel(result.id)


def test_arguments_are_checked_with_djangos_own_errors(
    site: dict[str, str], tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    from taskq.contrib.django.compat import InvalidTask

    before = len(taskq_tasks.list(limit=1000))
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks_module.confirm_order.enqueue({1, 2})
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks_module.send_receipt.enqueue("a", lines=[object()])
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        tasks_module.confirm_order.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="priority"):
        tasks_module.confirm_order.using(priority=101)
    assert len(taskq_tasks.list(limit=1000)) == before


def test_results_and_failures_read_back_through_get_result(worker: Any, tasks_module: Any) -> None:
    ok = tasks_module.send_receipt.enqueue("b@example.com", lines=[1])
    bad = tasks_module.charge.enqueue(42)
    wrong = tasks_module.returns_a_set.enqueue()

    done = final(tasks_module.send_receipt, ok.id)
    assert done.status == "SUCCESSFUL" and done.return_value == "b@example.com: 1 lines"
    assert done.started_at and done.finished_at and done.last_attempted_at == done.started_at
    assert len(done.worker_ids) == 1 and done.worker_ids[0] and done.attempts == 1

    failed = final(tasks_module.charge, bad.id)
    assert failed.status == "FAILED"
    [error] = failed.errors
    assert error.exception_class_path == "djsite.orders.tasks.PaymentDeclined"
    assert error.exception_class is tasks_module.PaymentDeclined
    assert "Traceback (most recent call last)" in error.traceback
    assert "card declined for 42" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value

    refused = final(tasks_module.returns_a_set, wrong.id)
    assert refused.status == "FAILED"
    assert refused.errors[0].exception_class is TypeError

    ok.refresh()  # TaskResult.refresh goes through get_result too
    assert ok.status == "SUCCESSFUL"


def test_context_async_tasks_and_the_async_api(worker: Any, tasks_module: Any) -> None:
    order = orders().objects.create(email="async@example.com")

    async def go() -> tuple[Any, Any]:
        a = await tasks_module.confirm_later.aenqueue(order.id)
        w = await tasks_module.whoami.aenqueue()
        return a, w

    a, w = asyncio.run(go())
    final(tasks_module.confirm_later, a.id)

    async def read() -> tuple[Any, Any]:
        return (await tasks_module.confirm_later.aget_result(a.id),
                await tasks_module.whoami.aget_result(w.id))  # fmt: skip

    async_done, _ = asyncio.run(read())
    assert async_done.status == "SUCCESSFUL" and async_done.return_value == 1
    assert orders().objects.get(id=order.id).confirmations == 1
    who = final(tasks_module.whoami, w.id)
    assert who.return_value == {"id": w.id, "attempt": 1, "status": "RUNNING"}


def test_a_cancelled_task_reads_as_failed_with_taskqs_error(
    site: dict[str, str], tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    from django.utils import timezone

    result = tasks_module.confirm_order.using(
        run_after=timezone.now() + dt.timedelta(hours=1)
    ).enqueue(0)
    taskq_tasks.cancel(result.id)
    back = tasks_module.confirm_order.get_result(result.id)
    assert back.status == "FAILED" and back.finished_at is not None
    assert back.errors[0].exception_class is taskq.TaskCancelled


def test_get_result_refuses_unknown_ids_and_non_django_tasks(
    site: dict[str, str], database_url: str, tasks_module: Any
) -> None:
    from taskq.contrib.django.compat import TaskResultDoesNotExist, task_backends

    backend = task_backends["default"]
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("not-a-uuid")
    with taskq.Queuer(database_url, schema=site["DJSITE_TASKQ_SCHEMA"]) as q:
        plain = q.enqueue(queue="elsewhere", type="email.send")
        odd = q.enqueue(queue="elsewhere", type="djsite.orders.models.Order")
    with pytest.raises(TaskResultDoesNotExist, match="names no Django task"):
        backend.get_result(plain.id)
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        backend.get_result(odd.id)


# ---- the worker process --------------------------------------------------------------------


def test_worker_connections_are_closed_after_each_task_and_never_shared(
    site: dict[str, str], database_url: str, tasks_module: Any
) -> None:
    """CONN_MAX_AGE is 0 in the test project: every task runs on a fresh connection of
    its own thread, closed when it ends, so none is left open afterwards. (Behind the
    pooler leg, the connections are Django's to PgBouncer: the pooler's clients.)"""
    app = site["DJSITE_APP_NAME"] + "-conns"
    p = start_worker(site, "--concurrency", "3", "--queue", "conns", DJSITE_APP_NAME=app)
    try:
        wait_for(lambda: "started: queues conns" in _peek(p), timeout=TIMEOUT)
        pid = tasks_module.backend_pid.using(queue_name="conns")
        results = [pid.enqueue() for _ in range(9)]
        done = [final(tasks_module.backend_pid, r.id).return_value for r in results]
        # The worker is still running: the tasks' connections are closed all the same.
        wait_for(lambda: open_connections(database_url, app) == 0, timeout=TIMEOUT,
                 what="connections closed")  # fmt: skip
    finally:
        stop(p)
    pids = [d["pid"] for d in done]
    assert len(set(pids)) == 9, done  # a fresh connection per task
    assert len({d["process"] for d in done}) == 1
    assert all(d["thread"].startswith("taskq-slot-") for d in done)


def test_worker_serves_the_backends_queues_by_default(
    site: dict[str, str], database_url: str
) -> None:
    """No --queue: the backend's QUEUES (conns, default, mail), not every queue."""
    with taskq.Queuer(database_url, schema=site["DJSITE_TASKQ_SCHEMA"]) as q:
        other = q.enqueue(queue="not-djangos", type="djsite.orders.tasks.send_receipt",
                          spec={"args": ["x"], "kwargs": {"lines": []}})  # fmt: skip
    p = start_worker(site)
    try:
        wait_for(lambda: "started: queues conns,default,mail" in _peek(p), timeout=TIMEOUT)
    finally:
        stop(p)
    with taskq.Tasks(database_url, schema=site["DJSITE_TASKQ_SCHEMA"]) as t:
        assert t.get(other.id).status == TaskStatus.WAITING
        t.cancel(other.id)


_seen: dict[int, str] = {}


def _peek(p: subprocess.Popen[str]) -> str:
    """What the process printed so far (reads a line at a time without blocking long)."""
    import select

    assert p.stdout is not None
    buf = _seen.get(p.pid, "")
    while select.select([p.stdout], [], [], 0.1)[0]:
        line = p.stdout.readline()
        if not line:
            break
        buf += line
    _seen[p.pid] = buf
    return buf


def test_worker_command_reports_bad_configuration_in_one_line(site: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "django", "taskq_worker", "--backend", "nope"],
        env=worker_env(site), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode != 0
    assert "TASKS['nope'] is not a taskq backend" in out.stderr
    assert "Traceback" not in out.stderr

    helped = subprocess.run(
        [sys.executable, "-m", "django", "taskq_worker", "--help"],
        env=worker_env(site), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert helped.returncode == 0
    assert "--concurrency" in helped.stdout and "--backend ALIAS" in helped.stdout


# ---- migrations and checks --------------------------------------------------------------------


def test_migrate_made_taskqs_tables_and_taskq_migrate_is_idempotent(
    site: dict[str, str], database_url: str
) -> None:
    from django.core.management import call_command

    from taskq.db.migrate import current

    schema = site["DJSITE_TASKQ_SCHEMA"]
    head = current(database_url, schema)
    assert head is not None
    call_command("taskq_migrate", verbosity=0)
    assert current(database_url, schema) == head


def test_checks(site: dict[str, str]) -> None:
    from django.core.management import call_command

    from taskq.contrib.django import TaskqBackend

    call_command("check")
    ids = [m.id for m in TaskqBackend("x", {"ENQUEUE_ON_COMMIT": True}).check()]
    assert ids == ["taskq.W001"]
    ids = [m.id for m in TaskqBackend("x", {"OPTIONS": {"DATABASE": "other"}}).check()]
    assert ids == ["taskq.E001"]


# ---- tasks in tests, without a worker ---------------------------------------------------------


def test_run_tasks_runs_them_inside_the_tests_transaction(
    site: dict[str, str], tasks_module: Any, taskq_tasks: taskq.Tasks
) -> None:
    from django.db import transaction

    from taskq.contrib.django.testing import run_tasks

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():  # as a django.test.TestCase does
        order = orders().objects.create(email="test@example.com")
        first = tasks_module.confirm_order.using(queue_name="conns").enqueue(order.id)
        second = tasks_module.charge.using(queue_name="conns").enqueue(1)
        done = {r.id: r for r in run_tasks(["conns"])}
        assert done[first.id].status == "SUCCESSFUL"
        assert done[first.id].return_value == {"order": order.id, "updated": 1}
        assert done[second.id].errors[0].exception_class is tasks_module.PaymentDeclined
        assert orders().objects.get(id=order.id).confirmations == 1
        assert run_tasks(["conns"]) == []
        raise Rollback
    assert not orders().objects.filter(id=order.id).exists()
    with pytest.raises(taskq.TaskNotFound):
        taskq_tasks.get(first.id)


def test_taskq_worker_pointed_at_the_settings_runs_the_tasks(
    site: dict[str, str], tasks_module: Any, tmp_path: Any
) -> None:
    """`taskq worker taskq.contrib.django.worker:registry` with DJANGO_SETTINGS_MODULE
    and nothing of taskq's in the environment: the database and schema come from the
    project."""
    args = [sys.executable, "-m", "taskq.cli", "worker", "taskq.contrib.django.worker:registry"]
    missing = subprocess.run(
        args, env={k: v for k, v in worker_env(site).items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .endswith("set DJANGO_SETTINGS_MODULE to your project's settings module")
    )
    assert "Traceback" not in missing.stderr

    p = subprocess.Popen(
        [*args, "--queue", "conns", "--poll-interval", "0.5"], env=worker_env(site),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: "started: queues conns" in _peek(p), timeout=TIMEOUT)
        result = tasks_module.send_receipt.using(queue_name="conns").enqueue("c@d", lines=[])
        assert final(tasks_module.send_receipt, result.id).return_value == "c@d: 0 lines"
    finally:
        stop(p)
