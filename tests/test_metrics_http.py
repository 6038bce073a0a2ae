"""The HTTP endpoint of `taskq worker` (/metrics, /healthz), run for real: it binds
127.0.0.1 unless --metrics-host says otherwise, answers /healthz over one reused
database connection, drops idle and half-sent requests without piling up threads,
and never names the host."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from helpers import pooler_clients, wait_for
from test_metrics import WorkerProcess

from taskq.ops.http import MAX_CLIENTS, REQUEST_TIMEOUT

pytestmark = pytest.mark.faces("sync")


def other_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
            ip: str = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def get(host: str, port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """A raw HTTP/1.0 GET: the status and the whole response, headers included."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        raise ConnectionResetError("closed without a response (busy)")
    return int(data.split(b" ", 2)[1]), data


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return False
    except OSError:
        return True


@pytest.fixture
def worker(database_url: str, schema: str) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        w = WorkerProcess(database_url, schema, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def test_binds_loopback_by_default_and_metrics_host_moves_it(worker: Any) -> None:
    ip = other_address()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    w = worker()
    w.wait_serving()
    assert get("127.0.0.1", w.port, "/healthz")[0] == 200
    assert refused(ip, w.port), f"reachable on {ip}: it should bind 127.0.0.1 only"

    moved = worker("--metrics-host", ip)
    wait_for(lambda: moved.proc.poll() is not None or not refused(ip, moved.port),
             timeout=60, what="the worker serving on its --metrics-host")  # fmt: skip
    assert moved.proc.poll() is None, moved.output()
    assert get(ip, moved.port, "/healthz")[0] == 200
    assert refused("127.0.0.1", moved.port)


def backends_of(conn: psycopg.Connection[Any], pid: int) -> dict[str, str]:
    """The database connections of the process ``pid`` (-> application_name): the
    server backends it reaches directly ("backend PID"), and behind the pooler leg
    PgBouncer's clients it opened ("pooler client :PORT", by the process's own port;
    the server backends behind them are the pooler's, lent to any client)."""
    ports = [c.laddr.port for c in psutil.Process(pid).net_connections("tcp")
             if c.raddr and c.status == psutil.CONN_ESTABLISHED]  # fmt: skip
    rows = conn.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE client_port = ANY(%s)"
        " AND client_addr IS NOT NULL",
        (ports,),
    ).fetchall()
    found = {f"backend {r[0]}": r[1] for r in rows}
    for client in pooler_clients() or []:
        if client["port"] in ports:
            found[f"pooler client :{client['port']}"] = client["application_name"]
    return found


def test_many_healthz_requests_reuse_one_database_connection(
    worker: Any, conn: psycopg.Connection[Any]
) -> None:
    if conn.info.host.startswith("/"):
        pytest.skip("tells the worker's backends apart by TCP client port; this server is "
                    "reached over a Unix socket (the run on a TCP server checks it)")  # fmt: skip
    w = worker()
    w.wait_serving()
    assert get("127.0.0.1", w.port, "/healthz")[0] == 200
    before = backends_of(conn, w.proc.pid)
    ops = [pid for pid, name in before.items() if name == "taskq-ops"]
    assert len(ops) == 1, before
    for _ in range(100):
        assert get("127.0.0.1", w.port, "/healthz")[0] == 200
    after = backends_of(conn, w.proc.pid)
    # the same one backend answered them all: no connection per request, none left over
    assert [pid for pid, name in after.items() if name == "taskq-ops"] == ops, (before, after)


BOUND = MAX_CLIENTS + 8
"""Threads a flood may add: one per request served at once, and a few the worker may
start meanwhile for its own work (its pool's)."""


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_half_sent_requests_are_dropped_and_threads_stay_bounded(worker: Any) -> None:
    w = worker()
    w.wait_serving()
    # the worker's own threads (pool, heartbeats, listener) start after the endpoint:
    # the baseline is taken once their number holds still
    counts = [threads(w.proc.pid)]

    def settled() -> bool:
        time.sleep(0.5)
        counts.append(threads(w.proc.pid))
        last = counts[-3:]
        return "started" in w.output() and len(last) == 3 and len(set(last)) == 1

    wait_for(settled, timeout=60, what="the worker's threads to settle")
    base = counts[-1]
    held: list[socket.socket] = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
            s.sendall(b"GET /heal")  # half a request line, never finished
            held.append(s)
        time.sleep(0.5)
        assert threads(w.proc.pid) <= BOUND + base, (base, threads(w.proc.pid))

        def answers() -> bool:
            try:
                return get("127.0.0.1", w.port, "/healthz", timeout=5)[0] == 200
            except OSError:
                return False

        # while the 300 connections stay open, /healthz answers again within the
        # request timeout (the half-sent ones are dropped)
        wait_for(answers, timeout=REQUEST_TIMEOUT * 4, what="/healthz during the flood")
        assert threads(w.proc.pid) <= BOUND + base
        # the server closed every half-sent connection: refused at once, or dropped
        # after the request timeout
        for s in held:
            s.settimeout(REQUEST_TIMEOUT * 3)
            try:
                assert s.recv(1024) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in held:
            s.close()
    wait_for(lambda: threads(w.proc.pid) <= base + 8, timeout=REQUEST_TIMEOUT * 4,
             what="the request threads to end")  # fmt: skip


def test_responses_never_name_the_host(worker: Any) -> None:
    host = socket.gethostname()
    fqdn = socket.getfqdn()
    w = worker()
    w.wait_serving()
    for path in ("/metrics", "/healthz", "/nothing-here", "/healthz?x=1"):
        _, data = get("127.0.0.1", w.port, path)
        text = data.decode(errors="replace")
        assert host not in text, (path, text[:2000])
        assert fqdn not in text or fqdn in ("localhost",), (path, text[:2000])
    with socket.create_connection(("127.0.0.1", w.port), timeout=10) as s:
        s.sendall(b"BOGUS / HTTP/1.0\r\n\r\n")
        data = s.recv(65536)
    assert host.encode() not in data, data
