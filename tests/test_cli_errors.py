"""The command line never shows a traceback (contract §5): each way a command used to
fail with one, run as a real process, now gets one line on stderr, a non-zero exit
status, and never a password."""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers import run_taskq, taskq_cmd, taskq_env

import taskq

# The subject is the command line; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")

SECRET = "pw-" + uuid.uuid4().hex[:12]


def one_line(r: subprocess.CompletedProcess[str], status: int | None = None) -> str:
    """The one line a failed command wrote on stderr (after checking it failed so)."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.returncode != 0, (r.stdout, r.stderr)
    if status is not None:
        assert r.returncode == status, (r.returncode, r.stderr)
    assert lines[0].startswith("taskq: "), lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Every command that needs a database, with arguments that are otherwise fine.
DB_COMMANDS = [
    ["list"], ["migrate"], ["enqueue", "q", "t"], ["show", "abcdef12"], ["cancel", "--queue", "q"],
    ["retry", "--queue", "q"], ["purge", "--dry-run"], ["workers"],
    ["worker", "taskq_test_app:registry"], ["scheduler"], ["schedule", "list"],
    ["bench", "--quick"], ["demo"],
]  # fmt: skip


@pytest.mark.parametrize("args", DB_COMMANDS, ids=lambda a: a[0])
def test_a_mysql_url_is_one_line_without_its_password_on_every_command(
    schema: str, args: list[str]
) -> None:
    r = run_taskq(f"mysql://app:{SECRET}@db.example/jobs", schema, *args)
    line = one_line(r, status=2)
    assert "TASKQ_DATABASE_URL" in line and "scheme 'mysql'" in line, line
    assert SECRET not in r.stderr + r.stdout


@pytest.mark.parametrize("args", [["list"], ["migrate"], ["worker", "taskq_test_app:registry"]],
                         ids=lambda a: a[0])  # fmt: skip
def test_a_url_that_is_not_a_url_is_one_line(schema: str, args: list[str]) -> None:
    line = one_line(run_taskq("notaurl", schema, *args), status=2)
    assert "not a PostgreSQL URL" in line


def test_a_bad_database_url_option_is_one_line_and_names_the_option(
    database_url: str, schema: str
) -> None:
    r = run_taskq(database_url, schema, "list", "--database-url", f"mysql://a:{SECRET}@h/d")
    line = one_line(r, status=2)
    assert line.startswith("taskq: --database-url: ") and SECRET not in r.stderr


def test_the_sqlalchemy_form_of_the_url_is_accepted(database_url: str, schema: str) -> None:
    scheme, rest = database_url.split("://", 1)
    assert scheme in ("postgresql", "postgres")
    url = f"postgresql+psycopg://{rest}"
    for args in (["migrate"], ["list"], ["enqueue", "q", "sqlalchemy.form"]):
        r = run_taskq(url, schema, *args)
        assert r.returncode == 0, r.stderr
    r = run_taskq(database_url, schema, "list", "--database-url", url, "--type", "sqlalchemy.form")
    assert r.returncode == 0 and "sqlalchemy.form" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "args",
    [["list"], ["show", "abcdef12"], ["enqueue", "q", "t"], ["workers"], ["schedule", "list"],
     ["cancel", "--queue", "q"], ["purge", "--dry-run"]],
    ids=lambda a: a[0],
)  # fmt: skip
def test_an_unmigrated_schema_says_run_migrate(database_url: str, args: list[str]) -> None:
    line = one_line(run_taskq(database_url, "never_migrated_cli", *args), status=1)
    assert "schema 'never_migrated_cli'" in line and "run `taskq migrate`" in line, line


def test_show_follow_timing_out_is_one_line_with_its_own_status(
    database_url: str, schema: str, queuer: taskq.Queuer
) -> None:
    t = queuer.enqueue(queue=f"unserved-{uuid.uuid4().hex[:6]}", type="x")
    r = run_taskq(database_url, schema, "show", t.id, "--follow", "--timeout", "0.5")
    line = one_line(r, status=124)
    assert f"task {t.id} did not end within 0.5s (it is waiting)" in line
    assert r.stdout.splitlines()[0].split() == ["waiting"]  # the snapshot it saw
    line = one_line(run_taskq(database_url, schema, "show", t.id, "--timeout", "1"), status=2)
    assert "--timeout applies only with --follow" in line


def test_migrate_against_an_unreachable_server_is_one_masked_line(schema: str) -> None:
    port = free_port()
    url = f"postgresql://someone:{SECRET}@127.0.0.1:{port}/nothing"
    for args in (["migrate"], ["list"]):
        r = run_taskq(url, schema, *args, timeout=120)
        line = one_line(r, status=1)
        assert f"cannot reach the database at 127.0.0.1:{port}/nothing" in line, line
        assert SECRET not in r.stderr + r.stdout


@pytest.mark.parametrize("command", [["worker", "taskq_test_app:registry"], ["scheduler"]],
                         ids=lambda a: a[0])  # fmt: skip
def test_a_metrics_port_out_of_range_or_in_use_is_one_line(
    database_url: str, schema: str, command: list[str]
) -> None:
    for bad in ("99999", "0", "http"):
        line = one_line(run_taskq(database_url, schema, *command, "--metrics-port", bad), 2)
        assert "--metrics-port" in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_taskq(database_url, schema, *command, "--metrics-port", str(port))
    line = one_line(r, status=1)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line, line


def test_retry_when_another_task_holds_the_unique_key_is_one_line(
    database_url: str, schema: str, queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    key = f"nightly-{uuid.uuid4().hex[:6]}"
    first = queuer.enqueue(queue="reports", type="r", unique_key=key)
    tasks.cancel(first.id)
    queuer.enqueue(queue="reports", type="r", unique_key=key)
    r = run_taskq(database_url, schema, "retry", first.id)
    line = one_line(r, status=1)
    assert f"task {first.id} (queue 'reports') cannot go back to waiting" in line, line
    assert repr(key) in line
    assert tasks.get(first.id).status is taskq.TaskStatus.CANCELLED


def test_retry_refused_for_its_unique_key_leaves_a_callers_transaction_usable(
    database_url: str, schema: str, queuer: taskq.Queuer
) -> None:
    key = f"k-{uuid.uuid4().hex[:6]}"
    first = queuer.enqueue(queue="q", type="r", unique_key=key)
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            mine = taskq.Tasks(conn, schema=schema)
            mine.cancel(first.id)
            taskq.Queuer(conn, schema=schema).enqueue(queue="q", type="r", unique_key=key)
            with pytest.raises(taskq.TaskAlreadyExists) as e:
                mine.retry(first.id)
            assert (e.value.queue, e.value.unique_key, e.value.task_id) == ("q", key, first.id)
            assert mine.get(first.id).status is taskq.TaskStatus.CANCELLED  # still usable


def test_a_registry_module_that_fails_to_import_is_one_line(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    (tmp_path / "broken_app.py").write_text("x = 1\nraise RuntimeError('no config file')\n")
    r = subprocess.run(
        taskq_cmd("worker", "broken_app:registry"), cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env=taskq_env(database_url, schema),
    )  # fmt: skip
    line = one_line(r, status=1)
    assert "importing 'broken_app' failed: RuntimeError: no config file" in line
    assert "broken_app.py:2" in line
