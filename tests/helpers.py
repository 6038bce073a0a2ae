"""Helpers shared by the tests (import from tests: ``from helpers import ...``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def handler_started(tasks: Any, task_id: str, timeout: float = 60.0) -> Any:
    """Wait until the handler of ``task_id`` runs (the test app's ``nap`` reports
    progress "started" first). A task's ``running`` status alone is not enough: the
    worker claims it a moment before a slot starts its handler, and a worker stopped in
    that moment gives the task back unstarted."""
    return wait_for(lambda: tasks.get(task_id).progress == "started", timeout=timeout,
                    what=f"the handler of task {task_id} to start")  # fmt: skip


POOLER_SETTINGS = ("TASKQ_POOLER", "TASKQ_LISTEN_URL")
"""What a deployment behind a transaction pooler sets for every process (the pooler
leg, tests/pooler_leg.py, sets them): a test that gives a process a clean environment
keeps these."""


def direct_url(url: str) -> str:
    """A URL that reaches the server itself, for what only a session can do (LISTEN):
    the test server's own behind the pooler leg (tests/pooler_leg.py), else ``url``."""
    return os.environ.get("TASKQ_TEST_DIRECT_URL") or url


def pooler_clients() -> list[dict[str, Any]] | None:
    """Behind the pooler leg, PgBouncer's client connections (``SHOW CLIENTS``: port,
    application_name...); else None. Behind a pooler, the connections a process opens
    are these: the server's backends are the pooler's, lent to one client after another
    and named after whichever used them last."""
    admin = os.environ.get("TASKQ_TEST_POOLER_ADMIN_URL")
    if not admin:
        return None
    with psycopg.connect(admin, autocommit=True) as c:
        cur = psycopg.ClientCursor(c)  # the admin console speaks only the simple protocol
        cur.execute("SHOW CLIENTS")
        assert cur.description is not None
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def open_connections(url: str, application_name: str) -> int:
    """How many connections named ``application_name`` are open: the server's sessions,
    or behind the pooler leg PgBouncer's clients (``pooler_clients``)."""
    clients = pooler_clients()
    if clients is not None:
        return sum(1 for c in clients if c["application_name"] == application_name)
    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchone()
    return int(row[0]) if row else -1


@contextmanager
def schema_role(url: str, schema: str) -> Iterator[str]:
    """A login role whose tables go to a schema of their own; yields its URL.

    The role owns the new schema ``schema`` and has it as its ``search_path`` by
    ``ALTER ROLE ... SET search_path``, which the server applies when a session starts:
    this holds through PgBouncer in transaction mode, where every server connection of
    the role's pool starts that way, while a startup parameter (``options=-c
    search_path=...`` in the URL) is refused by PgBouncer and a ``SET`` would stay on
    whichever server connection ran it. The role may create schemas in the database
    (``GRANT CREATE``), so it can run taskq's migrations and own taskq's schema, as an
    application's role does. On the way out the role is dropped with all it owns.
    """
    from support.roles import Roles

    with Roles(url) as roles:
        role = roles.create("app")  # behind the pooler leg, PgBouncer learns it too
        with psycopg.connect(url, autocommit=True) as c:
            name = sql.Identifier(role.name)
            c.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), name)
            )
            c.execute(
                sql.SQL("ALTER ROLE {} SET search_path = {}").format(name, sql.Identifier(schema))
            )
            c.execute(
                sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(c.info.dbname), name
                )
            )
        yield role.url


def taskq_env(url: str, schema: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TASKQ_DATABASE_URL=url, TASKQ_SCHEMA=schema, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def taskq_cmd(*args: str) -> list[str]:
    """The ``taskq`` command line, run with this interpreter."""
    return [sys.executable, "-m", "taskq.cli", *args]


def run_taskq(
    url: str, schema: str, *args: str, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        taskq_cmd(*args),
        env=taskq_env(url, schema, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Workers:
    """Starts worker subprocesses and makes sure none outlives the test."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: dict[int, Any] = {}

    def start(self, *args: str, queue: str | None = None) -> subprocess.Popen[str]:
        cmd = ["worker", "taskq_test_app:registry", "--rescue-interval", "0.5",
               "--poll-interval", "0.5", *args]  # fmt: skip
        if queue:
            cmd += ["--queue", queue]
        return self.start_command(*cmd)

    def start_command(self, *cmd: str) -> subprocess.Popen[str]:
        """Start ``taskq CMD...`` (a scheduler, say) under the same care as a worker."""
        # Output goes to a file: a pipe nobody reads would fill up and block the worker.
        log = tempfile.TemporaryFile("w+")
        p = subprocess.Popen(
            taskq_cmd(*cmd),
            env=taskq_env(self.url, self.schema),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def output(self, p: subprocess.Popen[str]) -> str:
        log = self.logs[p.pid]
        log.seek(0)
        text: str = log.read()
        return text

    def stop(self, p: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=timeout)
        return p.returncode, self.output(p)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in self.logs.values():
            log.close()
