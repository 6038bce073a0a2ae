"""Run as root, the embedded server runs as a system user created on first use: servers
started at the same moment on a fresh machine (pytest-xdist workers, `make test`) must
all end up with one user, or a data folder is owned by a user id that no longer exists
and initdb fails."""

from __future__ import annotations

import multiprocessing as mp
import os
import pwd
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from taskq.db import embedded

pytestmark = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="creating the embedded server's system user happens only as root with useradd",
)


def _create(name: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    embedded._system_user(name)
    out.put(pwd.getpwnam(name).pw_uid)


def test_processes_starting_at_once_create_one_system_user() -> None:
    name = "tq" + uuid.uuid4().hex[:10]
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(name, barrier, out)) for _ in range(4)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        seen = {out.get(timeout=5) for _ in procs}
        assert seen == {pwd.getpwnam(name).pw_uid}  # every process saw the final user
    finally:
        subprocess.run(["userdel", name], capture_output=True)
