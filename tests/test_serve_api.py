"""`taskq serve`: every route and status code of contract §8, against a real server
process, with real tokens of each scope."""

from __future__ import annotations

import datetime as dt
import http.client
import uuid
from collections.abc import Iterator

import pytest
from helpers import run_taskq, wait_for
from support.serve import Server, make_token

import taskq
from taskq.core.errors import TaskqError

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(database_url: str, schema: str) -> Iterator[Server]:
    s = Server(database_url, schema)
    yield s
    assert s.stop() == 0
    assert not any("Traceback" in line for line in s.stderr), "".join(s.stderr)


@pytest.fixture(scope="module")
def read(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "read")


@pytest.fixture(scope="module")
def write(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "write")


@pytest.fixture(scope="module")
def admin(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "admin")


def error_of(reply: object) -> tuple[str, str]:
    body = reply.json  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"], body["error"]["message"]


def python_refusal(database_url: str, schema: str, **fields: object) -> str:
    """The message the Python API gives for this enqueue request."""
    with taskq.Queuer(database_url, schema=schema) as q:
        with pytest.raises((ValueError, TypeError, TaskqError)) as e:
            q.enqueue(**fields)
    return str(e.value)


def test_openapi_document_comes_from_the_code(server: Server) -> None:
    r = server.request("GET", "/api/v1/openapi.json")
    assert r.status == 200
    doc = r.json
    paths = doc["paths"]
    for path, methods in {
        "/api/v1/tasks": {"get", "post"}, "/api/v1/tasks/{task_id}": {"get"},
        "/api/v1/tasks/{task_id}/cancel": {"post"}, "/api/v1/tasks/{task_id}/retry": {"post"},
        "/api/v1/tasks/{task_id}/wait": {"get"}, "/api/v1/tasks/{task_id}/events": {"get"},
        "/api/v1/queues": {"get"}, "/api/v1/schedules": {"get", "post"},
        "/api/v1/schedules/{schedule_id}": {"delete"}, "/api/v1/workers": {"get"},
        "/healthz": {"get"},
    }.items():  # fmt: skip
        assert methods <= set(paths[path]), path
    schemas = doc["components"]["schemas"]
    assert {"TaskEnqueue", "TaskSchedule", "Task", "Error", "TaskPage"} <= set(schemas)
    assert set(schemas["TaskEnqueue"]["properties"]) == {
        f for f in taskq.TaskEnqueueRequest.__dataclass_fields__
    }
    assert "lease" not in schemas["Task"]["properties"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_healthz_needs_no_token(server: Server) -> None:
    r = server.request("GET", "/healthz")
    assert (r.status, r.json) == (200, {"status": "ok"})


def test_missing_unknown_and_malformed_tokens_are_401(server: Server, read: str) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer taskq_000000000000_" + "x" * 43},
                    {"Authorization": "Bearer " + read[:-1] + ("B" if read.endswith("A") else "A")}):  # fmt: skip
        r = server.request("GET", "/api/v1/queues", headers=headers)
        assert r.status == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert error_of(r)[0] == "unauthorized"


def test_scopes_read_write_admin(server: Server, read: str, write: str, admin: str,
                                 queue_name: str) -> None:  # fmt: skip
    task = {"queue": queue_name, "type": "scoped"}
    sched = {"queue": queue_name, "type": "cron", "cron_schedule": "0 3 * * *"}
    for token in (read, write, admin):
        assert server.request("GET", "/api/v1/tasks", token=token).status == 200
    assert server.request("POST", "/api/v1/tasks", token=read, body=task).status == 403
    created = server.request("POST", "/api/v1/tasks", token=write, body=task)
    assert created.status == 201
    tid = created.json["id"]
    r = server.request("POST", f"/api/v1/tasks/{tid}/cancel", token=read)
    assert r.status == 403 and "scope read" in error_of(r)[1]
    assert server.request("POST", f"/api/v1/tasks/{tid}/cancel", token=write).status == 200
    assert server.request("POST", f"/api/v1/tasks/{tid}/retry", token=read).status == 403
    assert server.request("POST", f"/api/v1/tasks/{tid}/retry", token=write).status == 200
    assert server.request("POST", "/api/v1/schedules", token=write, body=sched).status == 403
    r = server.request("POST", "/api/v1/schedules", token=admin, body=sched)
    assert r.status == 201
    sid = r.json["id"]
    assert server.request("DELETE", f"/api/v1/schedules/{sid}", token=write).status == 403
    assert server.request("DELETE", f"/api/v1/schedules/{sid}", token=admin).status == 204


