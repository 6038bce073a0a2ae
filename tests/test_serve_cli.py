"""`taskq token` and how `taskq serve` refuses to start."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import run_taskq, taskq_env


def test_token_create_list_revoke(database_url: str, fresh_schema: str) -> None:
    r = run_taskq(database_url, fresh_schema, "token", "create", "--name", "ci", "--scope", "write")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("taskq_") and len(r.stdout.splitlines()) == 1
    assert "shown only this once" in r.stderr
    again = run_taskq(
        database_url, fresh_schema, "token", "create", "--name", "ci", "--scope", "read"
    )
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    listed = json.loads(run_taskq(database_url, fresh_schema, "token", "list", "--json").stdout)
    assert [(t["name"], t["scope"]) for t in listed] == [("ci", "write")]
    assert token not in json.dumps(listed) and token.split("_")[2] not in json.dumps(listed)
    r = run_taskq(database_url, fresh_schema, "token", "revoke", "ci")
    assert r.returncode == 0 and "revoked" in r.stdout
    assert json.loads(run_taskq(database_url, fresh_schema, "token", "list", "--json").stdout) == []
    r = run_taskq(database_url, fresh_schema, "token", "list", "--all")
    assert "revoked" in r.stdout
    r = run_taskq(database_url, fresh_schema, "token", "revoke", "ci")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = run_taskq(database_url, fresh_schema, "token", "create", "--name", "x", "--scope", "root")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_a_new_token_splits_into_prefix_and_secret_on_underscores() -> None:
    from taskq.server.tokens import new_token, prefix_of

    for _ in range(2000):  # a secret once began with "_", so split("_")[2] was ""
        token, prefix = new_token()
        head, got_prefix, secret = token.split("_")
        assert (head, got_prefix) == ("taskq", prefix) and prefix_of(token) == prefix
        assert len(secret) == 43 and secret.isalnum() and secret.isascii()


def test_only_a_hash_of_the_token_is_stored(database_url: str, fresh_schema: str) -> None:
    import psycopg

    token = run_taskq(database_url, fresh_schema, "token", "create", "--name", "h",
                      "--scope", "read").stdout.strip()  # fmt: skip
    with psycopg.connect(database_url) as c:
        rows = c.execute(f'SELECT * FROM "{fresh_schema}".api_tokens').fetchall()  # noqa: S608
    assert len(rows) == 1 and token not in repr(rows) and token.split("_")[2] not in repr(rows)


def test_serve_refuses_a_public_address_without_a_token(
    database_url: str, fresh_schema: str
) -> None:
    r = run_taskq(database_url, fresh_schema, "serve", "--host", "0.0.0.0", "--port", "0",
                  timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "not a loopback address" in r.stderr
    assert "taskq token create" in r.stderr


def test_serve_without_the_server_extra_names_it(database_url: str, schema: str) -> None:
    code = ("import sys; sys.modules['fastapi'] = None; sys.argv = ['taskq', 'serve']; "
            "from taskq.cli import run; run()")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], env=taskq_env(database_url, schema),
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "taskq[server]" in r.stderr, r.stderr


def test_serve_on_a_busy_port_says_so(database_url: str, schema: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_taskq(database_url, schema, "serve", "--port", str(port), timeout=60)
    assert r.returncode == 1 and "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_help(database_url: str, schema: str) -> None:
    for cmd in (["serve"], ["token"], ["token", "create"]):
        r = run_taskq(database_url, schema, *cmd, "--help")
        assert r.returncode == 0 and "usage: taskq " + " ".join(cmd) in r.stdout


def test_the_wheel_ships_the_dashboard_and_the_sql(tmp_path: object) -> None:
    import pytest

    pytest.importorskip("hatchling")
    import zipfile
    from pathlib import Path

    from helpers import ROOT

    out = Path(str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(out)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("taskq_pg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = Path(ROOT) / "taskq" / "server"
    for folder in ("static", "templates"):
        for f in (package / folder).iterdir():
            assert f"taskq/server/{folder}/{f.name}" in names
    assert {"taskq/sql/tokens.sql", "taskq/sql/stats.sql",
            "taskq/_migrations/versions/0006_api_tokens.py"} <= names  # fmt: skip
