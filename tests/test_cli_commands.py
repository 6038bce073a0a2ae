"""The command line's everyday surface, run as real processes: --version,
--database-url, enqueue with every option, task id prefixes, bulk cancel and retry by
filter, dry runs, --json, one time format, `taskq embedded`; and guard tests over the
parser (help on every option, every default a named one)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import run_taskq

import taskq
from taskq.cli import build_parser
from taskq.core import defaults
from taskq.core.types import TaskStatus

# The subject is the command line; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")


def ok(r: Any) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    out: str = r.stdout
    return out


def refused(r: Any, status: int) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- the parser ------------------------------------------------------------------------


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    """(command path, action) for every option and argument of every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield (*path, choice.dest), choice
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_command_option_and_argument_has_help() -> None:
    missing = [
        f"taskq {' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
        for path, a in walk(build_parser())
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_every_option_default_is_a_named_default() -> None:
    """CLI defaults come from taskq/core/defaults.py (or are None: the API decides)."""
    named = [v for k, v in vars(defaults).items() if k.isupper()]
    loose = []
    for path, a in walk(build_parser()):
        d = a.default
        if d is None or d is False or d == argparse.SUPPRESS or d == [] or not a.option_strings:
            continue
        if path == ("demo",) and a.dest == "timeout":
            continue  # taskq/cli/demo_cmd.py is not the command line's module
        if not any(type(d) is type(v) and d == v for v in named):
            loose.append(f"taskq {' '.join(path)} {a.option_strings[0]}={d!r}")
    assert loose == []


def test_version(database_url: str, schema: str) -> None:
    out = ok(run_taskq(database_url, schema, "--version"))
    assert out.strip() == f"taskq {taskq.__version__}"


# ---- --database-url ---------------------------------------------------------------------


def test_database_url_option_overrides_the_environment(database_url: str, schema: str) -> None:
    bad_env = "postgresql://nobody@127.0.0.1:1/nothing"
    for args in (["list", "--database-url", database_url],
                 ["--database-url", database_url, "list"],
                 ["schedule", "list", "--database-url", database_url]):  # fmt: skip
        ok(run_taskq(bad_env, schema, *args))
    line = refused(run_taskq(bad_env, schema, "list"), 1)
    assert "127.0.0.1:1/nothing" in line


# ---- enqueue -----------------------------------------------------------------------------


def test_enqueue_takes_every_option_of_the_request(
    database_url: str, schema: str, tasks: taskq.Tasks, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(f'ALTER TABLE "{schema}".tasks ADD COLUMN IF NOT EXISTS account_id bigint')
    key = f"k-{uuid.uuid4().hex[:8]}"
    r = run_taskq(database_url, schema, "enqueue", "cli-every", "cli.every",
                  "--spec", '{"n": [1, 2]}', "--run-at", "2030-01-02T03:04:05Z",
                  "--priority", "7", "--max-attempts", "4", "--timeout", "2m",
                  "--heartbeat-timeout", "45", "--retry-delay", "3s", "--unique-key", key,
                  "--references", '{"account_id": 7}', "--title", "every option",
                  "--user-id", "u-1", "--json")  # fmt: skip
    shown = json.loads(ok(r))
    t = tasks.get(shown["id"])
    assert (t.queue, t.type, t.spec, t.priority, t.max_attempts, t.timeout) == (
        "cli-every", "cli.every", {"n": [1, 2]}, 7, 4, 120.0)  # fmt: skip
    assert (t.heartbeat_timeout, t.unique_key, t.title, t.user_id) == (45.0, key, "every option",
                                                                       "u-1")  # fmt: skip
    assert dict(t.references) == {"account_id": 7}
    assert t.run_at == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert shown["run_at"] == "2030-01-02T03:04:05.000000+00:00"
    assert conn.execute(f'SELECT retry_delay FROM "{schema}".tasks WHERE id = %s',
                        (t.id,)).fetchone() == (3.0,)  # fmt: skip

    plain = tasks.get(ok(run_taskq(database_url, schema, "enqueue", "cli-every", "x")).strip())
    assert (plain.priority, plain.max_attempts, plain.heartbeat_timeout, plain.spec) == (
        0, defaults.MAX_ATTEMPTS, defaults.HEARTBEAT_TIMEOUT, None)  # fmt: skip

    later = tasks.get(ok(run_taskq(database_url, schema, "enqueue", "cli-every", "x",
                                   "--delay", "1h")).strip())  # fmt: skip
    assert dt.timedelta(minutes=55) < later.run_at - later.created_at < dt.timedelta(minutes=65)


def test_run_at_needs_an_offset_or_local(
    database_url: str, schema: str, tasks: taskq.Tasks
) -> None:
    line = refused(run_taskq(database_url, schema, "enqueue", "q", "x", "--run-at",
                             "2030-01-02T08:34:05"), 2)  # fmt: skip
    assert "has no offset" in line
    r = run_taskq(database_url, schema, "enqueue", "q", "x", "--run-at", "2030-01-02T08:34:05",
                  "--local", TZ="Asia/Kolkata")  # fmt: skip
    assert tasks.get(ok(r).strip()).run_at == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    line = refused(run_taskq(database_url, schema, "enqueue", "q", "x", "--run-at", "soon"), 2)
    assert "ISO 8601" in line
    line = refused(run_taskq(database_url, schema, "enqueue", "q", "x", "--delay", "1m",
                             "--run-at", "2030-01-02T08:34:05Z"), 2)  # fmt: skip
    assert "not allowed with" in line


# ---- task id prefixes ----------------------------------------------------------------------


def test_a_unique_prefix_names_the_task_and_others_are_refused(
    database_url: str, schema: str, conn: psycopg.Connection[Any], tasks: taskq.Tasks
) -> None:
    head = uuid.uuid4().hex[:8]
    ids = [f"{head}-{i}000-4000-8000-000000000000" for i in (1, 2)]
    for i in ids:
        conn.execute(f'INSERT INTO "{schema}".tasks (id, queue, type) VALUES (%s, %s, %s)',
                     (i, "prefixes", "x"))  # fmt: skip
    shown = json.loads(ok(run_taskq(database_url, schema, "show", ids[1][:10].upper(), "--json")))
    assert shown["id"] == ids[1]
    out = ok(run_taskq(database_url, schema, "cancel", ids[0][:12]))
    assert out.strip() == f"{ids[0]} cancelled"
    out = ok(run_taskq(database_url, schema, "retry", ids[0].replace("-", "")[:9]))
    assert out.strip() == f"{ids[0]} waiting"

    line = refused(run_taskq(database_url, schema, "show", head), 1)
    assert f"task id prefix '{head}' is ambiguous ({ids[0]}, {ids[1]}, ...)" in line
    line = refused(run_taskq(database_url, schema, "show", head[:5]), 1)
    assert "too short: give at least 6 hex digits" in line
    unknown = "0" * 7 if not head.startswith("0000000") else "f" * 7
    line = refused(run_taskq(database_url, schema, "cancel", unknown), 1)
    assert f"no task id starts with '{unknown}'" in line
    line = refused(run_taskq(database_url, schema, "show", "not-hex!"), 1)
    assert "is not a task id" in line
    assert tasks.get(ids[1]).status is TaskStatus.WAITING


def test_the_prefix_lookup_is_a_range_on_the_primary_key(
    conn: psycopg.Connection[Any], schema: str
) -> None:
    from taskq.sql import statements

    q = statements(schema).tasks.ids_with_prefix("3f2a9c")
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {q.text}", q.params))
    assert "tasks_pkey" in plan, plan
    with pytest.raises(ValueError):
        statements(schema).tasks.ids_with_prefix("3f2a9x")


# ---- cancel, retry and purge by filter ------------------------------------------------------


def test_bulk_cancel_and_retry_by_filter_with_dry_runs(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks,
) -> None:  # fmt: skip
    q = f"bulk-{uuid.uuid4().hex[:6]}"
    a = [queuer.enqueue(queue=q, type="a") for _ in range(3)]
    b = queuer.enqueue(queue=q, type="b")
    done = queuer.enqueue(queue=q + "-done", type="a")
    claimed = dequeuer.dequeue(q + "-done", timeout=5)
    assert claimed is not None
    dequeuer.finish(claimed)

    def run(*args: str) -> str:
        return ok(run_taskq(database_url, schema, *args)).strip()

    assert run("cancel", "--queue", q, "--type", "a", "--dry-run") == "would cancel 3 tasks"
    assert all(tasks.get(t.id).status is TaskStatus.WAITING for t in a)
    assert run("cancel", "--queue", q, "--type", "a") == "cancelled 3 tasks"
    assert [tasks.get(t.id).status for t in (*a, b)] == [TaskStatus.CANCELLED] * 3 + [
        TaskStatus.WAITING]  # fmt: skip
    assert run("cancel", "--queue", q, "--status", "running", "--dry-run") == "would cancel 0 tasks"
    assert json.loads(run("retry", "--queue", q, "--dry-run", "--json")) == {
        "dry_run": True, "would_retry": 3}  # fmt: skip
    assert run("retry", "--type", "a", "--queue", q + "-done", "--dry-run") == (
        "would retry 0 tasks"
    )  # a finished task is not retried
    assert json.loads(run("retry", "--queue", q, "--status", "cancelled", "--json")) == {
        "retried": 3, "skipped": 0, "refused": []}  # fmt: skip
    assert all(tasks.get(t.id).status is TaskStatus.WAITING for t in a)
    assert tasks.get(done.id).status is TaskStatus.FINISHED

    line = refused(run_taskq(database_url, schema, "cancel"), 2)
    assert "give a task id, or choose the tasks to cancel with --queue" in line
    line = refused(run_taskq(database_url, schema, "retry", a[0].id, "--queue", q), 2)
    assert "not both" in line


def test_bulk_cancel_goes_through_every_page(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    from taskq.cli.tasks_cmd import BULK_PAGE

    q = f"pages-{uuid.uuid4().hex[:6]}"
    queuer.enqueue_many([taskq.TaskEnqueueRequest(q, "x") for _ in range(BULK_PAGE + 3)])
    out = ok(run_taskq(database_url, schema, "cancel", "--queue", q)).strip()
    assert out == f"cancelled {BULK_PAGE + 3} tasks"
    assert tasks.list(queue=q, status="waiting", limit=10) == []


def test_purge_dry_run_counts_what_would_go_and_deletes_nothing(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks,
    conn: psycopg.Connection[Any],
) -> None:  # fmt: skip
    q = f"purge-{uuid.uuid4().hex[:6]}"
    old, fresh = queuer.enqueue(queue=q, type="x"), queuer.enqueue(queue=q, type="x")
    tasks.cancel(old.id)
    tasks.cancel(fresh.id)
    conn.execute(f"UPDATE \"{schema}\".tasks SET finished_at = now() - interval '8 days' "
                 "WHERE id = %s", (old.id,))  # fmt: skip
    out = ok(run_taskq(database_url, schema, "purge", "--queue", q, "--dry-run"))
    assert out.strip() == "would purge 1 task"
    out = ok(run_taskq(database_url, schema, "purge", "--queue", q, "--older-than", "0s",
                       "--dry-run", "--json"))  # fmt: skip
    assert json.loads(out) == {"dry_run": True, "would_purge": 2}
    assert tasks.get(old.id).status is TaskStatus.CANCELLED
    assert json.loads(ok(run_taskq(database_url, schema, "purge", "--queue", q, "--json"))) == {
        "purged": 1}  # fmt: skip


# ---- output ---------------------------------------------------------------------------------


def test_json_on_every_command_that_prints_data(
    database_url: str, schema: str, queuer: taskq.Queuer
) -> None:
    q = f"json-{uuid.uuid4().hex[:6]}"

    def js(*args: str) -> Any:
        return json.loads(ok(run_taskq(database_url, schema, *args, "--json")))

    t = js("enqueue", q, "x")
    assert t["status"] == "waiting" and "lease" not in t
    assert [x["id"] for x in js("list", "--queue", q)] == [t["id"]]
    assert js("show", t["id"])["queue"] == q
    assert js("cancel", t["id"])["status"] == "cancelled"
    assert js("retry", t["id"])["status"] == "waiting"
    assert js("cancel", "--queue", q, "--dry-run") == {"dry_run": True, "would_cancel": 1}
    assert js("purge", "--queue", q) == {"purged": 0}
    assert isinstance(js("workers"), list)
    assert js("migrate")["schema"] == schema
    s = js("schedule", "add", q, "tick", "0 3 * * *")
    assert s["cron_schedule"] == "0 3 * * *" and s["next_run_at"].endswith("T03:00:00.000000+00:00")
    assert [x["type"] for x in js("schedule", "list", "--queue", q)] == ["tick"]
    assert js("schedule", "pause", q, "tick")["enabled"] is False
    assert js("schedule", "resume", q, "tick")["enabled"] is True
    assert js("schedule", "remove", q, "tick")["removed"] is True
    assert set(js("embedded", "status")) >= {"running", "data_dir", "url"}


def test_one_time_format_utc_or_local(database_url: str, schema: str, queuer: taskq.Queuer) -> None:
    q = f"times-{uuid.uuid4().hex[:6]}"
    t = queuer.enqueue(queue=q, type="x")
    created = t.created_at.astimezone(dt.UTC).isoformat(timespec="seconds")
    assert created in ok(run_taskq(database_url, schema, "list", "--queue", q))
    assert f"created:   {created}" in ok(run_taskq(database_url, schema, "show", t.id))
    kolkata = t.created_at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    local = ok(run_taskq(database_url, schema, "show", t.id, "--local", TZ="Asia/Kolkata"))
    assert f"created:   {kolkata.isoformat(timespec='seconds')}" in local
    shown = json.loads(ok(run_taskq(database_url, schema, "show", t.id, "--json", "--local",
                                    TZ="Asia/Kolkata")))  # fmt: skip
    assert shown["created_at"] == kolkata.isoformat(timespec="microseconds")


# ---- the embedded server ----------------------------------------------------------------------


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    from taskq.db.embedded import stop

    folder = Path(tempfile.mkdtemp(prefix="taskq-cli-embedded-"))
    try:
        yield folder / "data"
    finally:
        stop(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)


def test_embedded_status_and_stop(database_url: str, schema: str, embedded_dir: Path) -> None:
    from taskq.db.embedded import embedded_url

    def run(*args: str) -> str:
        return ok(run_taskq(database_url, schema, "embedded", *args, "--data-dir",
                            str(embedded_dir))).strip()  # fmt: skip

    assert run("status").startswith(f"not running, no data yet (it would go in {embedded_dir})")
    url = embedded_url(embedded_dir)
    status = json.loads(run("status", "--json"))
    assert status["running"] is True and status["url"] == url
    assert status["data_dir"] == str(embedded_dir)
    assert run("status").startswith(f"running, data in {embedded_dir}, URL {url}")
    assert run("stop") == f"stopped the embedded PostgreSQL (data in {embedded_dir})"
    assert run("status").startswith(f"not running, data in {embedded_dir}")
    assert run("stop").startswith("the embedded PostgreSQL was not running")
