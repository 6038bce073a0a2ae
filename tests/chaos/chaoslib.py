"""What the chaos tests share: the cluster they own, processes, and small queries."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql


@dataclass
class Cluster:
    """A PostgreSQL server the tests own: restart it, crash it, read its clock."""

    pgdata: Path
    url: str
    user: str | None  # the system user the server runs as (when the tests run as root)
    socket_dir: Path

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from taskq.db.embedded import server_bin_dir

        cmd = [str(server_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args]
        subprocess.run(
            cmd, check=True, timeout=timeout, user=self.user,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: the server comes back with the same options."""
        self.pg_ctl("-w", "-m", mode, "-l", str(self.pgdata / "log"), "restart")

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m MODE`` (immediate: a crash, recovery runs at the next start)."""
        self.pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        self.pg_ctl(
            "-w", "-l", str(self.pgdata / "log"),
            "-o", f'-h "" -k {self.socket_dir}', "start",
        )  # fmt: skip

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / ".s.PGSQL.5432"

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def query(self, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows (if any)."""
        with self.connect() as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


def socket_dir(url: str) -> Path:
    host = psycopg.conninfo.conninfo_to_dict(url).get("host")
    assert host and str(host).startswith("/"), url
    return Path(str(host))


@dataclass
class Proc:
    """A taskq process started by a test, its output going to a file."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    args: tuple[str, ...] = field(default=())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill9(self) -> None:
        """SIGKILL, and reap it."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status (fails the test on a hang)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            pytest.fail(f"taskq process {self.pid} ignored SIGTERM for {timeout}s:\n{self.log()}")


Spawn = Callable[..., Proc]


def worker_args(*extra: str, concurrency: int = 4) -> tuple[str, ...]:
    return ("worker", "taskq_test_app:registry", "--concurrency", str(concurrency), *extra)


def wait_registered(cluster: Cluster, schema: str, proc: Proc, timeout: float = 30) -> str:
    """Wait until ``proc`` has registered its worker row; returns the worker id."""
    query = sql.SQL(
        "SELECT id::text FROM {} WHERE pid = %s AND stopped_at IS NULL ORDER BY started_at DESC"
    ).format(sql.Identifier(schema, "workers"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            pytest.fail(f"worker {proc.pid} exited ({proc.popen.returncode}):\n{proc.log()}")
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            row = conn.execute(query, (proc.pid,)).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.1)
    pytest.fail(f"worker {proc.pid} did not register within {timeout}s:\n{proc.log()}")


def status_counts(cluster: Cluster, schema: str) -> dict[str, int]:
    """Tasks per status in ``schema``."""
    rows = cluster.query(
        sql.SQL("SELECT status, count(*) FROM {} GROUP BY status").format(
            sql.Identifier(schema, "tasks")
        )
    )
    return {str(s): int(n) for s, n in rows}


class StallingProxy:
    """A loopback TCP proxy, 127.0.0.1:<port> to the cluster's Unix socket.

    ``stall()`` stops forwarding on every connection open at that moment without
    closing anything: the client's kernel still gets ACKs, so to the client the
    connection looks alive but no answer ever comes (a hung peer, a half-open flow).
    Connections made later are forwarded normally, as when a NAT or load balancer
    loses its state for old flows only. ``close()`` ends everything.
    """

    def __init__(self, target: Path) -> None:
        import socket

        self.target = str(target)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[Any, Any, threading.Event]] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres" + (
            f"?{query}" if query else ""
        )

    def _accept(self) -> None:
        import socket

        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                continue
            stalled = threading.Event()
            with self._lock:
                self._pairs.append((client, server, stalled))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b, stalled), daemon=True).start()

    def _pump(self, src: Any, dst: Any, stalled: threading.Event) -> None:
        import select

        while not self._closed.is_set():
            if stalled.is_set():
                time.sleep(0.1)  # hold the sockets open, read nothing, send nothing
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready or stalled.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except (OSError, ValueError):  # closed under us (close(), or the peer)
                break
        if not stalled.is_set():
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def stall(self) -> int:
        """Stop forwarding on every open connection; returns how many."""
        with self._lock:
            for _, _, stalled in self._pairs:
                stalled.set()
            return len(self._pairs)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        with self._lock:
            for a, b, _ in self._pairs:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass


def wait_started(proc: Proc, timeout: float = 30) -> None:
    """Until ``taskq scheduler`` has started (its signal handlers are in place)."""
    deadline = time.monotonic() + timeout
    while "scheduler started" not in proc.log():
        if not proc.alive() or time.monotonic() > deadline:
            pytest.fail(f"scheduler {proc.pid} did not start:\n{proc.log()}")
        time.sleep(0.1)
