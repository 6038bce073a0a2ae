"""The `taskq` command line, run as a subprocess."""

from __future__ import annotations

import json
import socket

import pytest
from helpers import run_taskq

import taskq
from taskq import TaskStatus

# The subject is the command line; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")

COMMANDS = ["migrate", "worker", "enqueue", "list", "show", "cancel", "retry", "purge",
            "workers", "demo"]  # fmt: skip


def test_help_works_on_every_command(database_url: str, schema: str) -> None:
    r = run_taskq(database_url, schema, "--help")
    assert r.returncode == 0 and "COMMAND" in r.stdout
    for cmd in COMMANDS:
        r = run_taskq(database_url, schema, cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage: taskq " + cmd in r.stdout


def test_enqueue_list_show_cancel_retry(
    database_url: str, schema: str, tasks: taskq.Tasks, queue_name: str
) -> None:
    r = run_taskq(database_url, schema, "enqueue", queue_name, "cli.job", "--spec",
                  '{"n": 1}', "--title", "from the cli", "--user-id", "u-7")  # fmt: skip
    assert r.returncode == 0, r.stderr
    task_id = r.stdout.strip()
    t = tasks.get(task_id)
    assert (t.queue, t.type, t.spec, t.title, t.user_id) == (
        queue_name,
        "cli.job",
        {"n": 1},
        "from the cli",
        "u-7",
    )

    r = run_taskq(database_url, schema, "list", "--queue", queue_name)
    assert r.returncode == 0
    assert task_id in r.stdout and "from the cli" in r.stdout and "u-7" in r.stdout

    r = run_taskq(database_url, schema, "list", "--queue", queue_name, "--json")
    listed = json.loads(r.stdout)
    assert [x["id"] for x in listed] == [task_id] and listed[0]["status"] == "waiting"
    assert "lease" not in listed[0]

    r = run_taskq(database_url, schema, "show", task_id, "--json")
    assert json.loads(r.stdout)["title"] == "from the cli"

    r = run_taskq(database_url, schema, "cancel", task_id)
    assert r.returncode == 0 and "cancelled" in r.stdout
    assert tasks.get(task_id).status is TaskStatus.CANCELLED

    r = run_taskq(database_url, schema, "retry", task_id, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "waiting"
    back = tasks.get(task_id)
    assert back.status is TaskStatus.WAITING and back.attempts == 0


def test_purge_deletes_only_old_ended_tasks(
    database_url: str, schema: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer,
    tasks: taskq.Tasks, queue_name: str, conn: object,
) -> None:  # fmt: skip
    old = queuer.enqueue(queue=queue_name, type="x")
    claimed = dequeuer.dequeue(queue_name, timeout=5)
    assert claimed is not None and claimed.id == old.id
    dequeuer.finish(claimed)
    fresh = queuer.enqueue(queue=queue_name, type="x")
    tasks.cancel(fresh.id)
    waiting = queuer.enqueue(queue=queue_name, type="x")
    conn.execute(  # type: ignore[attr-defined]
        f"UPDATE \"{schema}\".tasks SET finished_at = now() - interval '10 days' "  # noqa: S608
        "WHERE id = %s",
        (old.id,),
    )
    r = run_taskq(database_url, schema, "purge", "--older-than", "7d", "--queue", queue_name)
    assert r.returncode == 0 and "purged 1 task" in r.stdout
    with pytest.raises(taskq.TaskNotFound):
        tasks.get(old.id)
    assert tasks.get(fresh.id).status is TaskStatus.CANCELLED
    assert tasks.get(waiting.id).status is TaskStatus.WAITING


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "q", "t", "--spec", "{not json"],
        ["enqueue", "", "t"],
        ["enqueue", "q", ""],
        ["enqueue", "q", "t", "--spec", '"a\\u0000b"'],
        ["show", "not-a-uuid"],
        ["show", "00000000-0000-4000-8000-000000000000"],
        ["cancel", "00000000-0000-4000-8000-000000000000"],
        ["list", "--status", "nonsense"],
        ["list", "--limit", "0"],
        ["purge", "--older-than", "soon"],
        ["no-such-command"],
    ],
)
def test_bad_input_is_one_line_and_nonzero(database_url: str, schema: str, args: list[str]) -> None:
    r = run_taskq(database_url, schema, *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_enqueue_stores_nothing(database_url: str, schema: str, tasks: taskq.Tasks) -> None:
    before = len(tasks.list(limit=1000))
    run_taskq(database_url, schema, "enqueue", "q", "t", "--spec", '"a\\u0000b"')
    run_taskq(database_url, schema, "enqueue", "", "t")
    assert len(tasks.list(limit=1000)) == before


def test_unreachable_database_names_the_host_and_never_the_password(schema: str) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://someone:s3cret-pw@127.0.0.1:{port}/nothing"
    r = run_taskq(url, schema, "list", timeout=120)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"127.0.0.1:{port}" in line and "cannot reach the database" in line
    assert "s3cret-pw" not in r.stderr + r.stdout


def test_migrate_is_idempotent(database_url: str, schema: str) -> None:
    for _ in range(2):
        r = run_taskq(database_url, schema, "migrate")
        assert r.returncode == 0, r.stderr
        assert f"migrated schema {schema}" in r.stdout