def test_a_revoked_token_stops_working_at_once(server: Server, database_url: str,
                                               schema: str) -> None:  # fmt: skip
    name = f"soon-revoked-{uuid.uuid4().hex[:6]}"
    token = make_token(database_url, schema, "read", name)
    assert server.request("GET", "/api/v1/queues", token=token).status == 200
    for _ in range(3):  # now served from the server's token cache
        assert server.request("GET", "/api/v1/queues", token=token).status == 200
    r = run_taskq(database_url, schema, "token", "revoke", name)
    assert r.returncode == 0, r.stderr
    # the revocation's NOTIFY empties the cache: effective once it arrived (at commit,
    # milliseconds), never after a cache lifetime
    wait_for(lambda: server.request("GET", "/api/v1/queues", token=token).status == 401,
             timeout=2.0, what="the revoked token to be refused")  # fmt: skip
    assert server.request("GET", "/api/v1/tasks", token=token).status == 401


def test_enqueue_one_and_many(server: Server, write: str, tasks: taskq.Tasks,
                              queue_name: str) -> None:  # fmt: skip
    body = {"queue": queue_name, "type": "one", "spec": {"n": 1, "s": "ü"}, "priority": 5,
            "max_attempts": 3, "heartbeat_timeout": 12.5, "title": "a title",
            "user_id": "u1", "unique_key": f"k-{queue_name}", "run_at":
            "2030-01-02T03:04:05+02:00", "on_success": {"queue": queue_name, "type": "next"}}  # fmt: skip
    r = server.request("POST", "/api/v1/tasks", token=write, body=body)
    assert r.status == 201, r.text
    got = r.json
    stored = tasks.get(got["id"])
    assert (stored.spec, stored.priority, stored.max_attempts, stored.title) == (
        {"n": 1, "s": "ü"},
        5,
        3,
        "a title",
    )
    assert stored.run_at == dt.datetime(2030, 1, 2, 1, 4, 5, tzinfo=dt.UTC)
    assert got["status"] == "waiting" and got["heartbeat_timeout"] == 12.5
    assert dt.datetime.fromisoformat(got["created_at"]).utcoffset() is not None
    assert not {"lease", "on_success", "seq"} & set(got)
    for field in ("id", "queue", "type", "spec", "status", "progress", "result", "error",
                  "references", "priority", "attempts", "max_attempts", "run_at",
                  "created_at", "updated_at", "started_at", "finished_at",
                  "last_heartbeat_at"):  # fmt: skip
        assert field in got

    many = [{"queue": queue_name, "type": f"m{i}"} for i in range(3)]
    r = server.request("POST", "/api/v1/tasks", token=write, body=many)
    assert r.status == 201 and [t["type"] for t in r.json] == ["m0", "m1", "m2"]

    before = len(tasks.list(queue=queue_name, limit=1000))
    bad = [{"queue": queue_name, "type": "ok"}, {"queue": queue_name, "type": ""}]
    r = server.request("POST", "/api/v1/tasks", token=write, body=bad)
    assert r.status == 422
    assert len(tasks.list(queue=queue_name, limit=1000)) == before  # all or nothing


@pytest.mark.parametrize("fields", [
    {"queue": "", "type": "t"},
    {"queue": "q", "type": "  "},
    {"queue": "q", "type": "t", "spec": {"a": "x\u0000y"}},
    {"queue": "q\u0000", "type": "t"},
    {"queue": "q", "type": "t", "priority": 2**31},
    {"queue": "q", "type": "t", "priority": "high"},
    {"queue": "q", "type": "t", "max_attempts": 0},
    {"queue": "q", "type": "t", "heartbeat_timeout": 0},
    {"queue": "q", "type": "t", "timeout": -1},
    {"queue": "q" * 201, "type": "t"},
    {"queue": "q", "type": "t", "references": {"status": 1}},
    {"queue": "q", "type": "t", "references": {"no_such_column": 1}},
    {"queue": "q", "type": "t", "on_success": {"queue": "", "type": "t"}},
], ids=lambda f: ",".join(f"{k}={str(v)[:12]!r}" for k, v in f.items()))  # fmt: skip
def test_refusals_are_422_with_the_python_api_message(
    server: Server, write: str, database_url: str, schema: str, fields: dict[str, object]
) -> None:
    r = server.request("POST", "/api/v1/tasks", token=write, body=fields)
    assert r.status == 422, r.text
    expected_fields = dict(fields)
    if isinstance(fields.get("on_success"), dict):
        expected_fields["on_success"] = taskq.TaskEnqueueRequest(**fields["on_success"])  # type: ignore[arg-type]
    assert error_of(r) == ("invalid", python_refusal(database_url, schema, **expected_fields))


