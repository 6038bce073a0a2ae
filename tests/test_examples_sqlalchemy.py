"""examples/sqlalchemy_service: its command line places orders (one rolled back) and
a real ``taskq worker service:registry`` renders their invoices."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples_support import (
    EXAMPLES,
    Proc,
    clean_env,
    drop_schemas,
    python,
    suffix,
)
from helpers import schema_role

import taskq

SERVICE = EXAMPLES / "sqlalchemy_service"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def env(database_url: str) -> Iterator[dict[str, str]]:
    """The service runs as its own role, whose search_path puts its table in a schema
    of its own (as it would be set up behind PgBouncer)."""
    s = suffix()
    app_schema, taskq_schema = f"ex_sa_{s}", f"tq_sa_{s}"
    with schema_role(database_url, app_schema) as app_url:
        yield clean_env(DATABASE_URL=app_url, TASKQ_DATABASE_URL=database_url,
                        TASKQ_SCHEMA=taskq_schema)  # fmt: skip
        drop_schemas(database_url, app_schema, taskq_schema)


def service(env: dict[str, str], *args: str) -> tuple[int, Any]:
    out = subprocess.run(python("service.py", *args), cwd=SERVICE, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    return out.returncode, json.loads(lines[-1]) if lines[-1].startswith("{") else lines[-1]


def test_orders_and_invoices_commit_together_and_the_worker_renders_them(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert service(env, "setup") == (0, "ready")
    assert service(env, "setup") == (0, "ready")  # idempotent

    code, placed = service(env, "place", "ada@example.com", "1250")
    assert code == 0, placed
    code, failed = service(env, "place", "bob@example.com", "990", "--fail")
    assert code == 1 and failed["rolled_back"] == "payment provider down"

    with taskq.Tasks(database_url, schema=env["TASKQ_SCHEMA"]) as tasks:
        assert tasks.get(placed["task_id"]).status == taskq.TaskStatus.WAITING
        with pytest.raises(taskq.TaskNotFound):
            tasks.get(failed["task_id"])  # rolled back with its order

        worker = Proc(python("-m", "taskq.cli", "worker", "service:registry", "--queue",
                             "invoices", "--poll-interval", "0.5"),
                      cwd=SERVICE, env=env, log=tmp_path / "worker.log")  # fmt: skip
        try:
            done = tasks.wait(placed["task_id"], timeout=TIMEOUT)
        finally:
            assert worker.stop() == 0, worker.output()
    assert done.status == taskq.TaskStatus.FINISHED, done.error
    invoice = f"INV-{placed['order_id']:06d}"
    assert done.result == {"order_id": placed["order_id"], "invoice": invoice}
    assert service(env, "show", str(placed["order_id"])) == (
        0, {"order_id": placed["order_id"], "invoice": invoice},
    )  # fmt: skip
    assert service(env, "show", str(placed["order_id"] + 1))[0] == 1  # never committed
