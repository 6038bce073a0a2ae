"""The pytest fixtures of ``taskq.testing`` (loaded with ``pytest -p taskq.testing``,
or automatically through the ``pytest11`` entry point)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from taskq.db import Database
from taskq.db.migrate import drop_schema, migrate

ENV_TEST_URL = "TASKQ_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def taskq_database_url() -> str:
    """The server the tests use: ``TASKQ_TEST_DATABASE_URL``, else taskq's embedded
    PostgreSQL (started on first use and kept running, like ``taskq`` itself does;
    ``TASKQ_EMBEDDED_DIR`` moves its data)."""
    given = os.environ.get(ENV_TEST_URL)
    if given:
        return given
    from taskq.db.embedded import embedded_url

    return embedded_url()


@pytest.fixture
def taskq_db(taskq_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated, empty taskq schema of this test's own, dropped afterwards.

    The value is a taskq ``Database``: pass it as ``db`` to ``Queuer``, ``Dequeuer``,
    ``Tasks``, ``Scheduler`` and ``drain``; ``.url`` and ``.schema`` say where it is
    (for ``taskq.aio`` classes, subprocesses and your own connections). For the
    test's duration ``TASKQ_DATABASE_URL`` and ``TASKQ_SCHEMA`` point at it too, so
    code that builds ``taskq.Queuer()`` from the environment lands there.
    """
    url = taskq_database_url
    schema = f"taskq_test_{uuid.uuid4().hex[:12]}"
    migrate(url, schema)
    monkeypatch.setenv("TASKQ_DATABASE_URL", url)
    monkeypatch.setenv("TASKQ_SCHEMA", schema)
    db = Database(url, schema, max_size=4)
    try:
        yield db
    finally:
        db.close()
        drop_schema(url, schema)
