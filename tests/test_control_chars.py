"""A task cannot drive an operator's terminal: control characters in its queue, type,
title, error or progress message reach neither `taskq list`/`taskq show`/`taskq
schedule list` output nor a worker's text log raw; they are escaped (``\\x1b``) by one
shared function, while --json and JSON logs stay exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import ROOT, run_taskq, taskq_cmd, taskq_env, wait_for

import taskq
from taskq.cli.output import table
from taskq.core.text import printable
from taskq.ops.logs import TextFormatter

pytestmark = pytest.mark.faces("sync")

EVIL = "\x1b[31mred\x1b]0;owned\x07\r\x7f\x9b2J\u202e"
RAW = ("\x1b", "\r", "\x07", "\x7f", "\x9b", "\u202e")


def assert_clean(text: str) -> None:
    for c in RAW:
        assert c not in text, (c, text)


def test_printable_escapes_c0_del_c1_and_other_non_printables_and_keeps_the_rest() -> None:
    assert printable("plain text, ünïcödé 漢字") == "plain text, ünïcödé 漢字"
    assert printable("\x1b[31m") == "\\x1b[31m"
    assert printable("a\r\nb\tc") == "a\\r\\nb\\tc"
    assert printable("\x00\x7f\x80\x9b\x9f") == "\\x00\\x7f\\x80\\x9b\\x9f"
    assert printable("\u202e\u2028") == "\\u202e\\u2028"
    assert printable("\U000e0001") == "\\U000e0001"
    assert_clean(table(("A",), [(EVIL,)]))


def enqueue_evil(url: str, schema: str) -> tuple[str, str]:
    queue = f"q{uuid.uuid4().hex[:6]}\x1b[1m"
    with taskq.Queuer(url, schema=schema) as q, taskq.Dequeuer(url, schema=schema) as d:
        task = q.enqueue(queue=queue, type=f"t{EVIL}", title=f"title {EVIL}")
        claimed = d.dequeue(queue, timeout=10)
        assert claimed is not None and claimed.id == task.id
        d.heartbeat(claimed, {"percent": 0.5, "status": f"half {EVIL}"})
        d.fail(claimed, {"percent": 0.5, "status": f"half {EVIL}"}, error=f"error {EVIL}")
    return task.id, queue


def test_list_and_show_escape_control_characters(database_url: str, schema: str) -> None:
    task_id, queue = enqueue_evil(database_url, schema)
    listed = run_taskq(database_url, schema, "list")
    assert listed.returncode == 0, listed.stderr
    assert task_id in listed.stdout
    assert_clean(listed.stdout)
    assert "\\x1b[31mred" in listed.stdout  # escaped, still legible
    shown = run_taskq(database_url, schema, "show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert_clean(shown.stdout)
    for part in ("error \\x1b[31mred", "title \\x1b[31mred", "half \\x1b[31mred", "\\x9b2J"):
        assert part in shown.stdout, shown.stdout
    filtered = run_taskq(database_url, schema, "list", "--queue", queue)
    assert task_id in filtered.stdout
    assert_clean(filtered.stdout)


def test_json_output_keeps_the_strings_exact(database_url: str, schema: str) -> None:
    task_id, _ = enqueue_evil(database_url, schema)
    shown = run_taskq(database_url, schema, "show", task_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout  # JSON escapes it
    data = json.loads(shown.stdout)
    assert data["error"] == f"error {EVIL}" and data["title"] == f"title {EVIL}"


def test_schedule_list_and_error_messages_escape_control_characters(
    database_url: str, schema: str
) -> None:
    with taskq.Scheduler(database_url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest(f"q{EVIL}", f"t{EVIL}", "* * * * *"))
    listed = run_taskq(database_url, schema, "schedule", "list")
    assert listed.returncode == 0, listed.stderr
    assert "\\x1b[31mred" in listed.stdout
    assert_clean(listed.stdout)
    refused = run_taskq(database_url, schema, "enqueue", "q", f"t{'x' * 300}\x1b[2J")
    assert refused.returncode != 0
    assert_clean(refused.stderr)


APP = """
import taskq

registry = taskq.Registry()


@registry.task("evil\\x1b[31m")
def evil(ctx):
    raise RuntimeError(ctx.spec["message"])
"""


def test_a_workers_text_log_escapes_a_failing_tasks_type_and_error(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    (tmp_path / "evilapp.py").write_text(APP)
    queue = f"evil-{uuid.uuid4().hex[:6]}"
    env = taskq_env(database_url, schema,
                    PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "tests")]))  # fmt: skip
    err = tmp_path / "worker.stderr"
    with err.open("w") as out:
        proc = subprocess.Popen(
            taskq_cmd("worker", "evilapp:registry", "--queue", queue, "--log-format", "text"),
            env=env, cwd=tmp_path, stdout=out, stderr=out, text=True,
        )  # fmt: skip
    try:
        with (
            taskq.Queuer(database_url, schema=schema) as q,
            taskq.Tasks(database_url, schema=schema) as t,
        ):
            task = q.enqueue(queue=queue, type="evil\x1b[31m", spec={"message": f"bad {EVIL}"})
            done = t.wait(task.id, timeout=60)
            assert done.error is not None and "\x1b[31mred" in done.error  # stored exact
        wait_for(lambda: "task failed" in err.read_text(), what="the failure logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = err.read_text()
    line = next(ln for ln in text.splitlines() if "task failed" in ln)
    assert task.id in line
    assert_clean(text)
    assert "\\x1b[31m" in line or "\\u001b[31m" in line, line


def test_the_text_formatter_escapes_messages_values_and_tracebacks() -> None:
    import logging
    import sys

    try:
        raise RuntimeError(f"in traceback {EVIL}")
    except RuntimeError:
        exc = sys.exc_info()
    record = logging.LogRecord("taskq.events", logging.ERROR, __file__, 1, "msg %s", (EVIL,), exc)
    record.task_type = f"t{EVIL}"
    record.queue = "q\x1b[1m"
    line = TextFormatter().format(record)
    assert_clean(line)
    assert "queue=q\\x1b[1m" in line, line
    assert "in traceback \\x1b[31mred" in line
    assert line.count("\n") >= 2  # the traceback keeps its lines
