"""Fixtures over tests/support: a PgBouncer in front of the session's database, a
streaming replica of it, throwaway roles. Import them into a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.pgbouncer import PgBouncer
from support.replica import Replica
from support.roles import Roles


@pytest.fixture(scope="module")
def pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode, 2 server connections, in front of the test server."""
    with PgBouncer(database_url, pool_mode="transaction", default_pool_size=2) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def replica(database_url: str) -> Iterator[Replica]:
    """A hot standby of the test server (skips where the server refuses replication)."""
    with Replica(database_url) as standby:
        yield standby


@pytest.fixture
def roles(database_url: str) -> Iterator[Roles]:
    """Throwaway login roles, all dropped after the test."""
    with Roles(database_url) as made:
        yield made
