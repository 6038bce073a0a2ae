"""examples/fastapi_app, served by a real uvicorn process on a free loopback port and
called over HTTP, with a real ``taskq worker`` running its tasks."""

from __future__ import annotations

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

import taskq

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

APP = EXAMPLES / "fastapi_app"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The app served as its own role, whose search_path puts the app's tables in a
    schema of their own (as it would be set up behind PgBouncer), and a worker."""
    s = suffix()
    app_schema, taskq_schema = f"ex_fastapi_{s}", f"tq_fastapi_{s}"
    logs = tmp_path_factory.mktemp("fastapi")
    with schema_role(database_url, app_schema) as app_url:
        env = clean_env(DATABASE_URL=app_url, TASKQ_DATABASE_URL=database_url,
                        TASKQ_SCHEMA=taskq_schema)  # fmt: skip
        port = free_port()
        server = Proc(
            python("-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)),
            cwd=APP, env=env, log=logs / "uvicorn.log",
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        procs = [server]
        try:
            wait_for(lambda: _up(base) or not server.alive(), timeout=TIMEOUT, what="uvicorn")
            assert server.alive(), server.output()
            worker = Proc(python("-m", "taskq.cli", "worker", "tasks:registry", "--queue",
                                 "orders", "--poll-interval", "0.5"),
                          cwd=APP, env=env, log=logs / "worker.log")  # fmt: skip
            procs.append(worker)
            with httpx.Client(base_url=base, timeout=30) as client:
                yield {"client": client, "schema": taskq_schema, "server": server,
                       "worker": worker}  # fmt: skip
        finally:
            codes = [p.stop() for p in procs]
            drop_schemas(database_url, app_schema, taskq_schema)
    # uvicorn re-raises the SIGTERM it handled once shut down: -15 after a clean stop.
    assert "Application shutdown complete" in server.output(), server.output()[-2000:]
    assert codes[1:] == [0] * (len(procs) - 1), [p.output()[-2000:] for p in procs[1:]]


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_order_and_its_task_commit_together_and_progress_shows(
    service: dict[str, Any], database_url: str
) -> None:
    client = service["client"]
    email = f"{uuid.uuid4().hex[:6]}@example.com"
    placed = client.post("/orders", json={"email": email, "items": 3, "seconds_per_item": 0.5})
    assert placed.status_code == 201, placed.text
    ids = placed.json()
    assert client.get(f"/orders/{ids['order_id']}").json()["status"] == "placed"

    seen: list[dict[str, Any]] = []

    def ended() -> bool:
        snapshot = client.get(f"/tasks/{ids['task_id']}").json()
        seen.append(snapshot)
        return snapshot["status"] in ("finished", "failed")

    wait_for(ended, timeout=TIMEOUT, what="the packing task to end")
    last = seen[-1]
    assert last["status"] == "finished", last
    assert last["result"] == {"order_id": ids["order_id"], "packed": 3}
    assert last["percent"] == 1.0 and last["progress"]["step"] == 3
    midway = [s for s in seen if s["status"] == "running" and s["percent"] is not None]
    assert midway and all(0 < s["percent"] <= 1 for s in midway)
    assert midway[0]["progress"]["status"].startswith("packing item")
    assert client.get(f"/orders/{ids['order_id']}").json()["status"] == "packed"


def test_a_refused_order_leaves_no_task_behind(service: dict[str, Any], database_url: str) -> None:
    client = service["client"]
    email = f"{uuid.uuid4().hex[:6]}@example.com"
    with taskq.Tasks(database_url, schema=service["schema"]) as tasks:
        before = len(tasks.list(limit=1000))
        big = client.post("/orders", json={"email": email, "items": 60})
        assert big.status_code == 409, big.text
        assert big.json()["detail"] == "only 50 items in stock"
        assert len(tasks.list(limit=1000)) == before  # enqueued, then rolled back

        assert client.post("/orders", json={"email": email, "items": 1}).status_code == 201
        again = client.post("/orders", json={"email": email, "items": 1})
        assert again.status_code == 409 and "exists already" in again.json()["detail"]
        assert len(tasks.list(limit=1000)) == before + 1


def test_bad_input_and_unknown_tasks(service: dict[str, Any]) -> None:
    client = service["client"]
    assert client.post("/orders", json={"email": "a@b.c", "items": 0}).status_code == 422
    assert client.get(f"/tasks/{uuid.uuid4()}").status_code == 404
    assert client.get("/tasks/not-a-task").status_code == 404
    assert client.get("/orders/999999").status_code == 404


def test_the_readme_snippet_is_the_apps_code() -> None:
    """examples/README-fastapi.md shows the app's own endpoints, not a paraphrase."""
    readme = (EXAMPLES / "README-fastapi.md").read_text()
    app = (APP / "app.py").read_text()
    for needle in ("async def lifespan(app: FastAPI)", "def joined(queuer: AsyncQueuer",
                   "async def place_order(", "async def task_status("):  # fmt: skip
        assert needle in readme and needle in app, needle
