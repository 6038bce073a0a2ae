"""`taskq scheduler` and `taskq schedule ...`, run for real as subprocesses."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import psycopg
import pytest
from helpers import run_taskq, taskq_cmd, taskq_env, wait_for
from psycopg import sql

import taskq


class Procs:
    """Starts taskq subprocesses (output in a file) and kills any a test leaves behind."""

    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema
        self.procs: list[tuple[subprocess.Popen[str], IO[str]]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        log = tempfile.TemporaryFile("w+")
        p = subprocess.Popen(
            taskq_cmd(*args), env=taskq_env(self.url, self.schema),
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.procs.append((p, log))
        return p

    def output(self, p: subprocess.Popen[str]) -> str:
        log = next(f for q, f in self.procs if q is p)
        log.seek(0)
        return log.read()

    def stop(self, p: subprocess.Popen[str], timeout: float = 20) -> int:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ignored SIGTERM for {timeout}s:\n{self.output(p)}")

    def close(self) -> None:
        for p, log in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()


@pytest.fixture
def procs(database_url: str, schema: str) -> Iterator[Procs]:
    p = Procs(database_url, schema)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _no_schedules_left(database_url: str, schema: str) -> Iterator[None]:
    yield
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "schedules")))


def scheduled(conn: psycopg.Connection[Any], schema: str, queue: str) -> list[tuple[Any, ...]]:
    """(run_at, schedule_id, status) of the queue's tasks, by run_at."""
    return conn.execute(
        sql.SQL(
            "SELECT run_at, schedule_id, status FROM {} WHERE queue = %s ORDER BY run_at"
        ).format(sql.Identifier(schema, "tasks")),
        (queue,),
    ).fetchall()


def test_schedulers_fire_exactly_one_task_per_tick_and_exit_0_on_sigterm(
    procs: Procs, database_url: str, schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    with taskq.Scheduler(database_url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest(queue_name, "tick", "* * * * * *"))
    running = [procs.start("scheduler", "--rescue-interval", "0.5") for _ in range(3)]
    wait_for(lambda: len(scheduled(conn, schema, queue_name)) >= 5, timeout=30, what="5 ticks")
    for p in running:
        assert procs.stop(p) == 0, procs.output(p)
    rows = scheduled(conn, schema, queue_name)
    ticks = [r[0] for r in rows]
    assert max(Counter(ticks).values()) == 1, Counter(ticks).most_common(3)
    # one per second, with none missing between the first and the last
    assert [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)] == [1.0] * (
        len(ticks) - 1
    )
    assert all(r[0].microsecond == 0 for r in rows)
    for p in running:
        assert "Traceback" not in procs.output(p), procs.output(p)


def test_schedule_add_then_scheduler_produces_tasks_a_worker_runs(
    procs: Procs, database_url: str, schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    r = run_taskq(database_url, schema, "schedule", "add", queue_name, "echo", "* * * * * *",
                  "--spec", '{"from": "cron"}')  # fmt: skip
    assert r.returncode == 0, r.stderr
    schedule_id = r.stdout.split()[0]
    scheduler = procs.start("scheduler")
    worker = procs.start("worker", "taskq_test_app:registry", "--queue", queue_name)

    def finished() -> list[tuple[Any, ...]] | None:
        rows = [row for row in scheduled(conn, schema, queue_name) if row[2] == "finished"]
        return rows if len(rows) >= 2 else None

    done = wait_for(finished, timeout=40, what="scheduled tasks run by the worker")
    assert {str(row[1]) for row in done} == {schedule_id}
    with taskq.Tasks(database_url, schema=schema) as tasks:
        task = tasks.list(queue=queue_name, status="finished", limit=1)[0]
        assert task.result["spec"] == {"from": "cron"}
    assert procs.stop(scheduler) == 0 and procs.stop(worker) == 0


def test_schedule_commands_round_trip(database_url: str, schema: str, queue_name: str) -> None:
    def taskq_(*args: str) -> subprocess.CompletedProcess[str]:
        r = run_taskq(database_url, schema, *args)
        assert r.returncode == 0, (args, r.stderr)
        return r

    taskq_("schedule", "add", queue_name, "report", "30 2 * * *", "--timezone",
           "Europe/Berlin", "--spec", '{"a": 1}', "--skip-missed")  # fmt: skip
    listed = json.loads(taskq_("schedule", "list", "--queue", queue_name, "--json").stdout)
    assert [(x["type"], x["cron_schedule"], x["timezone"], x["spec"], x["skip_missed"],
             x["enabled"]) for x in listed] == [
        ("report", "30 2 * * *", "Europe/Berlin", {"a": 1}, True, True)
    ]  # fmt: skip
    taskq_("schedule", "pause", queue_name, "report")
    text = taskq_("schedule", "list", "--queue", queue_name).stdout
    assert "paused" in text and "Europe/Berlin" in text and "30 2 * * *" in text
    taskq_("schedule", "resume", queue_name, "report")
    taskq_("schedule", "remove", queue_name, "report")
    assert json.loads(taskq_("schedule", "list", "--queue", queue_name, "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("schedule", "add", "q", "t", "61 * * * *"), "minute field '61'"),
        (
            ("schedule", "add", "q", "t", "* * * * *", "--timezone", "Mars/Olympus"),
            "'Mars/Olympus'",
        ),
        (("schedule", "add", "q", "t", "* * * * *", "--spec", "{"), "--spec is not valid JSON"),
        (("schedule", "add", "q", "t", "* * * * *", "--references", '{"nope": 1}'), "'nope'"),
        (("schedule", "remove", "q", "nothing"), "no schedule for queue 'q', type 'nothing'"),
        (("schedule", "add", "q"), "required"),
        (("scheduler", "--metrics-port", "70000"), "--metrics-port"),
        (("scheduler", "--retention", "soon"), "duration"),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit(
    database_url: str, schema: str, args: tuple[str, ...], text: str
) -> None:
    r = run_taskq(database_url, schema, *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert text in r.stderr


def test_scheduler_refuses_an_unmigrated_schema(database_url: str) -> None:
    r = run_taskq(database_url, "never_migrated_x", "scheduler")
    assert r.returncode != 0 and "taskq migrate" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_and_healthz(
    procs: Procs, database_url: str, schema: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    with taskq.Scheduler(database_url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest(queue_name, "m", "* * * * * *"))
    port = _free_port()
    p = procs.start("scheduler", "--metrics-port", str(port))
    wait_for(lambda: len(scheduled(conn, schema, queue_name)) >= 2, timeout=30, what="ticks")
    line = f'taskq_scheduler_schedules_total{{queue="{queue_name}",type="m"}}'

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                body: str = r.read().decode()
        except OSError:
            return None
        return body if line in body else None

    body = wait_for(scrape, timeout=30, what="the scheduler's metrics")
    value = float(next(x for x in body.splitlines() if x.startswith(line)).split()[-1])
    assert value >= 1
    assert "taskq_scheduler_errors_total" in body
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.status == 200
    assert procs.stop(p) == 0


def test_sigterm_exits_0_even_while_the_database_is_unreachable(procs: Procs) -> None:
    procs.url = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens there
    p = procs.start("scheduler")
    wait_for(lambda: "scheduler started" in procs.output(p), timeout=30, what="start")
    assert procs.stop(p) == 0, procs.output(p)
    assert "Traceback" not in procs.output(p)