def test_unique_key_conflict_is_409(server: Server, write: str, queue_name: str) -> None:
    body = {"queue": queue_name, "type": "u", "unique_key": "only-one"}
    assert server.request("POST", "/api/v1/tasks", token=write, body=body).status == 201
    r = server.request("POST", "/api/v1/tasks", token=write, body=body)
    assert r.status == 409
    assert error_of(r) == ("already_exists", str(taskq.TaskAlreadyExists(queue_name, "only-one")))


def test_get_one_task(server: Server, read: str, queuer: taskq.Queuer, queue_name: str) -> None:
    t = queuer.enqueue(queue=queue_name, type="get")
    r = server.request("GET", f"/api/v1/tasks/{t.id}", token=read)
    assert r.status == 200 and r.json["id"] == t.id
    for missing in (str(uuid.uuid4()), "not-a-uuid", "%00"):
        r = server.request("GET", f"/api/v1/tasks/{missing}", token=read)
        assert r.status == 404 and error_of(r)[0] == "not_found"


def test_cancel_and_retry_conflicts(server: Server, write: str, queuer: taskq.Queuer,
                                    dequeuer: taskq.Dequeuer, queue_name: str) -> None:  # fmt: skip
    t = queuer.enqueue(queue=queue_name, type="c")
    r = server.request("POST", f"/api/v1/tasks/{t.id}/retry", token=write)
    assert r.status == 409 and "only failed or cancelled" in error_of(r)[1]
    r = server.request("POST", f"/api/v1/tasks/{t.id}/cancel", token=write)
    assert (r.status, r.json["status"]) == (200, "cancelled")
    r = server.request("POST", f"/api/v1/tasks/{t.id}/cancel", token=write)
    assert (r.status, r.json["status"]) == (200, "cancelled")  # unchanged, as in Python
    r = server.request("POST", f"/api/v1/tasks/{t.id}/retry", token=write)
    assert (r.status, r.json["status"], r.json["attempts"]) == (200, "waiting", 0)
    claimed = dequeuer.dequeue(queue_name, timeout=10)
    assert claimed is not None and claimed.id == t.id
    dequeuer.finish(claimed, None, result=1)
    r = server.request("POST", f"/api/v1/tasks/{t.id}/cancel", token=write)
    assert r.status == 409 and error_of(r) == ("already_ended", str(taskq.TaskFinished(t.id)))
    for action in ("cancel", "retry"):
        r = server.request("POST", f"/api/v1/tasks/{uuid.uuid4()}/{action}", token=write)
        assert r.status == 404


def test_wait_returns_the_final_task_or_408(server: Server, read: str, queuer: taskq.Queuer,
                                            tasks: taskq.Tasks, queue_name: str) -> None:  # fmt: skip
    t = queuer.enqueue(queue=queue_name, type="w")
    r = server.request("GET", f"/api/v1/tasks/{t.id}/wait?timeout=0.3", token=read)
    assert r.status == 408 and error_of(r)[0] == "timeout"
    tasks.cancel(t.id)
    r = server.request("GET", f"/api/v1/tasks/{t.id}/wait?timeout=5", token=read)
    assert (r.status, r.json["status"]) == (200, "cancelled")
    r = server.request("GET", f"/api/v1/tasks/{uuid.uuid4()}/wait?timeout=1", token=read)
    assert r.status == 404
    for bad in ("0", "-1", "abc", "99999"):
        r = server.request("GET", f"/api/v1/tasks/{t.id}/wait?timeout={bad}", token=read)
        assert r.status == 422, bad


def test_queues_count_every_status(server: Server, read: str, queuer: taskq.Queuer,
                                   tasks: taskq.Tasks, queue_name: str) -> None:  # fmt: skip
    a = queuer.enqueue(queue=queue_name, type="x")
    queuer.enqueue(queue=queue_name, type="x")
    tasks.cancel(a.id)

    def mine() -> dict[str, object] | None:
        r = server.request("GET", "/api/v1/queues", token=read)
        assert r.status == 200
        return next((q for q in r.json["queues"] if q["queue"] == queue_name), None)

    row = wait_for(lambda: (q := mine()) and q["cancelled"] == 1 and q)  # counts are cached 2 s
    assert row == {"queue": queue_name, "waiting": 1, "running": 0, "finished": 0,
                   "failed": 0, "cancelled": 1}  # fmt: skip


