"""The replica harness itself: a hot standby of the test server that serves what the
primary committed once caught up, and refuses writes. Skips where the server refuses
replication (this machine's PostgreSQL 15 has no ``replication`` line in pg_hba.conf)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from support.replica import Replica

import taskq


@pytest.fixture
def table(database_url: str) -> Iterator[sql.Identifier]:
    """A table of its own on the primary, dropped after the test."""
    name = sql.Identifier(f"replica_probe_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(name))
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))


def _rows(url: str, table: sql.Identifier) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.SQL("SELECT id, note FROM {} ORDER BY id").format(table)).fetchall()


def test_replica_serves_what_the_primary_committed(
    database_url: str, replica: Replica, table: sql.Identifier
) -> None:
    with psycopg.connect(database_url) as primary:
        primary.execute(sql.SQL("INSERT INTO {} VALUES (1, 'hello')").format(table))
    replica.wait_caught_up(timeout=30)
    assert _rows(replica.url, table) == [(1, "hello")]


def test_replica_is_a_read_only_standby(replica: Replica, table: sql.Identifier) -> None:
    replica.wait_caught_up(timeout=30)
    with psycopg.connect(replica.url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row == (True,)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute(sql.SQL("INSERT INTO {} VALUES (2, 'no')").format(table))


def test_replica_uses_the_primarys_major_version(database_url: str, replica: Replica) -> None:
    with psycopg.connect(database_url) as primary, psycopg.connect(replica.url) as standby:
        ours = primary.execute("SHOW server_version_num").fetchone()
        theirs = standby.execute("SHOW server_version_num").fetchone()
    assert ours is not None and theirs is not None
    assert int(ours[0]) // 10000 == int(theirs[0]) // 10000 == replica.major


def test_wait_caught_up_waits_for_replay(
    database_url: str, replica: Replica, table: sql.Identifier
) -> None:
    """With replay paused the row is not there and the wait times out naming both
    positions; resumed, the wait returns and the row is there."""
    replica.wait_caught_up(timeout=30)
    with psycopg.connect(replica.url, autocommit=True) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with psycopg.connect(database_url) as primary:
                primary.execute(sql.SQL("INSERT INTO {} VALUES (3, 'later')").format(table))
            with pytest.raises(TimeoutError, match="replayed up to"):
                replica.wait_caught_up(timeout=0.5)
            assert _rows(replica.url, table) == []
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    replica.wait_caught_up(timeout=30)
    assert _rows(replica.url, table) == [(3, "later")]


def test_taskq_reads_a_task_from_the_replica(database_url: str, replica: Replica) -> None:
    schema = f"t_replica_{uuid.uuid4().hex[:10]}"
    taskq.migrate(database_url, schema)
    try:
        with taskq.Queuer(database_url, schema=schema) as queuer:
            task = queuer.enqueue(queue="replica", type="probe", spec={"n": 1})
        replica.wait_caught_up(timeout=30)
        with taskq.Tasks(replica.url, schema=schema) as tasks:
            seen = tasks.get(task.id)
        assert (seen.id, seen.spec, seen.status) == (task.id, {"n": 1}, taskq.TaskStatus.WAITING)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_stop_leaves_nothing_behind(database_url: str) -> None:
    standby = Replica(database_url)
    pid, folder, port = standby.pid, standby.dir, standby.port
    assert pid is not None and folder.exists()
    standby.stop()
    assert standby.pid is None
    assert not os.path.exists(f"/proc/{pid}")
    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://127.0.0.1:{port}/postgres", connect_timeout=2)
    standby.stop()  # idempotent
