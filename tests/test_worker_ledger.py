"""The worker's state machine (taskq/worker/ledger.py) and its services' ``run_once``:
every transition, the races it settles, shutdown at each state, and one round of the
dispatcher and of the heartbeater against a real database."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import taskq
from taskq.actions.outcomes import Outcome
from taskq.core.types import Task, TaskStatus
from taskq.db import Database
from taskq.dequeuer import Dequeuer
from taskq.registry import TaskContext
from taskq.worker.dispatcher import Dispatcher
from taskq.worker.heartbeater import Heartbeater
from taskq.worker.ledger import Ledger, State

pytestmark = pytest.mark.faces("sync")

R = taskq.TaskEnqueueRequest


def fake_task(**kw: Any) -> Task:
    now = None
    return Task(id=str(uuid.uuid4()), queue="q", type="t", spec=None,
                status=TaskStatus.RUNNING, progress=None, result=None, error=None,
                references={}, priority=0, attempts=1, max_attempts=1, heartbeat_timeout=60,
                timeout=kw.get("timeout"), run_at=now, created_at=now, updated_at=now,  # type: ignore[arg-type]
                started_at=None, finished_at=None, last_heartbeat_at=None)  # fmt: skip


def held(ledger: Ledger, **kw: Any) -> Any:
    task = fake_task(**kw)
    return ledger.claimed(task, TaskContext(task, lambda t, v: None))


# ---- the state machine, without a database ---------------------------------------------


def test_a_task_goes_claimed_running_decided_written_and_frees_its_slot() -> None:
    ledger = Ledger(2)
    h = held(ledger)
    assert h.state is State.CLAIMED and ledger.free_slots() == 1
    assert ledger.start(h) and h.state is State.RUNNING and h.started is not None
    assert ledger.free_slots() == 1 and ledger.executing() == 1
    ledger.returned(h)
    assert ledger.free_slots() == 2  # the slot is free before the outcome is written
    assert ledger.decide(h, Outcome(h.task, result=1), True)
    assert ledger.take_decided() == [h]
    ledger.written([h])
    assert h.state is State.WRITTEN and len(ledger) == 0


def test_only_one_outcome_is_ever_decided() -> None:
    ledger = Ledger(1)
    h = held(ledger)
    ledger.start(h)
    assert ledger.decide(h, Outcome(h.task, error="timed out", kind="timeout"), False)
    assert not ledger.decide(h, Outcome(h.task, result="late"), True)  # the handler, later
    assert not ledger.drop(h)
    assert h.outcome is not None and h.outcome.kind == "timeout"


def test_a_timed_out_sync_handler_keeps_its_slot_until_it_returns() -> None:
    ledger = Ledger(1)
    h = held(ledger)
    ledger.start(h)
    ledger.decide(h, Outcome(h.task, error="timed out"), False)
    assert ledger.free_slots() == 0
    ledger.returned(h)
    assert ledger.free_slots() == 1


def test_a_task_released_before_it_starts_never_starts() -> None:
    ledger = Ledger(2)
    h = held(ledger)
    assert ledger.release_claimed() == [h]
    assert h.state is State.RELEASED
    assert not ledger.start(h)
    assert ledger.executing() == 0 and len(ledger) == 0


def test_shutdown_at_each_state_does_what_the_diagram_says() -> None:
    ledger = Ledger(4)
    claimed, running, decided, dropped = (held(ledger) for _ in range(4))
    for h in (running, decided, dropped):
        ledger.start(h)
    ledger.decide(decided, Outcome(decided.task, result=1), True)
    ledger.drop(dropped)
    assert ledger.release_claimed() == [claimed]
    assert ledger.release_running() == [running]
    assert ledger.in_state(State.DECIDED) == [decided]  # still to be written
    assert dropped.state is State.DROPPED and claimed.state is State.RELEASED


def test_a_failed_write_puts_the_outcomes_back_in_order() -> None:
    ledger = Ledger(2)
    a, b = held(ledger), held(ledger)
    for h in (a, b):
        ledger.start(h)
        ledger.decide(h, Outcome(h.task, result=1), True)
    batch = ledger.take_decided()
    ledger.undo_take(batch)
    assert ledger.take_decided() == [a, b]


def test_racing_threads_agree_on_one_outcome() -> None:
    for _ in range(200):
        ledger = Ledger(1)
        h = held(ledger)
        ledger.start(h)
        wins: list[bool] = []

        def race(ledger: Ledger = ledger, h: Any = h, wins: list[bool] = wins) -> None:
            wins.append(ledger.decide(h, Outcome(h.task), False))

        threads = [threading.Thread(target=race) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1


# ---- one round of each service, on a real database -------------------------------------


@pytest.fixture
def db(database_url: str, schema: str) -> Iterator[Database]:
    d = Database(database_url, schema)
    yield d
    d.close()


def dispatcher_of(
    db: Database, ledger: Ledger, queue: str, *, prefetch: bool = False
) -> tuple[Dispatcher, list[Task]]:
    got: list[Task] = []

    def dispatch(task: Task) -> None:
        got.append(task)
        ledger.claimed(task, TaskContext(task, lambda t, v: None))

    d = Dispatcher(db, Dequeuer(db, worker_id=None), ledger, dispatch, queues=(queue,),
                   poll_interval=1.0, stop_claiming=threading.Event(), prefetch=prefetch)  # fmt: skip
    return d, got


def test_a_round_claims_only_as_many_tasks_as_there_are_free_slots(
    db: Database, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    made = queuer.enqueue_many([R(queue_name, "t", {"n": i}) for i in range(5)])
    ledger = Ledger(2)
    d, got = dispatcher_of(db, ledger, queue_name)
    assert d.run_once().claimed == 2
    assert d.run_once().claimed == 0  # both slots taken: nothing more is claimed
    statuses = [tasks.get(t.id).status for t in made]
    assert statuses.count(TaskStatus.RUNNING) == 2 and statuses.count(TaskStatus.WAITING) == 3


def test_a_round_writes_decided_outcomes_and_claims_for_the_freed_slots_at_once(
    db: Database, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    made = queuer.enqueue_many([R(queue_name, "t", {"n": i}) for i in range(3)])
    ledger = Ledger(2)
    d, got = dispatcher_of(db, ledger, queue_name)
    d.run_once()
    for h in ledger.held():
        ledger.start(h)
        ledger.returned(h)
        ledger.decide(h, Outcome(h.task, result={"n": h.task.spec["n"]}), True)
    done = d.run_once()
    assert (done.written, done.claimed) == (2, 1)
    assert [tasks.get(t.id).status for t in made] == [
        TaskStatus.FINISHED,
        TaskStatus.FINISHED,
        TaskStatus.RUNNING,
    ]
    assert tasks.get(made[0].id).result == {"n": 0}


def test_a_timeout_counts_from_the_start_never_from_the_claim(
    db: Database, queuer: taskq.Queuer, queue_name: str
) -> None:
    queuer.enqueue_many([R(queue_name, "t", timeout=0.05) for _ in range(2)])
    ledger = Ledger(2)
    d, got = dispatcher_of(db, ledger, queue_name)
    d.run_once()
    beater = Heartbeater(db, Dequeuer(db), ledger, worker_id=str(uuid.uuid4()),
                         worker_stale=30, timeout_of=lambda t: t.timeout,
                         register=lambda: None)  # fmt: skip
    first, second = ledger.held()
    ledger.start(first)
    time.sleep(0.1)  # the time under test: past the timeout, for both
    assert beater.enforce_timeouts() == 1
    assert first.state is State.DECIDED and first.outcome is not None
    assert first.outcome.kind == "timeout" and first.ctx.cancelled
    assert second.state is State.CLAIMED and not second.ctx.cancelled


def test_a_heartbeat_round_covers_every_held_task_and_learns_of_cancels(
    db: Database, queuer: taskq.Queuer, tasks: taskq.Tasks, queue_name: str
) -> None:
    queuer.enqueue_many([R(queue_name, "t") for _ in range(3)])
    ledger = Ledger(3)
    d, got = dispatcher_of(db, ledger, queue_name)
    d.run_once()
    tasks.cancel(got[0].id)
    beater = Heartbeater(db, Dequeuer(db), ledger, worker_id=str(uuid.uuid4()),
                         worker_stale=30, timeout_of=lambda t: None,
                         register=lambda: None)  # fmt: skip
    beat = beater.run_once()
    assert (beat.heartbeats, beat.cancelled) == (3, 1)
    assert [h.ctx.cancelled for h in ledger.held()] == [True, False, False]


def stored_attempts(conn: Any, schema: str, task_id: str) -> tuple[str, int, Any]:
    """The row as stored (readers show a reserved task's attempt as the one it is about
    to make)."""
    row = conn.execute(
        f'SELECT status, attempts, started_at FROM "{schema}".tasks WHERE id = %s', [task_id]
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_reserved_tasks_are_charged_only_once_they_start(
    db: Database,
    queuer: taskq.Queuer,
    tasks: taskq.Tasks,
    queue_name: str,
    conn: Any,
    schema: str,
) -> None:
    made = queuer.enqueue_many([R(queue_name, "t") for _ in range(4)])
    ledger = Ledger(1)
    d, got = dispatcher_of(db, ledger, queue_name, prefetch=True)
    d.avg_duration = 0.001  # short tasks: reserve beyond the one free slot
    assert d.run_once().claimed == 4
    for t in made:  # reserved: running under our lease, no attempt charged, no start
        assert stored_attempts(conn, schema, t.id) == ("running", 0, None)
        assert tasks.get(t.id).attempts == 1  # readers see the attempt it is about to make
    first = ledger.held()[0]
    ledger.start(first)
    first.started = time.monotonic() - 1  # long enough ago to be recorded
    d.run_once()
    assert first.recorded
    now = tasks.get(first.task.id)
    assert now.attempts == 1 and now.started_at is not None
    # one no slot started in time goes back to waiting, uncharged
    for h in ledger.in_state(State.CLAIMED):
        h.claimed -= 10
    assert d.run_once().released == 3
    back = [tasks.get(t.id) for t in made[1:]]
    assert {(t.status, t.attempts) for t in back} == {(TaskStatus.WAITING, 0)}
