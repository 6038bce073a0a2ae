"""Enqueueing a registered task with the handler's own defaults: ``@registry.task``
turns a handler into a ``RegisteredTask`` that ``Queuer.enqueue`` (both faces) takes
with its spec, filling what is not given from the registration and running its
validator, with or without a registry on the Queuer. A strict Queuer refuses types its
registry does not know, in every kind of enqueue, storing nothing. ``taskq enqueue
--app`` does both from the command line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import run_taskq

import taskq
from taskq.core.defaults import HEARTBEAT_TIMEOUT, MAX_ATTEMPTS

R = taskq.TaskEnqueueRequest

registry = taskq.Registry()


def needs_to(spec: Any) -> None:
    if not isinstance(spec, dict) or "to" not in spec:
        raise ValueError("a mail needs a 'to'")


@registry.task("mail.send", queue="mail", max_attempts=5, heartbeat_timeout=30, timeout=20,
               retry_delay=2.5, validator=needs_to)  # fmt: skip
def send_email(ctx: taskq.TaskContext) -> str:
    return f"sent to {ctx.spec['to']}"


@registry.task("report.build", max_attempts=3)
async def build_report(ctx: taskq.TaskContext) -> int:
    return 7


def stored(tasks: taskq.Tasks, queue: str) -> list[taskq.Task]:
    return tasks.list(queue=queue)


# ---- the registered task -----------------------------------------------------------------


def test_the_decorated_handler_is_still_the_handler() -> None:
    assert isinstance(send_email, taskq.RegisteredTask)
    assert send_email.name == "mail.send" and send_email.__name__ == "send_email"
    assert send_email.options.max_attempts == 5
    task: Any = type("T", (), {"spec": {"to": "a@x"}})()
    ctx: Any = type("C", (), {"spec": {"to": "a@x"}, "task": task})()
    assert send_email(ctx) == "sent to a@x"
    handler = registry.get("mail.send")
    assert handler is not None and handler.handler is send_email.fn and not handler.is_async
    build = registry.get("report.build")
    assert build is not None and build.is_async


def test_a_request_from_a_registered_task_carries_its_defaults_and_is_validated() -> None:
    r = send_email.request({"to": "a@x"}, priority=4)
    assert (r.queue, r.type, r.spec, r.priority) == ("mail", "mail.send", {"to": "a@x"}, 4)
    assert (r.max_attempts, r.heartbeat_timeout, r.timeout, r.retry_delay) == (5, 30, 20, 2.5)
    with pytest.raises(taskq.InvalidTask, match="invalid spec .*a mail needs a 'to'"):
        send_email.request({"cc": "b@x"})
    with pytest.raises(taskq.QueueNotSpecified):
        build_report.request(None)  # registered with no queue, and none given


def test_enqueue_takes_a_registered_task_and_stores_its_defaults(
    queuer: taskq.Queuer, tasks: taskq.Tasks
) -> None:
    assert queuer.registry is None  # the Queuer knows no registry: the handler brings it
    t = queuer.enqueue(send_email, {"to": "a@x"})
    got = tasks.get(t.id)
    assert (got.queue, got.type, got.spec) == ("mail", "mail.send", {"to": "a@x"})
    assert (got.max_attempts, got.heartbeat_timeout, got.timeout) == (5, 30.0, 20.0)


def test_explicit_options_override_the_registered_defaults(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    t = queuer.enqueue(send_email, {"to": "a@x"}, queue=queue_name, max_attempts=2,
                       heartbeat_timeout=9, priority=3, title="hello")  # fmt: skip
    got = tasks.get(t.id)
    assert (got.queue, got.max_attempts, got.heartbeat_timeout) == (queue_name, 2, 9.0)
    assert (got.priority, got.title, got.timeout) == (3, "hello", 20.0)
    kw = queuer.enqueue(build_report, queue=queue_name, spec={"n": 1})
    assert (tasks.get(kw.id).spec, tasks.get(kw.id).max_attempts) == ({"n": 1}, 3)


def test_a_spec_the_validator_refuses_stores_nothing(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    with pytest.raises(taskq.InvalidTask, match="a mail needs a 'to'"):
        queuer.enqueue(send_email, {"cc": "b@x"}, queue=queue_name)
    assert stored(tasks, queue_name) == []


def test_registered_requests_in_batches_chains_groups_and_follow_ups(
    queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    q = queue_name
    many = queuer.enqueue_many([send_email.request({"to": "1"}, queue=q),
                                build_report.request(queue=q)])  # fmt: skip
    assert [t.max_attempts for t in many] == [5, 3]
    chain = queuer.enqueue_chain([build_report.request(queue=q),
                                  send_email.request({"to": "2"}, queue=q)])  # fmt: skip
    assert [tasks.get(i).max_attempts for i in chain.task_ids] == [3, 5]
    group = queuer.enqueue_group([send_email.request({"to": "3"}, queue=q)],
                                 on_complete=build_report.request(queue=q))  # fmt: skip
    assert tasks.get(group.task_ids[0]).timeout == 20.0
    then = queuer.enqueue(build_report, None, queue=q,
                          on_success=send_email.request({"to": "4"}, queue=q))  # fmt: skip
    assert tasks.get(then.id).max_attempts == 3


def test_enqueue_refuses_mixed_up_arguments(queuer: taskq.Queuer) -> None:
    with pytest.raises(TypeError, match="spec given twice"):
        queuer.enqueue(send_email, {"to": "a"}, spec={"to": "b"})
    with pytest.raises(TypeError, match="type is its own"):
        queuer.enqueue(send_email, {"to": "a"}, type="other")
    with pytest.raises(TypeError, match="registered task"):
        queuer.enqueue(R("q", "t"), {"to": "a"})


# ---- strict ------------------------------------------------------------------------------


@pytest.fixture
def strict(make: Any, database_url: str, schema: str) -> taskq.Queuer:
    q: taskq.Queuer = make.Queuer(database_url, schema=schema, registry=registry, strict=True)
    return q


def test_a_strict_queuer_enqueues_known_types_with_their_defaults(
    strict: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    t = strict.enqueue(R(queue_name, "mail.send", {"to": "a"}))
    assert tasks.get(t.id).max_attempts == 5
    assert strict.enqueue(send_email, {"to": "b"}, queue=queue_name).max_attempts == 5


def test_a_strict_queuer_refuses_unknown_types_naming_them_and_stores_nothing(
    strict: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    q, ok = queue_name, R(queue_name, "mail.send", {"to": "a"})
    bad = R(q, "mail.sned", {"to": "a"})
    with pytest.raises(taskq.UnknownTaskType) as e:
        strict.enqueue(bad)
    message = str(e.value)
    assert "'mail.sned'" in message and "'mail.send'" in message and "'report.build'" in message
    assert "\n" not in message and isinstance(e.value, ValueError)
    attempts: list[Any] = [
        lambda: strict.enqueue_many([ok, bad]),
        lambda: strict.enqueue_chain([ok, bad]),
        lambda: strict.enqueue_group([ok, bad]),
        lambda: strict.enqueue_group([ok], on_complete=bad),
        lambda: strict.enqueue(R(q, "mail.send", {"to": "a"}, on_success=bad)),
    ]
    for attempt in attempts:
        with pytest.raises(taskq.UnknownTaskType, match="mail.sned"):
            attempt()
    assert stored(tasks, q) == []


def test_strict_needs_a_registry(face: str, database_url: str) -> None:
    cls = taskq.Queuer if face == "sync" else taskq.aio.AsyncQueuer
    with pytest.raises(ValueError, match="strict=True needs a registry"):
        cls(database_url, strict=True)


# ---- the command line --------------------------------------------------------------------


@pytest.mark.faces("sync")
def test_cli_enqueue_with_app_uses_registered_defaults_and_refuses_unknown_types(
    database_url: str, schema: str, tasks: taskq.Tasks
) -> None:
    q = f"q-{uuid.uuid4().hex[:8]}"
    app = ("--app", "taskq_test_app:registry")
    plain = run_taskq(database_url, schema, "enqueue", q, "give_up")
    assert plain.returncode == 0, plain.stderr
    assert tasks.get(plain.stdout.strip()).max_attempts == MAX_ATTEMPTS
    r = run_taskq(database_url, schema, "enqueue", q, "give_up", *app)
    assert r.returncode == 0, r.stderr
    got = tasks.get(r.stdout.strip())
    assert (got.max_attempts, got.heartbeat_timeout) == (5, HEARTBEAT_TIMEOUT)
    r = run_taskq(database_url, schema, "enqueue", q, "give_up", "--max-attempts", "2", *app)
    assert r.returncode == 0 and tasks.get(r.stdout.strip()).max_attempts == 2
    r = run_taskq(database_url, schema, "enqueue", q, "giveup", *app)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "unknown task type 'giveup'" in line and "'give_up'" in line
    assert len(tasks.list(queue=q)) == 3  # the refused one is not among them
    r = run_taskq(database_url, schema, "enqueue", q, "give_up", "--app", "no_such_module:r")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
