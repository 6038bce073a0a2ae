"""taskq.testing: ``drain``, the enqueue assertions, and the pytest plugin.

``drain`` and the assertions are called here directly on this module's schema; the
plugin is tested by running pytest sessions on a small user project in a temporary
folder (the README's example test among them, taken from examples/README-testing.md),
with the plugin loaded by its entry point and by ``-p``. One inner test must fail,
with the assertion's message, so the plugin cannot be a no-op.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import ROOT

import taskq
from taskq import TaskEnqueueRequest as R
from taskq import TaskStatus
from taskq.testing import assert_enqueued, assert_not_enqueued, drain, enqueued

# ---- a registry for the direct tests -------------------------------------------------

registry = taskq.Registry()
calls: list[str] = []


@registry.task("t.echo")
def echo(ctx: taskq.TaskContext) -> Any:
    calls.append(ctx.task.id)
    ctx.progress({"step": 1})
    return {"echo": ctx.spec, "previous": ctx.previous_result}


@registry.task("t.flaky", max_attempts=3, retry_delay=3600)
def flaky(ctx: taskq.TaskContext) -> Any:
    if ctx.task.attempts < 3:
        raise RuntimeError(f"attempt {ctx.task.attempts} went wrong")
    return "third time lucky"


@registry.task("t.doomed")
def doomed(ctx: taskq.TaskContext) -> Any:
    raise taskq.TaskFailed("no point retrying")


@registry.task("t.async")
async def in_a_coroutine(ctx: taskq.TaskContext) -> Any:
    return {"current": taskq.current_task_id() == ctx.task.id}


@registry.task("t.cancels_itself")
def cancels_itself(ctx: taskq.TaskContext) -> Any:
    with taskq.Tasks(os.environ["T_URL"], schema=os.environ["T_SCHEMA"]) as t:
        t.cancel(ctx.task.id)
    ctx.progress({"after": "cancel"})  # raises TaskCancelled
    return "never stored"


@registry.task("t.forever")
def forever(ctx: taskq.TaskContext) -> Any:
    with taskq.Queuer(os.environ["T_URL"], schema=os.environ["T_SCHEMA"]) as q:
        q.enqueue(queue=ctx.task.queue, type="t.forever")


@pytest.fixture
def db(database_url: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("T_URL", database_url)
    monkeypatch.setenv("T_SCHEMA", fresh_schema)
    with taskq.Queuer(database_url, schema=fresh_schema) as q:
        yield q.database


# ---- drain -------------------------------------------------------------------------------


def test_drain_runs_every_runnable_task_and_its_follow_ups(db: Any) -> None:
    q = taskq.Queuer(db)
    chain = q.enqueue_chain([R("a", "t.echo", spec=1), R("a", "t.echo", spec=2)])
    q.enqueue(R("b", "t.echo", spec="x", on_success=R("b", "t.echo", spec="y")))
    later = q.enqueue(R("a", "t.echo", run_at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC)))

    ran = drain(registry, db)

    # Claim order: the chain's first link and the on_success task were due first; each
    # follow-up became due when the task before it finished.
    assert [t.spec for t in ran] == [1, "x", 2, "y"]
    assert all(t.status == TaskStatus.FINISHED for t in ran)
    by_spec = {str(t.spec): t for t in ran}
    assert by_spec["2"].result == {"echo": 2, "previous": {"echo": 1, "previous": None}}
    assert by_spec["2"].id == chain.task_ids[1]
    assert by_spec["y"].result["previous"] == {"echo": "x", "previous": None}
    assert by_spec["1"].progress == {"step": 1}
    assert taskq.Tasks(db).get(later.id).status == TaskStatus.WAITING  # not due: left alone
    assert drain(registry, db) == []


def test_drain_takes_only_the_queues_named(db: Any) -> None:
    q = taskq.Queuer(db)
    a, b = q.enqueue(R("a", "t.echo")), q.enqueue(R("b", "t.echo"))
    assert [t.id for t in drain(registry, db, ["b"])] == [b.id]
    assert taskq.Tasks(db).get(a.id).status == TaskStatus.WAITING


def test_a_failure_waits_out_its_backoff_unless_told_to_skip_it(db: Any) -> None:
    task = taskq.Queuer(db, registry=registry).enqueue(R("a", "t.flaky"))

    [first] = drain(registry, db)
    assert (first.status, first.attempts) == (TaskStatus.WAITING, 1)
    assert first.error == "attempt 1 went wrong"
    assert drain(registry, db) == []  # due in an hour

    taskq.Tasks(db).cancel(task.id)
    task = taskq.Queuer(db, registry=registry).enqueue(R("a", "t.flaky"))
    ran = drain(registry, db, skip_backoff=True)
    assert [(t.status, t.attempts) for t in ran] == [
        (TaskStatus.WAITING, 1), (TaskStatus.WAITING, 2), (TaskStatus.FINISHED, 3)
    ]  # fmt: skip
    assert ran[-1].result == "third time lucky"


def test_task_failed_is_final_and_raise_errors_reraises_it(db: Any) -> None:
    taskq.Queuer(db).enqueue(R("a", "t.doomed", max_attempts=5))
    with pytest.raises(taskq.TaskFailed, match="no point retrying"):
        drain(registry, db, raise_errors=True)
    [task] = enqueued(db, "t.doomed")
    assert (task.status, task.attempts, task.error) == (TaskStatus.FAILED, 1, "no point retrying")


def test_async_handlers_run_from_sync_and_async_callers(db: Any) -> None:
    import asyncio

    q = taskq.Queuer(db)
    q.enqueue(R("a", "t.async"))
    assert [t.result for t in drain(registry, db)] == [{"current": True}]

    q.enqueue(R("a", "t.async"))

    async def from_a_coroutine() -> list[taskq.Task]:
        return drain(registry, db)

    assert [t.result for t in asyncio.run(from_a_coroutine())] == [{"current": True}]


def test_a_cancelled_task_stays_cancelled_and_unknown_types_fail(db: Any) -> None:
    q = taskq.Queuer(db)
    q.enqueue(R("a", "t.cancels_itself"))
    q.enqueue(R("a", "t.unknown"))
    ran = {t.type: t for t in drain(registry, db)}
    assert ran["t.cancels_itself"].status == TaskStatus.CANCELLED
    assert ran["t.cancels_itself"].result is None
    assert ran["t.unknown"].status == TaskStatus.FAILED
    assert "no handler registered for task type 't.unknown'" in (ran["t.unknown"].error or "")


def test_drain_stops_after_max_tasks_and_gives_the_last_claim_back(db: Any) -> None:
    taskq.Queuer(db).enqueue(R("a", "t.forever"))
    with pytest.raises(RuntimeError, match="ran 5 tasks and more keep coming"):
        drain(registry, db, max_tasks=5)
    assert len(enqueued(db, "t.forever", status="waiting")) == 1
    assert len(enqueued(db, "t.forever", status="running")) == 0


def test_drain_inside_the_callers_transaction_rolls_back_with_it(
    database_url: str, fresh_schema: str
) -> None:
    with psycopg.connect(database_url) as conn:
        taskq.Queuer(conn, schema=fresh_schema).enqueue(R("a", "t.echo", spec="tx"))
        [task] = drain(registry, conn, schema=fresh_schema)
        assert task.status == TaskStatus.FINISHED
        conn.rollback()
    assert enqueued(database_url, schema=fresh_schema) == []


# ---- the assertions ------------------------------------------------------------------------


def test_assert_enqueued_matches_type_queue_spec_status_and_count(db: Any) -> None:
    q = taskq.Queuer(db)
    q.enqueue(R("mail", "email.send", spec={"to": "a"}))
    q.enqueue(R("mail", "email.send", spec={"to": "b"}))
    q.enqueue(R("other", "email.send", spec={"to": "a"}))

    found = assert_enqueued(db, "email.send", queue="mail")
    assert [t.spec for t in found] == [{"to": "a"}, {"to": "b"}]  # enqueue order
    assert_enqueued(db, "email.send", spec={"to": "a"}, count=2)
    assert_enqueued(db, "email.send", spec=lambda s: s["to"] == "b", count=1)
    assert_enqueued(db, "email.send", status=TaskStatus.WAITING, count=3)
    assert_not_enqueued(db, "email.send", status="finished")
    assert_not_enqueued(db, "sms.send")

    with pytest.raises(AssertionError) as e:
        assert_enqueued(db, "email.send", queue="mail", spec={"to": "c"})
    text = str(e.value)
    assert "expected at least one task of type 'email.send' on queue 'mail'" in text
    assert 'with spec {"to": "c"}, found 0' in text
    assert 'email.send on \'mail\' (waiting) spec={"to": "b"}' in text

    with pytest.raises(AssertionError, match="expected exactly 1 task .* found 2"):
        assert_enqueued(db, "email.send", spec={"to": "a"}, count=1)
    with pytest.raises(AssertionError, match="no task of that type was enqueued"):
        assert_enqueued(db, "sms.send")
    with pytest.raises(AssertionError, match="expected no task of type 'email.send'"):
        assert_not_enqueued(db, "email.send", queue="other")


# ---- the plugin, in pytest sessions of a user project ----------------------------------------


def readme_blocks() -> dict[str, str]:
    """The README's Python blocks, by the file name in their first line's comment."""
    text = (ROOT / "examples" / "README-testing.md").read_text()
    blocks = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            blocks[first[2:]] = block
    return blocks


CHECKS = """
import psycopg
import taskq
from taskq.testing import assert_enqueued, drain