def test_schedules_create_update_list_delete(server: Server, admin: str, read: str,
                                             database_url: str, schema: str,
                                             queue_name: str) -> None:  # fmt: skip
    body = {"queue": queue_name, "type": "nightly", "cron_schedule": "30 2 * * *",
            "timezone": "Europe/Berlin", "spec": {"k": 1}}  # fmt: skip
    r = server.request("POST", "/api/v1/schedules", token=admin, body=body)
    assert r.status == 201, r.text
    sid = r.json["id"]
    assert r.json["next_run_at"] and r.json["enabled"] is True
    r = server.request("POST", "/api/v1/schedules", token=admin, body={**body, "spec": {"k": 2}})
    assert (r.status, r.json["id"], r.json["spec"]) == (200, sid, {"k": 2})
    listed = server.request("GET", "/api/v1/schedules", token=read).json["schedules"]
    assert [s["id"] for s in listed if s["queue"] == queue_name] == [sid]
    bad = {**body, "cron_schedule": "61 * * * *"}
    r = server.request("POST", "/api/v1/schedules", token=admin, body=bad)
    with taskq.Scheduler(database_url, schema=schema) as sched:
        with pytest.raises(taskq.InvalidSchedule) as e:
            sched.schedule(taskq.TaskScheduleRequest(queue_name, "nightly", "61 * * * *",
                                                     timezone="Europe/Berlin"))  # fmt: skip
    assert r.status == 422 and error_of(r) == ("invalid", str(e.value))
    r = server.request(
        "POST", "/api/v1/schedules", token=admin, body={**body, "timezone": "Mars/Olympus"}
    )
    assert r.status == 422
    assert server.request("DELETE", f"/api/v1/schedules/{sid}", token=admin).status == 204
    assert server.request("DELETE", f"/api/v1/schedules/{sid}", token=admin).status == 404
    assert server.request("DELETE", "/api/v1/schedules/nope", token=admin).status == 404


def test_workers_are_listed(server: Server, read: str, database_url: str, schema: str) -> None:
    from taskq.db import Database

    wid = str(uuid.uuid4())
    db = Database(database_url, schema, max_size=1)
    try:
        db.query(db.settings.stmts.workers.register(wid, "host-a", 4242, ["q1"], 8))
    finally:
        db.close()
    r = server.request("GET", "/api/v1/workers", token=read)
    assert r.status == 200
    (w,) = [w for w in r.json["workers"] if w["id"] == wid]
    assert (w["host"], w["pid"], w["queues"], w["concurrency"], w["alive"]) == (
        "host-a",
        4242,
        ["q1"],
        8,
        True,
    )


def test_unknown_routes_and_methods_answer_json(server: Server, read: str) -> None:
    r = server.request("GET", "/api/v1/nothing-here", token=read)
    assert r.status == 404 and error_of(r)[0] == "not_found"
    r = server.request("GET", "/no/such/page")
    assert r.status == 404 and r.headers["content-type"].startswith("application/json")
    r = server.request("DELETE", "/api/v1/queues", token=read)
    assert r.status == 405 and error_of(r)[0] == "method_not_allowed"


def test_metrics_count_requests_by_route_template(server: Server, read: str) -> None:
    server.request("GET", f"/api/v1/tasks/{uuid.uuid4()}", token=read)
    text = server.request("GET", "/metrics").text
    assert (
        'taskq_http_requests_total{method="GET",route="/api/v1/tasks/{task_id}",status="404"}'
        in text
    )
    assert "taskq_http_request_duration_seconds_bucket" in text
    assert "taskq_http_event_streams" in text


def test_raw_http_keepalive_survives_many_requests(server: Server, read: str) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    for _ in range(20):
        conn.request("GET", "/api/v1/queues", headers={"Authorization": f"Bearer {read}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()


def test_a_failed_tasks_error_history_reads_back_in_the_list_and_alone(
    server: Server, read: str, queuer: taskq.Queuer, dequeuer: taskq.Dequeuer, queue_name: str
) -> None:
    made = queuer.enqueue(queue=queue_name, type="t", max_attempts=1)
    claimed = dequeuer.dequeue(queue_name, timeout=10)
    assert claimed is not None and claimed.id == made.id
    dequeuer.fail(claimed, error="it broke")
    one = server.request("GET", f"/api/v1/tasks/{made.id}", token=read)
    listed = server.request("GET", f"/api/v1/tasks?queue={queue_name}", token=read)
    assert (one.status, listed.status) == (200, 200)
    (row,) = listed.json["tasks"]
    for task in (one.json, row):
        assert task["status"] == "failed"
        (entry,) = task["errors"]
        assert (entry["attempt"], entry["kind"], entry["message"]) == (1, "failed", "it broke")
        dt.datetime.fromisoformat(entry["at"])
