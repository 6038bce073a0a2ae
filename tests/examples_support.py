"""What the tests of examples/ share: processes with their output in a file, free
loopback ports, and schemas (an application's tables go to a schema of its own through
a role whose search_path it is: ``helpers.schema_role``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from helpers import POOLER_SETTINGS, ROOT
from psycopg import sql

EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_schemas(url: str, *names: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        for name in names:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def suffix() -> str:
    return uuid.uuid4().hex[:8]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without taskq's and the examples' settings (but the pooler's,
    POOLER_SETTINGS), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k in POOLER_SETTINGS
           or not k.startswith(("TASKQ_", "DATABASE_URL", "DJANGO_"))}  # fmt: skip
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A process whose output goes to a file (read it with ``output()``)."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._file,
                                  stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; the exit status (SIGKILL after ``timeout``: -9)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            code = self.p.wait()
        self._file.close()
        return code


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
