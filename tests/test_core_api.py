"""The public surface (contract §2-3): names, values, errors, and how ``db`` is given."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

import taskq

CONTRACT_NAMES = {
    # values
    "TaskStatus", "Task", "TaskEnqueueRequest", "TaskScheduleRequest",
    # the classes that take db
    "Queuer", "Dequeuer", "Scheduler", "Tasks",
    # workflows and running tasks
    "Chain", "Group", "Registry", "TaskContext",
    # references in users' migrations
    "add_reference_column",
    # errors
    "TaskqError", "TaskCancelled", "TaskFinished", "TaskNotRunning", "TaskNotFound",
    "TaskFailed", "TaskAlreadyExists", "LeaseLost", "QueueNotSpecified", "TypeNotSpecified",
    "NotScheduled", "InvalidSchedule", "InvalidReference",
}  # fmt: skip

ERRORS = [
    "TaskCancelled", "TaskFinished", "TaskNotRunning", "TaskNotFound", "TaskFailed",
    "TaskAlreadyExists", "LeaseLost", "QueueNotSpecified", "TypeNotSpecified", "NotScheduled",
    "InvalidSchedule", "InvalidReference",
]  # fmt: skip

TASK_FIELDS = {
    "id", "queue", "type", "spec", "status", "progress", "result", "error", "references",
    "priority", "attempts", "max_attempts", "run_at", "created_at", "updated_at",
    "started_at", "finished_at", "last_heartbeat_at",
}  # fmt: skip


def test_every_contract_name_is_exported() -> None:
    missing = sorted(n for n in CONTRACT_NAMES if n not in taskq.__all__)
    assert missing == [], f"missing from taskq.__all__: {missing}"
    for name in CONTRACT_NAMES:
        assert getattr(taskq, name) is not None


def test_all_lists_only_names_that_exist_once() -> None:
    assert len(taskq.__all__) == len(set(taskq.__all__))
    assert [n for n in taskq.__all__ if not hasattr(taskq, n)] == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from taskq import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(taskq.__all__)


def test_public_classes_and_functions_are_exported() -> None:
    # everything taskq defines at top level without a leading underscore is in __all__
    public = {
        name
        for name, value in vars(taskq).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("taskq")
    }
    assert public - set(taskq.__all__) == set()


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_derives_from_taskq_error(name: str) -> None:
    assert issubclass(getattr(taskq, name), taskq.TaskqError)
    assert issubclass(taskq.TaskqError, Exception)


@pytest.mark.parametrize(
    "name", ["QueueNotSpecified", "TypeNotSpecified", "InvalidSchedule", "InvalidReference"]
)
def test_bad_input_errors_are_value_errors(name: str) -> None:
    assert issubclass(getattr(taskq, name), ValueError)


def test_error_messages_name_what_they_concern() -> None:
    tid = "0b5c3c1e-0000-4000-8000-000000000001"
    for cls in (
        taskq.TaskNotFound,
        taskq.TaskCancelled,
        taskq.TaskFinished,
        taskq.TaskNotRunning,
        taskq.LeaseLost,
    ):
        error = cls(tid)
        assert tid in str(error) and error.task_id == tid
    exists = taskq.TaskAlreadyExists("mail", "key-1")
    assert "mail" in str(exists) and "key-1" in str(exists)
    assert "mail" in str(taskq.TypeNotSpecified("mail"))
    assert "send" in str(taskq.QueueNotSpecified("send"))
    assert "account_id" in str(taskq.InvalidReference("account_id", "taskq.tasks", "nope"))
    assert "mail" in str(taskq.NotScheduled("mail", "send", {}))


def test_task_status_values() -> None:
    assert {s.name: s.value for s in taskq.TaskStatus} == {
        "WAITING": "waiting",
        "RUNNING": "running",
        "CANCELLED": "cancelled",
        "FINISHED": "finished",
        "FAILED": "failed",
    }
    assert issubclass(taskq.TaskStatus, str)
    assert taskq.TaskStatus.RUNNING == "running"
    assert taskq.TaskStatus("failed") is taskq.TaskStatus.FAILED


def test_task_is_an_immutable_record_with_the_contract_fields() -> None:
    assert dataclasses.is_dataclass(taskq.Task)
    names = {f.name for f in dataclasses.fields(taskq.Task)}
    assert TASK_FIELDS <= names
    required = {
        f.name: None
        for f in dataclasses.fields(taskq.Task)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    task = taskq.Task(**required)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.status = taskq.TaskStatus.FINISHED  # type: ignore[misc]


def test_enqueue_request_signature() -> None:
    req = taskq.TaskEnqueueRequest("q", "t", {"x": 1})
    assert (req.queue, req.type, req.spec) == ("q", "t", {"x": 1})
    assert req.references == {} and req.priority == 0 and req.run_at is None
    assert req.unique_key is None and req.title is None and req.user_id is None
    assert req.on_success is None
    params = inspect.signature(taskq.TaskEnqueueRequest).parameters
    for name in ("max_attempts", "heartbeat_timeout", "unique_key", "title", "user_id"):
        assert name in params
    # two requests never share their default references mapping
    assert taskq.TaskEnqueueRequest("q", "t").references is not req.references
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.queue = "other"  # type: ignore[misc]


def test_schedule_request_signature() -> None:
    req = taskq.TaskScheduleRequest("q", "t", "*/5 * * * *")
    assert req.cron_schedule == "*/5 * * * *"
    assert req.spec is None and req.references == {} and req.timezone == "UTC"


# ---- db: a URI, a pool, or a connection -----------------------------------------------


@pytest.mark.parametrize("cls", [taskq.Queuer, taskq.Dequeuer, taskq.Tasks])
def test_built_from_a_uri_it_owns_a_pool_and_closes(
    cls: Any, database_url: str, schema: str
) -> None:
    with cls(database_url, schema=schema) as obj:
        assert obj.schema == schema
    obj = cls(database_url, schema=schema)
    obj.close()


@pytest.mark.parametrize("cls", [taskq.Queuer, taskq.Dequeuer, taskq.Tasks])
def test_accepts_a_pool_and_a_connection(cls: Any, database_url: str, schema: str) -> None:
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as p:
        cls(p, schema=schema).close()
        assert not p.closed  # a caller's pool is the caller's to close
    with psycopg.connect(database_url, autocommit=True) as conn:
        cls(conn, schema=schema).close()
        assert not conn.closed  # and so is a caller's connection


@pytest.mark.parametrize("cls", [taskq.Queuer, taskq.Dequeuer, taskq.Tasks])
def test_refuses_something_that_is_not_a_database(cls: Any) -> None:
    with pytest.raises(TypeError):
        cls(42, schema="taskq")


def test_schema_comes_from_taskq_schema_when_not_given(
    make: Any, monkeypatch: pytest.MonkeyPatch, database_url: str, schema: str, queue_name: str
) -> None:
    monkeypatch.setenv("TASKQ_SCHEMA", schema)
    with make.Queuer(database_url) as queuer, make.Tasks(database_url, schema=schema) as tasks:
        assert queuer.schema == schema
        task = queuer.enqueue(queue=queue_name, type="t")
        assert tasks.get(task.id).id == task.id


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", 'x"; DROP SCHEMA public; --', "a" * 64])
def test_an_invalid_schema_name_is_refused(make: Any, database_url: str, bad: str) -> None:
    with pytest.raises(ValueError):
        make.Queuer(database_url, schema=bad)
