"""examples/django_project: migrated with ``manage.py migrate``, served by
``manage.py runserver`` on a free loopback port and called over HTTP, its tasks run by
``manage.py taskq_worker``: the project has no taskq code beyond its settings."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from examples_support import (
    EXAMPLES,
    Proc,
    clean_env,
    drop_schemas,
    free_port,
    python,
    suffix,
)
from helpers import schema_role, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("django")

PROJECT = EXAMPLES / "django_project"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The project migrated, served and worked as its own role, whose search_path puts
    Django's tables in a schema of their own (as it would be set up behind PgBouncer)."""
    s = suffix()
    app_schema, taskq_schema = f"ex_django_{s}", f"tq_django_{s}"
    logs = tmp_path_factory.mktemp("django")
    procs: list[Proc] = []
    with schema_role(database_url, app_schema) as app_url:
        env = clean_env(DATABASE_URL=app_url, TASKQ_SCHEMA=taskq_schema)
        try:
            migrated = subprocess.run(python("manage.py", "migrate"), cwd=PROJECT, env=env,
                                      capture_output=True, text=True, timeout=120)  # fmt: skip
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            assert "Applying taskq.0001_taskq_tables... OK" in migrated.stdout
            port = free_port()
            server = Proc(python("manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"),
                          cwd=PROJECT, env=env, log=logs / "runserver.log")  # fmt: skip
            procs.append(server)
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(base) or not server.alive(), timeout=TIMEOUT, what="runserver")
            assert server.alive(), server.output()
            worker = Proc(python("manage.py", "taskq_worker", "--concurrency", "2",
                                 "--poll-interval", "0.5"),
                          cwd=PROJECT, env=env, log=logs / "worker.log")  # fmt: skip
            procs.append(worker)
            with httpx.Client(base_url=base, timeout=30) as client:
                yield {"client": client, "worker": worker, "schema": taskq_schema}
        finally:
            codes = [p.stop() for p in procs]
            drop_schemas(database_url, app_schema, taskq_schema)
    assert codes[1:] == [0], procs[1].output()[-3000:]  # the worker exits 0 on SIGTERM


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/orders/0", timeout=2).status_code == 404
    except httpx.HTTPError:
        return False


def result(client: Any, task_id: str) -> dict[str, Any]:
    def ended() -> Any:
        r = client.get(f"/tasks/{task_id}").json()
        return r if r.get("status") in ("SUCCESSFUL", "FAILED") else None

    found: dict[str, Any] = wait_for(ended, timeout=TIMEOUT, what=f"task {task_id}")
    return found


def test_a_view_enqueues_in_its_transaction_and_the_worker_runs_the_task(
    site: dict[str, Any],
) -> None:
    client = site["client"]
    email = f"{uuid.uuid4().hex[:6]}@example.com"
    placed = client.post("/orders", json={"email": email, "total_cents": 1250})
    assert placed.status_code == 201, placed.text
    ids = placed.json()
    done = result(client, ids["task"])
    assert done == {"status": "SUCCESSFUL", "return_value": {"order": ids["order"],
                    "sent_to": email}, "errors": [], "attempts": 1}  # fmt: skip
    assert client.get(f"/orders/{ids['order']}").json()["confirmed"] is True
    wait_for(lambda: f"To: {email}" in site["worker"].output(), timeout=TIMEOUT)


def test_a_rolled_back_view_leaves_no_order_and_no_task(site: dict[str, Any]) -> None:
    client = site["client"]
    refused = client.post("/orders", json={"email": "x@example.com", "total_cents": 5,
                                           "fail": True})  # fmt: skip
    assert refused.status_code == 409
    assert client.get(f"/tasks/{refused.json()['task']}").status_code == 404


def test_a_failing_task_reads_back_as_failed_with_its_exception(site: dict[str, Any]) -> None:
    client = site["client"]
    placed = client.post("/orders", json={"email": "zero@example.com", "total_cents": 0})
    done = result(client, placed.json()["task"])
    assert done["status"] == "FAILED"
    assert done["errors"] == ["shop.tasks.CardDeclined"]
    assert client.get(f"/orders/{placed.json()['order']}").json()["confirmed"] is False
