"""Logs: one structured line per task state change, JSON or text by --log-format, and
neither spec contents nor database passwords in the output."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import taskq_test_app
from helpers import handler_started, taskq_cmd, taskq_env, wait_for

import taskq
from taskq import TaskEnqueueRequest, TaskStatus
from taskq.ops.logs import JsonFormatter, TextFormatter, redact

SECRET = "s3cr3t-" + uuid.uuid4().hex  # goes into specs; must never be logged


def record(msg: str, *args: object, **fields: Any) -> logging.LogRecord:
    r = logging.LogRecord("taskq.events", logging.INFO, __file__, 1, msg, args, None)
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def test_formatters_write_one_line_with_the_task_fields() -> None:
    fields = {"task_id": "7f0c", "queue": "my queue", "task_type": "email", "attempt": 2,
              "max_attempts": 3, "status": "waiting", "duration": 0.25,
              "error": 'line one\nline "two"'}  # fmt: skip
    line = JsonFormatter().format(record("task failed; will retry", **fields))
    assert "\n" not in line
    out = json.loads(line)
    assert out["logger"] == "taskq.events" and out["msg"] == "task failed; will retry"
    assert {k: out[k] for k in fields} == fields
    assert out["level"] == "info" and out["ts"].endswith("Z")

    line = TextFormatter().format(record("task failed; will retry", **fields))
    assert "\n" not in line
    assert "INFO taskq.events: task failed; will retry task_id=7f0c " in line
    assert 'queue="my queue" task_type=email attempt=2 max_attempts=3 status=waiting' in line
    assert 'duration=0.25 error="line one\\nline \\"two\\""' in line
    # A message with a line break stays on one line too.
    assert "\n" not in TextFormatter().format(record("refused: %s", "a\nb"))
    # Fields that are absent or None are left out.
    assert "error" not in json.loads(JsonFormatter().format(record("x", error=None)))


def test_passwords_are_masked_in_any_log_line() -> None:
    for text in (
        "cannot connect to postgresql://app:hunter2@db.internal:5432/jobs",
        "cannot connect to postgres://app:hunter2@db/jobs?sslmode=require",
        "dsn host=db user=app password=hunter2 dbname=jobs",
        "dsn host=db user=app password='hunter2 x' dbname=jobs",
    ):
        assert "hunter2" not in redact(text), text
        assert "hunter2" not in TextFormatter().format(record(text))
        line = JsonFormatter().format(record("%s", text, error=text))
        assert "hunter2" not in line
        json.loads(line)  # still valid JSON after masking
    assert redact("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert redact("postgresql://app:***@db/jobs") == "postgresql://app:***@db/jobs"


# ---- real worker processes ----------------------------------------------------------


class Worker:
    def __init__(self, url: str, schema: str, *args: str) -> None:
        self.log = tempfile.TemporaryFile("w+")
        cmd = ["worker", "taskq_test_app:registry", "--rescue-interval", "0.5",
               "--poll-interval", "0.5", *args]  # fmt: skip
        self.proc = subprocess.Popen(
            taskq_cmd(*cmd), env=taskq_env(url, schema), stdout=self.log,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def output(self) -> str:
        self.log.seek(0)
        text: str = self.log.read()
        return text

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def start_worker(database_url: str, schema: str) -> Iterator[Any]:
    started: list[Worker] = []

    def start(*args: str, url: str = database_url) -> Worker:
        w = Worker(url, schema, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    assert parts.hostname, "a URL with a host"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def run_a_mix_of_tasks(
    database_url: str, schema: str, worker: Worker, queue: str
) -> dict[str, taskq.Task]:
    """Finished, failed, retried-then-finished, rescued and released-at-shutdown tasks,
    all with SECRET in their specs; returns them by role after the worker exits."""
    q_stale = queue + "-stale"
    with taskq.Queuer(database_url, schema=schema, registry=taskq_test_app.registry) as queuer:
        ids = {
            "echo": queuer.enqueue(queue=queue, type="echo", spec={"api_key": SECRET}).id,
            "boom": queuer.enqueue(queue=queue, type="boom", spec={"api_key": SECRET}).id,
            "flaky": queuer.enqueue(
                queue=queue, type="flaky", spec={"succeed_on": 2, "api_key": SECRET}
            ).id,
        }
        stale = queuer.enqueue(
            TaskEnqueueRequest(q_stale, "echo", spec={"api_key": SECRET}, heartbeat_timeout=0.2)
        )
        ids["stale"] = stale.id
        with taskq.Dequeuer(database_url, schema=schema) as d:  # claimed, then abandoned
            assert d.dequeue(q_stale, timeout=10) is not None
    with taskq.Tasks(database_url, schema=schema) as tasks:
        for role in ("echo", "boom", "flaky", "stale"):
            tasks.wait(ids[role], timeout=60)
        with taskq.Queuer(database_url, schema=schema) as queuer:
            ids["sleepy"] = queuer.enqueue(queue=queue, type="nap", spec=60).id
        handler_started(tasks, ids["sleepy"])
        assert worker.stop() == 0, worker.output()
        return {role: tasks.get(i) for role, i in ids.items()}


def test_worker_json_logs_one_line_per_state_change_without_secrets(
    database_url: str, schema: str, start_worker: Any
) -> None:
    queue = f"logs-{uuid.uuid4().hex[:8]}"
    password = "hunter2-" + uuid.uuid4().hex[:8]
    url = database_url
    if os.environ.get("TASKQ_TEST_DATABASE_URL"):
        # The test server trusts local connections, so any password works.
        url = with_password(database_url, password)
    w = start_worker("--log-format", "json", "--grace", "0", "--queue", queue, url=url)
    tasks = run_a_mix_of_tasks(database_url, schema, w, queue)
    out = w.output()
    assert SECRET not in out
    assert password not in out

    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # all JSON
    events: dict[str, list[dict[str, Any]]] = {}
    for e in lines:
        if e["logger"] == "taskq.events":
            events.setdefault(e["task_id"], []).append(e)

    def story(role: str) -> list[tuple[str, str, int]]:
        return [(e["msg"], e["status"], e["attempt"]) for e in events[tasks[role].id]]

    assert story("echo") == [("task started", "running", 1), ("task finished", "finished", 1)]
    assert story("boom") == [("task started", "running", 1), ("task failed", "failed", 1)]
    assert story("flaky") == [
        ("task started", "running", 1), ("task failed; will retry", "waiting", 1),
        ("task started", "running", 2), ("task finished", "finished", 2),
    ]  # fmt: skip
    assert story("stale") == [("task rescued", "failed", 1)]
    assert story("sleepy") == [("task started", "running", 1), ("task released", "waiting", 1)]
    assert tasks["sleepy"].status is TaskStatus.WAITING and tasks["sleepy"].attempts == 0

    for role, t in tasks.items():
        for e in events[t.id]:
            assert e["queue"] == t.queue and e["task_type"] == t.type, (role, e)
            assert e["level"] in ("info", "warning") and e["ts"].endswith("Z")
            if e["msg"] in ("task finished", "task failed", "task failed; will retry"):
                assert isinstance(e["duration"], float) and e["duration"] >= 0, e
    ended = {e["msg"]: e for t in tasks.values() for e in events[t.id]}
    assert ended["task failed"]["error"] == "boom"
    assert ended["task failed; will retry"]["error"] == "flaky failure on attempt 1"
    assert ended["task rescued"]["error"].startswith("rescued: no heartbeat")
    assert "error" not in ended["task finished"]


def test_worker_text_logs_at_debug_level_without_secrets(
    database_url: str, schema: str, start_worker: Any
) -> None:
    queue = f"logs-{uuid.uuid4().hex[:8]}"
    w = start_worker("--log-level", "DEBUG", "--grace", "0", "--queue", queue)
    tasks = run_a_mix_of_tasks(database_url, schema, w, queue)
    out = w.output()
    assert SECRET not in out
    event_lines = [ln for ln in out.splitlines() if " taskq.events: " in ln]
    # started x5 (flaky twice), finished x2, failed, will retry, rescued, released
    assert len(event_lines) == 11, "\n".join(event_lines)
    echo = tasks["echo"]
    finished = [ln for ln in event_lines if f"task_id={echo.id}" in ln and "finished" in ln]
    assert len(finished) == 1
    assert f" INFO taskq.events: task finished task_id={echo.id} queue={queue} task_type=echo " \
        "attempt=1 max_attempts=1 status=finished duration=" in finished[0]  # fmt: skip
    boom = [ln for ln in event_lines if f"task_id={tasks['boom'].id}" in ln][-1]
    assert "task failed" in boom and "status=failed" in boom and "error=boom" in boom


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]  # closed again: nothing listens there
        return port


def http_get(port: int, path: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None


def test_no_password_in_logs_or_endpoints_when_the_database_is_unreachable(
    schema: str, start_worker: Any
) -> None:
    password = "hunter2-" + uuid.uuid4().hex[:8]
    url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/postgres"
    metrics_port = free_port()
    w = start_worker("--log-format", "json", "--log-level", "DEBUG",
                     "--metrics-port", str(metrics_port), url=url)  # fmt: skip
    # However the worker copes (it may wait for the database, serving /healthz, or give
    # up with a one-line error), whatever it says must not hold the password.
    said = wait_for(
        lambda: w.proc.poll() is not None or http_get(metrics_port, "/healthz"),
        timeout=60, what="the worker to exit or serve /healthz",
    )  # fmt: skip
    if isinstance(said, tuple):
        status, body = said
        assert status == 503 and "Connection refused" in body, body
        assert password not in body
        metrics = http_get(metrics_port, "/metrics")
        assert metrics is not None and "taskq_database_up 0.0" in metrics[1]
        assert password not in metrics[1]
        w.proc.kill()
        w.proc.wait()
    out = w.output()
    assert password not in out
    for line in out.splitlines():
        if line.strip() and not line.startswith("taskq: "):  # the CLI's one-line exit error
            json.loads(line)
    if w.proc.returncode not in (None, -9):
        assert out.startswith("taskq: cannot reach the database at 127.0.0.1:"), out