from shop import registry

SEEN = []


def test_each_test_has_an_empty_schema_of_its_own(taskq_db, taskq_database_url):
    assert taskq_db.url == taskq_database_url
    assert taskq_db.schema.startswith("taskq_test_")
    assert taskq.Tasks(taskq_db).list() == []
    with open("schemas.txt", "a") as f:
        f.write(taskq_db.schema + "\\n")
    taskq.Queuer(taskq_db).enqueue(queue="mail", type="receipt.send", spec={"email": "a@b"})


def test_the_environment_points_at_it(taskq_db):
    with taskq.Queuer() as q:  # TASKQ_DATABASE_URL and TASKQ_SCHEMA
        q.enqueue(queue="mail", type="receipt.send", spec={"email": "env@b"})
    with open("schemas.txt", "a") as f:
        f.write(taskq_db.schema + "\\n")
    [task] = drain(registry, taskq_db)
    assert task.result == {"sent_to": "env@b"}


def test_this_one_must_fail(taskq_db):
    taskq.Queuer(taskq_db).enqueue(queue="mail", type="receipt.send", spec={"email": "x@y"})
    assert_enqueued(taskq_db, "receipt.send", spec={"email": "someone@else"})
"""


def run_inner(
    project: Path, url: str, *args: str, autoload: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKQ_", "PYTEST_"))}
    env["TASKQ_TEST_DATABASE_URL"] = url
    env["PYTHONPATH"] = str(project)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in readme_blocks().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "test_checks.py").write_text(CHECKS)
    return tmp_path


def schema_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [name]).fetchone()
    return bool(row and row[0])


def test_the_readme_example_has_the_files_it_says() -> None:
    assert set(readme_blocks()) == {"shop.py", "test_shop.py"}


def test_the_plugin_loads_by_its_entry_point_and_runs_the_readme_example(
    project: Path, database_url: str
) -> None:
    out = run_inner(project, database_url, "-rf")
    summary = out.stdout.strip().splitlines()[-1]
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"\b1 failed, 5 passed\b", summary), out.stdout + out.stderr
    assert "FAILED test_checks.py::test_this_one_must_fail" in out.stdout
    assert "expected at least one task of type 'receipt.send'" in out.stdout
    assert '\'mail\' (waiting) spec={"email": "x@y"}' in out.stdout  # what was there instead
    schemas = (project / "schemas.txt").read_text().split()
    assert len(schemas) == 2 and schemas[0] != schemas[1]
    assert not any(schema_exists(database_url, s) for s in schemas)  # dropped afterwards


def test_the_plugin_loads_with_dash_p_when_autoload_is_off(
    project: Path, database_url: str
) -> None:
    off = run_inner(project, database_url, "test_shop.py", autoload=False)
    assert off.returncode != 0 and "fixture 'taskq_db' not found" in off.stdout

    on = run_inner(project, database_url, "-p", "taskq.testing", "test_shop.py", autoload=False)
    assert on.returncode == 0, on.stdout + on.stderr
    assert re.search(r"\b3 passed\b", on.stdout)

    both = run_inner(project, database_url, "-p", "taskq.testing", "test_shop.py")
    assert both.returncode == 0, both.stdout + both.stderr  # named and autoloaded: loaded once


def test_taskq_db_works_with_the_asyncio_classes(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "test_aio.py").write_text(
        "import asyncio\n"
        "from taskq.aio import AsyncQueuer\n"
        "from taskq.testing import assert_enqueued\n\n"
        "def test_async(taskq_db):\n"
        "    async def go():\n"
        "        async with AsyncQueuer(taskq_db.url, schema=taskq_db.schema) as q:\n"
        "            await q.enqueue(queue='q', type='t', spec=[1])\n"
        "    asyncio.run(go())\n"
        "    assert_enqueued(taskq_db, 't', spec=[1], count=1)\n"
    )
    out = run_inner(tmp_path, database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\b1 passed\b", out.stdout)
