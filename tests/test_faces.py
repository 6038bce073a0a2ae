"""The two faces themselves: the test adapter is faithful, both faces raise the same
errors for the same mistakes, both close what they own, and the suite really runs the
API modules through the asyncio face.

``faces.SyncFace`` (tests/faces.py) lets one test body drive ``taskq.aio`` objects; the
first tests here check that it adds nothing and hides nothing. The rest compare the
faces directly, without the adapter where it matters (native ``async def`` tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import faces
import psycopg
import psycopg_pool
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import taskq
import taskq.aio
from taskq.db.migrate import sqlalchemy_url

R = taskq.TaskEnqueueRequest
UNKNOWN = "6f1f8a43-0000-4000-8000-00000000beef"


# ---- the adapter, on a toy ------------------------------------------------------------


class Boom(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(f"boom: {what}")
        self.what = what


class Toy:
    """Something shaped like a taskq.aio object."""

    def __init__(self) -> None:
        self.plain = "an attribute"
        self.closed = 0
        self.raised = Boom("the one")
        self.finally_ran = threading.Event()

    async def where(self) -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    async def echo(self, *args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    async def fail(self) -> None:
        await asyncio.sleep(0)
        raise self.raised

    async def count(self, n: int, fail_at: int | None = None) -> AsyncIterator[int]:
        try:
            for i in range(n):
                if i == fail_at:
                    raise TimeoutError(f"gave up at {i}")
                await asyncio.sleep(0)
                yield i
        finally:
            self.finally_ran.set()

    async def close(self) -> None:
        self.closed += 1

    async def __aenter__(self) -> Toy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@pytest.fixture
def toy() -> Iterator[tuple[Toy, faces.SyncFace]]:
    t = Toy()
    yield t, faces.SyncFace(t, faces.session_loop())


def test_the_adapter_runs_coroutines_on_the_one_session_loop(
    toy: tuple[Toy, faces.SyncFace],
) -> None:
    _, face = toy
    assert face.where() == "taskq-test-event-loop"
    assert faces.session_loop() is faces.session_loop()
    assert face.echo(1, "two", key=[3]) == ((1, "two"), {"key": [3]})
    assert face.plain == "an attribute"  # plain attributes are the object's own


def test_the_adapter_raises_the_very_exception_the_coroutine_raised(
    toy: tuple[Toy, faces.SyncFace],
) -> None:
    obj, face = toy
    with pytest.raises(Boom) as e:
        face.fail()
    assert e.value is obj.raised
    assert str(e.value) == "boom: the one" and e.value.what == "the one"


def test_the_adapter_turns_an_async_iterator_into_an_iterator(
    toy: tuple[Toy, faces.SyncFace],
) -> None:
    obj, face = toy
    assert list(face.count(4)) == [0, 1, 2, 3]
    assert obj.finally_ran.is_set()

    obj.finally_ran.clear()
    it = face.count(5, fail_at=2)
    assert isinstance(it, Iterator)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(TimeoutError, match="gave up at 2"):
        next(it)
    with pytest.raises(StopIteration):  # like a generator after it raised
        next(it)
    assert obj.finally_ran.is_set()

    obj.finally_ran.clear()
    it = face.count(5)
    assert next(it) == 0
    it.close()  # an iterator left early still runs the generator's finally
    assert obj.finally_ran.is_set()


def test_the_adapter_maps_close_and_the_context_manager(
    toy: tuple[Toy, faces.SyncFace],
) -> None:
    obj, face = toy
    with face as entered:
        assert entered is face
        assert obj.closed == 0
    assert obj.closed == 1
    face.close()
    assert obj.closed == 2


def test_the_adapter_refuses_to_deadlock_its_own_loop(toy: tuple[Toy, faces.SyncFace]) -> None:
    _, face = toy

    async def from_inside() -> None:
        face.where()

    with pytest.raises(RuntimeError, match="deadlock"):
        faces.session_loop().run(from_inside())


# ---- both faces raise the same errors ---------------------------------------------------


class Pair:
    """The same kind of object in both faces, on one schema."""

    def __init__(self, name: str, url: str, schema: str, **kwargs: Any) -> None:
        self.sync = faces.build("sync", name, url, schema=schema, **kwargs)
        self.aio = faces.build("async", name, url, schema=schema, **kwargs)

    def close(self) -> None:
        self.sync.close()
        self.aio.close()


class Both:
    def __init__(self, url: str, schema: str) -> None:
        self.queuer = Pair("Queuer", url, schema)
        self.dequeuer = Pair("Dequeuer", url, schema, poll_interval=0.2)
        self.tasks = Pair("Tasks", url, schema, poll_interval=0.2)
        self.scheduler = Pair("Scheduler", url, schema)
        self.url = url
        self.schema = schema

    def close(self) -> None:
        for p in (self.queuer, self.dequeuer, self.tasks, self.scheduler):
            p.close()

    def running(self, queue: str, **kw: Any) -> taskq.Task:
        self.queuer.sync.enqueue(R(queue, "t", **kw))
        claimed = self.dequeuer.sync.dequeue(queue, timeout=0)
        assert claimed is not None
        return claimed  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def both(database_url: str, schema: str) -> Iterator[Both]:
    b = Both(database_url, schema)
    yield b
    b.close()


def make_stale(url: str, schema: str, task_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            sql.SQL(
                "UPDATE {} SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s"
            ).format(sql.Identifier(schema, "tasks")),
            (task_id,),
        )


# Each case prepares state with the sync objects and returns the one call to make in
# either face: ``call(face)`` where face is "sync" or "aio".
Case = Callable[[Both, str], Callable[[str], Any]]


def _unique_held(b: Both, q: str) -> Callable[[str], Any]:
    b.queuer.sync.enqueue(R(q, "t", unique_key="held"))
    return lambda f: getattr(b.queuer, f).enqueue(R(q, "t", unique_key="held"))


def _lease_lost(b: Both, q: str) -> Callable[[str], Any]:
    claimed = b.running(q, max_attempts=2)
    make_stale(b.url, b.schema, claimed.id)
    assert b.dequeuer.sync.rescue() >= 1
    return lambda f: getattr(b.dequeuer, f).finish(claimed, None, "late")


def _cancelled(b: Both, q: str) -> Callable[[str], Any]:
    claimed = b.running(q)
    b.tasks.sync.cancel(claimed.id)
    return lambda f: getattr(b.dequeuer, f).heartbeat(claimed, "still here")


def _ended(b: Both, q: str) -> Callable[[str], Any]:
    claimed = b.running(q)
    b.dequeuer.sync.fail(claimed, None, "broken")
    return lambda f: getattr(b.tasks, f).cancel(claimed.id)


def _waiting(b: Both, q: str) -> str:
    return str(b.queuer.sync.enqueue(R(q, "t")).id)


CASES: dict[str, Case] = {
    "blank queue": lambda b, q: lambda f: getattr(b.queuer, f).enqueue(R("", "typ")),
    "blank type": lambda b, q: lambda f: getattr(b.queuer, f).enqueue(R(q, " ")),
    "NUL in spec": lambda b, q: lambda f: getattr(b.queuer, f).enqueue(R(q, "t", "a\x00")),
    "not JSON": lambda b, q: lambda f: getattr(b.queuer, f).enqueue(R(q, "t", {1, 2})),
    "priority out of range": lambda b, q: (
        lambda f: getattr(b.queuer, f).enqueue(R(q, "t", priority=2**31))
    ),
    "request and keywords": lambda b, q: (
        lambda f: getattr(b.queuer, f).enqueue(R(q, "t"), priority=1)
    ),
    "unknown reference": lambda b, q: (
        lambda f: getattr(b.queuer, f).enqueue(R(q, "t", references={"nope": 1}))
    ),
    "batch with a bad member": lambda b, q: (
        lambda f: getattr(b.queuer, f).enqueue_many([R(q, "t"), R(q, "t", {"x": float("nan")})])
    ),
    "unique key held": _unique_held,
    "get unknown": lambda b, q: lambda f: getattr(b.tasks, f).get(UNKNOWN),
    "get malformed": lambda b, q: lambda f: getattr(b.tasks, f).get("'; --"),
    "list limit 0": lambda b, q: lambda f: getattr(b.tasks, f).list(limit=0),
    "list bad status": lambda b, q: lambda f: getattr(b.tasks, f).list(status="sleeping"),
    "cancel ended": _ended,
    "retry waiting": lambda b, q: (lambda t: lambda f: getattr(b.tasks, f).retry(t))(
        _waiting(b, q)
    ),
    "result waiting": lambda b, q: (lambda t: lambda f: getattr(b.tasks, f).result(t))(
        _waiting(b, q)
    ),
    "wait times out": lambda b, q: (lambda t: lambda f: getattr(b.tasks, f).wait(t, timeout=0.1))(
        _waiting(b, q)
    ),
    "wait unknown": lambda b, q: lambda f: getattr(b.tasks, f).wait(UNKNOWN, timeout=1),
    "chain unknown": lambda b, q: lambda f: getattr(b.tasks, f).get_chain(UNKNOWN),
    "purge negative": lambda b, q: (
        lambda f: getattr(b.tasks, f).purge(__import__("datetime").timedelta(seconds=-1))
    ),
    "dequeue blank queue": lambda b, q: lambda f: getattr(b.dequeuer, f).dequeue("", timeout=0),
    "heartbeat unknown": lambda b, q: lambda f: getattr(b.dequeuer, f).heartbeat(UNKNOWN),
    "finish waiting": lambda b, q: (lambda t: lambda f: getattr(b.dequeuer, f).finish(t))(
        _waiting(b, q)
    ),
    "heartbeat a number": lambda b, q: lambda f: getattr(b.dequeuer, f).heartbeat(42),
    "unstorable progress": lambda b, q: (
        lambda t: lambda f: getattr(b.dequeuer, f).heartbeat(t, {"x": "\x00"})
    )(b.running(q)),
    "heartbeat cancelled": _cancelled,
    "lease lost": _lease_lost,
    "bad cron": lambda b, q: (
        lambda f: getattr(b.scheduler, f).schedule(
            taskq.TaskScheduleRequest(q, "t", "25 * * * * 61")
        )
    ),
    "unknown time zone": lambda b, q: (
        lambda f: getattr(b.scheduler, f).schedule(
            taskq.TaskScheduleRequest(q, "t", "* * * * *", timezone="Mars/Olympus")
        )
    ),
    "not scheduled": lambda b, q: (
        lambda f: getattr(b.scheduler, f).ensure_schedule(queue=q, type="t")
    ),
    "pause unknown": lambda b, q: lambda f: getattr(b.scheduler, f).pause(queue=q, type="t"),
}


def outcome(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as e:
        return e
    pytest.fail("no error was raised")


@pytest.mark.parametrize("case", list(CASES))
def test_both_faces_raise_the_same_error(both: Both, queue_name: str, case: str) -> None:
    call = CASES[case](both, queue_name)
    sync_error = outcome(lambda: call("sync"))
    async_error = outcome(lambda: call("aio"))
    assert type(async_error) is type(sync_error)
    assert str(async_error) == str(sync_error)
    assert async_error.args == sync_error.args
    attributes = {k: v for k, v in vars(sync_error).items() if not k.startswith("_")}
    assert {k: getattr(async_error, k, None) for k in attributes} == attributes


@pytest.mark.parametrize("bad", ["", "a-b", 'x"; DROP SCHEMA public; --'])
def test_both_faces_refuse_a_bad_schema_name_alike(database_url: str, bad: str) -> None:
    errors = []
    for face in faces.FACES:
        with pytest.raises(ValueError) as e:
            faces.build(face, "Queuer", database_url, schema=bad)
        errors.append((type(e.value), str(e.value)))
    assert errors[0] == errors[1]


# ---- close and context managers ----------------------------------------------------------


@pytest.mark.parametrize("name", faces.NAMES)
def test_an_object_built_from_a_uri_closes_its_pool(
    make: Any, database_url: str, schema: str, name: str
) -> None:
    use = {
        "Queuer": lambda o: o.enqueue(R("close-me", "t")),
        "Dequeuer": lambda o: o.dequeue("close-me", timeout=0),
        "Tasks": lambda o: o.list(queue="close-me"),
        "Scheduler": lambda o: o.list_schedules("close-me"),
    }[name]
    with make.build(name, database_url, schema=schema) as obj:
        assert obj.schema == schema
        pool = obj.database._pool
        use(obj)  # the asyncio face opens its pool on first use
        assert not pool.closed
    assert pool.closed
    obj.close()  # again: nothing happens
    assert pool.closed

    unused = make.build(name, database_url, schema=schema)
    unused.close()  # closed before any use
    unused.close()


def test_a_closed_queuer_refuses_to_work_in_both_faces(
    make: Any, database_url: str, schema: str
) -> None:
    q = make.Queuer(database_url, schema=schema)
    q.enqueue(R("closed", "t"))
    q.close()
    with pytest.raises(psycopg_pool.PoolClosed):
        q.enqueue(R("closed", "t"))


def test_the_listener_closes_with_its_object(make: Any, database_url: str, schema: str) -> None:
    d = make.Dequeuer(database_url, schema=schema)
    listener = d.listener()
    assert listener is not None and listener.connected
    assert d.listener() is listener  # one per object, shared by its waits
    d.close()
    assert not listener.connected


# ---- the asyncio face's db forms ------------------------------------------------------------


ASYNC_CLASSES = [taskq.aio.AsyncQueuer, taskq.aio.AsyncDequeuer, taskq.aio.AsyncTasks,
                 taskq.aio.AsyncScheduler]  # fmt: skip


@pytest.mark.parametrize("cls", ASYNC_CLASSES, ids=lambda c: c.__name__)
async def test_async_objects_built_from_a_uri_own_a_pool_and_close_it(
    cls: Any, database_url: str, schema: str
) -> None:
    async with cls(database_url, schema=schema) as obj:
        assert obj.schema == schema
        await obj.database.wait_ready(30)
        pool = obj.database._pool
        assert not pool.closed
    assert pool.closed
    await obj.close()  # idempotent
    other = cls(database_url, schema=schema)
    await other.close()  # never used


@pytest.mark.parametrize("cls", ASYNC_CLASSES, ids=lambda c: c.__name__)
async def test_async_objects_use_a_callers_pool_and_connection_and_leave_them_open(
    cls: Any, database_url: str, schema: str
) -> None:
    async with psycopg_pool.AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    ) as pool:
        obj = cls(pool, schema=schema)
        assert obj.database.joins_caller is False
        await obj.close()
        assert not pool.closed
        async with pool.connection() as c:
            assert await (await c.execute("SELECT 1")).fetchone() == (1,)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        obj = cls(conn, schema=schema)
        assert obj.database.joins_caller is True
        await obj.close()
        assert not conn.closed


@pytest.mark.parametrize("cls", ASYNC_CLASSES, ids=lambda c: c.__name__)
async def test_async_objects_refuse_what_is_not_an_async_database(
    cls: Any, database_url: str
) -> None:
    with pytest.raises(TypeError):
        cls(42, schema="taskq")
    with psycopg.connect(database_url, autocommit=True) as sync_conn:
        with pytest.raises(TypeError):
            cls(sync_conn, schema="taskq")
    with psycopg_pool.ConnectionPool(database_url, min_size=1, open=False) as sync_pool:
        with pytest.raises(TypeError):
            cls(sync_pool, schema="taskq")


@pytest.mark.parametrize("name", faces.NAMES)
def test_sync_objects_refuse_async_connections(name: str, database_url: str) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as aconn:
            with pytest.raises(TypeError):
                getattr(taskq, name)(aconn, schema="taskq")
        pool = psycopg_pool.AsyncConnectionPool(database_url, open=False)
        with pytest.raises(TypeError):
            getattr(taskq, name)(pool, schema="taskq")

    asyncio.run(go())


@pytest.mark.parametrize("cls", ASYNC_CLASSES, ids=lambda c: c.__name__)
def test_async_objects_refuse_a_sync_sqlalchemy_session_or_connection(
    cls: Any, database_url: str, schema: str
) -> None:
    """A SQLAlchemy Session handed to the asyncio face is refused when it is given,
    as a psycopg Connection is, not with an obscure error at the first statement."""
    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with Session(engine) as session, pytest.raises(TypeError):
            cls(session, schema=schema)
        with engine.connect() as sa_conn, pytest.raises(TypeError):
            cls(sa_conn, schema=schema)
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", faces.NAMES)
async def test_sync_objects_refuse_an_async_sqlalchemy_session_or_connection(
    name: str, database_url: str, schema: str
) -> None:
    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(TypeError):
                getattr(taskq, name)(session, schema=schema)
        async with engine.connect() as sa_conn:
            with pytest.raises(TypeError):
                getattr(taskq, name)(sa_conn, schema=schema)
    finally:
        await engine.dispose()


# ---- the suite really runs through the asyncio face ------------------------------------------

API_MODULES = {
    "test_core_queuer.py", "test_core_dequeuer.py", "test_core_fencing.py",
    "test_core_tasks.py", "test_core_concurrency.py", "test_core_references.py",
    "test_scheduler_api.py", "test_bad_input.py", "test_workflows.py",
}  # fmt: skip

MUST_RUN_ASYNC = [
    "test_bad_request_raises_value_error_and_stores_nothing[async-NUL in spec value]",
    "test_empty_queue_raises_queue_not_specified[async-]",
    "test_write_with_the_old_claim_after_rescue_raises_lease_lost_and_changes_nothing"
    "[async-rescued-to-waiting-finish]",
    "test_write_with_the_old_claim_after_another_claim_raises_lease_lost[async-heartbeat]",
    "test_watch_yields_each_progress_change_and_ends_final[async]",
    "test_wait_returns_when_another_thread_finishes_the_task[async]",
    "test_watch_raises_timeout_error[async]",
    "test_blocked_dequeue_is_woken_by_an_enqueue_from_another_connection[async-named-queue]",
    "test_chain_passes_results_along[async]",
    "test_invalid_schedule_names_the_schedule[async]",
]


def test_every_api_test_runs_through_both_faces(request: pytest.FixtureRequest) -> None:
    items = [i for i in request.session.items if i.path.name in API_MODULES]
    if {i.path.name for i in items} != API_MODULES:
        pytest.skip("only meaningful when the API modules are collected too")
    names = {i.name for i in items}
    missing = [n for n in MUST_RUN_ASYNC if n not in names]
    assert not missing, f"not collected through the asyncio face: {missing}"
    by_test: dict[tuple[str, str], set[str]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "face" in callspec.params:
            rest = item.name.replace(f"[{callspec.params['face']}", "[", 1)
            by_test.setdefault((item.path.name, rest), set()).add(callspec.params["face"])
    one_face = sorted(k for k, v in by_test.items() if v != set(faces.FACES))
    assert not one_face, f"tests run through one face only: {one_face}"
    assert len(by_test) > 250  # every API test, counted once per pair of faces
