"""The PgBouncer harness itself: it pools for real (clients share 2 server connections)
and reproduces the prepared-statement hazard that taskq's pooler mode must avoid:
psycopg's default ``prepare_threshold`` breaks through it, ``prepare_threshold=None``
does not."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import errors
from support import pgbouncer as pgbouncer_mod
from support.pgbouncer import PgBouncer

# What a client sees when another client's prepared statement is in its way.
PREPARED_HAZARDS = (
    errors.DuplicatePreparedStatement,  # _pg3_0 already exists on this server connection
    errors.InvalidSqlStatementName,  # _pg3_0 was prepared on another server connection
    errors.ProtocolViolation,  # _pg3_0 here takes a different number of parameters
)


@dataclass
class Outcome:
    executions: int = 0
    wrong_results: int = 0
    hazards: Counter[str] = field(default_factory=Counter)
    other_errors: Counter[str] = field(default_factory=Counter)
    backend_pids: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def hammer(
    url: str, *, prepare_threshold: int | None, clients: int = 6, iterations: int = 400
) -> Outcome:
    """``clients`` threads, each on its own connection through ``url``, each running
    its own query (``SELECT <i>, %s, pg_backend_pid()``) up to ``iterations`` times.
    A result naming another client's ``i`` is a wrong result: this client ran that
    client's prepared statement. Stops early once a hazard has shown."""
    out = Outcome()
    seen = threading.Event()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=prepare_threshold)
        try:
            start.wait(30)
            query = f"SELECT {i}::int AS who, %s::int AS arg, pg_backend_pid() AS pid"
            for n in range(iterations):
                if seen.is_set():
                    return
                try:
                    row = conn.execute(query, (n,)).fetchone()
                except PREPARED_HAZARDS as exc:
                    with out.lock:
                        out.hazards[f"{type(exc).__name__}: {exc}".splitlines()[0]] += 1
                    seen.set()
                    continue
                except psycopg.Error as exc:
                    with out.lock:
                        out.other_errors[f"{type(exc).__name__}: {exc}".splitlines()[0]] += 1
                    if conn.broken or conn.closed:
                        conn.close()
                        conn = psycopg.connect(
                            url, autocommit=True, prepare_threshold=prepare_threshold
                        )
                    continue
                with out.lock:
                    out.executions += 1
                    assert row is not None
                    out.backend_pids.add(row[2])
                    if (row[0], row[1]) != (i, n):
                        out.wrong_results += 1
                        seen.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    return out


def test_pooler_forwards_as_the_same_user_and_database(
    database_url: str, pgbouncer: PgBouncer
) -> None:
    with psycopg.connect(database_url) as direct:
        expected = direct.execute("SELECT current_user, current_database()").fetchone()
    with psycopg.connect(pgbouncer.url) as pooled:
        got = pooled.execute("SELECT current_user, current_database()").fetchone()
    assert got == expected
    assert pgbouncer.url.startswith("postgresql://")
    assert f"127.0.0.1:{pgbouncer.port}/" in pgbouncer.url
    pools = [p for p in pgbouncer.admin("SHOW POOLS") if p["database"] != "pgbouncer"]
    assert {p["pool_mode"] for p in pools} == {"transaction"}


def test_pooler_does_not_handle_prepared_statements(pgbouncer: PgBouncer) -> None:
    config = {row["key"]: row["value"] for row in pgbouncer.admin("SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == "2"
    if pgbouncer.version >= (1, 21, 0):
        assert config["max_prepared_statements"] == "0"
    else:
        assert "max_prepared_statements" not in config  # no such feature before 1.21


def test_pooler_never_runs_as_root(pgbouncer: PgBouncer) -> None:
    assert pgbouncer.pid is not None
    status = open(f"/proc/{pgbouncer.pid}/status").read()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert "0" not in uids
    if os.geteuid() == 0:
        assert pgbouncer.os_user is not None
        assert uids[0] == str(pgbouncer.os_user.pw_uid)


def test_default_prepare_threshold_collides_through_the_pooler(pgbouncer: PgBouncer) -> None:
    out = hammer(pgbouncer.url, prepare_threshold=5)
    assert out.hazards or out.wrong_results, (
        f"no prepared-statement hazard within 6 clients x 400 queries: {out}"
    )


def test_prepare_threshold_none_is_clean_through_the_pooler(pgbouncer: PgBouncer) -> None:
    out = hammer(pgbouncer.url, prepare_threshold=None)
    assert not out.hazards
    assert not out.other_errors
    assert out.wrong_results == 0
    assert out.executions == 6 * 400
    # Six clients really shared the pool's two server connections.
    assert 1 <= len(out.backend_pids) <= 2


def test_one_server_connection_collides_deterministically(database_url: str) -> None:
    """Two clients, one server connection: the second to prepare gets _pg3_0 taken."""
    with PgBouncer(database_url, default_pool_size=1) as bouncer:
        first = psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=5)
        second = psycopg.connect(bouncer.url, autocommit=True)
        try:
            for n in range(8):
                assert first.execute("SELECT 1, %s::int", (n,)).fetchone() == (1, n)
            with pytest.raises(errors.DuplicatePreparedStatement, match="_pg3_0"):
                for n in range(8):
                    second.execute("SELECT 2, %s::int", (n,)).fetchone()
        finally:
            first.close()
            second.close()


def test_stop_ends_the_process_even_with_a_client_in_a_transaction(database_url: str) -> None:
    bouncer = PgBouncer(database_url)
    pid, folder = bouncer.pid, bouncer.dir
    assert pid is not None and folder.exists()
    client = psycopg.connect(bouncer.url)
    try:
        client.execute("SELECT 1")  # holds a server connection: transaction open
        bouncer.stop()
    finally:
        client.close()
    assert bouncer.pid is None
    assert not os.path.exists(f"/proc/{pid}")
    assert not folder.exists()
    bouncer.stop()  # idempotent


def test_ensure_pgbouncer_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgbouncer_mod, "find_pgbouncer", lambda: None)
    monkeypatch.setattr(pgbouncer_mod, "running_as_root", lambda: False)
    with pytest.raises(pytest.skip.Exception, match=r"cannot install it \(not root\)"):
        pgbouncer_mod.ensure_pgbouncer()


def test_ensure_pgbouncer_finds_the_binary() -> None:
    path = pgbouncer_mod.ensure_pgbouncer()
    assert os.access(path, os.X_OK)
    assert pgbouncer_mod.pgbouncer_version(path) >= (1, 0, 0)
