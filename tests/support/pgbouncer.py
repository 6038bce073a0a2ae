"""A real PgBouncer in front of the test server, for proving taskq's pooler-safe mode.

    with PgBouncer(database_url) as bouncer:          # transaction mode, pool of 2
        psycopg.connect(bouncer.url)                   # same user and database

The pooler runs Debian's ``pgbouncer`` (``ensure_pgbouncer()`` installs it with apt
when it is missing and we are root, else skips the test). It listens on a free
loopback port, forwards to the upstream given by URL (TCP or a Unix socket, such as
the embedded server's), trusts every user listed in its auth file (the upstream
user, plus any added with ``add_user``), and never handles prepared statements for
its clients (``max_prepared_statements = 0`` where the option exists, PgBouncer
1.21+; older versions have no such feature): what the tests see is what taskq does.

As root, PgBouncer (which refuses root) runs as the owner of the upstream's socket
directory, or as ``postgres``/``nobody``; its config, log and pidfile live in a
private temp directory owned by that user.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ._proc import (
    default_socket_dir,
    env_without_pg,
    free_port,
    is_socket_host,
    make_url,
    parse_url,
    private_dir,
    remove_dir,
    running_as_root,
    service_user,
    spawn,
    stop_process,
    tail,
    wait_until,
)

PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")
INSTALL_LOCK = Path("/tmp/taskq-test-apt-pgbouncer.lock")
_NOT_INSTALLABLE = "pgbouncer is not installed and this process cannot install it"


def find_pgbouncer() -> str | None:
    """The path of the ``pgbouncer`` binary, or None."""
    for path in PGBOUNCER_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("pgbouncer")


def _apt_install(timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=120",
            "pgbouncer",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_pgbouncer(timeout: float = 300.0) -> str:
    """The ``pgbouncer`` binary's path. When it is missing and we are root with
    apt-get, install Debian's package (one process at a time: a lock file keeps
    pytest-xdist workers from racing for dpkg); otherwise ``pytest.skip`` saying
    what is missing."""
    found = find_pgbouncer()
    if found:
        return found
    if not running_as_root():
        pytest.skip(f"{_NOT_INSTALLABLE} (not root)")
    if shutil.which("apt-get") is None:
        pytest.skip(f"{_NOT_INSTALLABLE} (no apt)")
    with open(INSTALL_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_pgbouncer()
        if found:
            return found
        done = _apt_install(timeout)
        if done.returncode != 0:
            # A new machine may have no package lists yet.
            subprocess.run(
                ["apt-get", "update", "-q"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
            done = _apt_install(timeout)
    found = find_pgbouncer()
    if not found:
        pytest.skip(
            "pgbouncer is not installed and `apt-get install -y pgbouncer` failed: "
            + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )
    return found


def pgbouncer_version(binary: str) -> tuple[int, int, int]:
    """The version ``pgbouncer --version`` reports, e.g. (1, 18, 0)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise RuntimeError(f"cannot read the version of {binary}: {out!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def _ini_value(value: str) -> str:
    if any(c in value for c in " ;#='\""):
        return "'" + value.replace("'", "''") + "'"
    return value


def _db_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_]+", name) else '"' + name.replace('"', '""') + '"'


class PgBouncer:
    """A PgBouncer process in front of ``upstream_url``.

    ``url`` is the client URL through the pooler (same user and database as the
    upstream URL, ``127.0.0.1:port``); ``admin_url`` reaches its admin console
    (``SHOW POOLS`` etc., see ``admin()``). ``settings`` adds or overrides
    ``[pgbouncer]`` settings. Starts in the constructor; ``stop()`` (or leaving the
    ``with`` block) ends the process and removes its directory.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 2,
        max_client_conn: int = 1000,
        settings: Mapping[str, Any] | None = None,
        binary: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.binary = binary or ensure_pgbouncer()
        self.version = pgbouncer_version(self.binary)
        self.upstream_url = upstream_url
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        self._extra = {k: str(v) for k, v in (settings or {}).items()}

        up = parse_url(upstream_url)
        self.user = up.get("user") or os.environ.get("PGUSER") or _login_name()
        self.dbname = up.get("dbname") or self.user
        self._up_host = up.get("host") or default_socket_dir()
        self._up_port = up.get("port") or "5432"
        self._passwords = {self.user: up.get("password", "")}
        self.os_user = service_user(self._up_host if is_socket_host(self._up_host) else None)

        self.dir = private_dir("taskq-pgbouncer-", self.os_user)
        self.config_path = self.dir / "pgbouncer.ini"
        self.auth_file = self.dir / "userlist.txt"
        self.log_path = self.dir / "pgbouncer.log"
        self.pidfile = self.dir / "pgbouncer.pid"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise

    # -- URLs ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The client URL through the pooler: the upstream's user and database."""
        return self.url_for(self.user)

    def url_for(self, user: str, dbname: str | None = None, password: str | None = None) -> str:
        """A client URL through the pooler for another user (see ``add_user``)."""
        return make_url(
            {
                "user": user,
                "password": password,
                "host": "127.0.0.1",
                "port": self.port,
                "dbname": dbname or self.dbname,
            }
        )

    @property
    def admin_url(self) -> str:
        return self.url_for(self.user, dbname="pgbouncer")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- configuration --------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        s = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.auth_file),
            "admin_users": self.user,
            "stats_users": self.user,
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.default_pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(self.max_client_conn),
            "logfile": str(self.log_path),
            "pidfile": str(self.pidfile),
            "server_tls_sslmode": "disable",
            "server_login_retry": "1",
            "log_connections": "0",
            "log_disconnections": "0",
            "log_pooler_errors": "1",
        }
        if self.version >= (1, 21, 0):
            # 1.21+ can track protocol-level prepared statements for its clients;
            # 0 keeps that off so taskq's own behaviour is what gets tested.
            s["max_prepared_statements"] = "0"
        s.update(self._extra)
        return s

    def _write_config(self) -> None:
        target = f"host={self._up_host} port={self._up_port}"
        lines = [
            "[databases]",
            f"{_db_name(self.dbname)} = {target} dbname={_ini_value(self.dbname)}",
            f"* = {target}",
            "",
            "[pgbouncer]",
            *(f"{k} = {_ini_value(v) if v else ''}" for k, v in self._settings().items()),
            "",
        ]
        self._write(self.config_path, "\n".join(lines))
        self._write_auth_file()

    def _write_auth_file(self) -> None:
        def q(s: str) -> str:
            return '"' + s.replace('"', '""') + '"'

        self._write(
            self.auth_file,
            "".join(f"{q(u)} {q(p)}\n" for u, p in self._passwords.items()),
        )

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        if self.os_user is not None:
            os.chown(tmp, self.os_user.pw_uid, self.os_user.pw_gid)
        tmp.chmod(0o600)
        tmp.replace(path)

    # -- life cycle -------------------------------------------------------------------

    def _start(self, timeout: float) -> None:
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            self._write_config()
            self._proc = spawn(
                [self.binary, str(self.config_path)],
                user=self.os_user,
                log_path=self.dir / "stderr.log",
                death_signal=signal.SIGKILL,
                env=env_without_pg(),
                cwd=self.dir,
            )
            try:
                wait_until(
                    self._answers,
                    timeout,
                    f"pgbouncer on 127.0.0.1:{self.port}",
                    alive=self._exited,
                )
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self._terminate()
                if "Address already in use" not in last_error:
                    raise
        raise RuntimeError(f"pgbouncer did not start: {last_error}")

    def _exited(self) -> str | None:
        if self._proc is None or self._proc.poll() is None:
            return None
        return (
            f"pgbouncer exited with status {self._proc.returncode}:\n"
            + tail(self.dir / "stderr.log")
            + "\n"
            + tail(self.log_path)
        )

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2, autocommit=True) as conn:
                psycopg.ClientCursor(conn).execute("SHOW VERSION")
            return True
        except psycopg.OperationalError:
            return False

    def _stop_signal(self) -> signal.Signals:
        # Immediate shutdown: SIGTERM up to 1.22; from 1.23 SIGTERM waits for every
        # client to leave and SIGQUIT is the immediate one.
        return signal.SIGQUIT if self.version >= (1, 23, 0) else signal.SIGTERM

    def _terminate(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, self._stop_signal(), timeout=10)
            self._proc = None

    def stop(self) -> None:
        """End the pooler process (by its PID, waiting for it to exit) and remove its
        directory. Idempotent."""
        try:
            self._terminate()
        finally:
            remove_dir(self.dir)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin console ------------------------------------------------------------------

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run an admin-console command (``SHOW POOLS``, ``RELOAD``...) and return
        its rows as dicts. The console speaks only the simple query protocol, hence
        the client-side cursor."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            cur = psycopg.ClientCursor(conn)
            cur.execute(command)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def add_user(self, user: str, password: str = "") -> str:
        """Let ``user`` log in through the pooler (PgBouncer's trust auth still needs
        the name in its auth file; the password is what it sends upstream if the
        server asks for one). Returns that user's client URL."""
        self._passwords[user] = password
        self._write_auth_file()
        self.admin("RELOAD")
        return self.url_for(user)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _login_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


@contextmanager
def pgbouncer(upstream_url: str, **kwargs: Any) -> Iterator[PgBouncer]:
    """``with pgbouncer(url) as b:`` — a ``PgBouncer`` stopped on the way out."""
    bouncer = PgBouncer(upstream_url, **kwargs)
    try:
        yield bouncer
    finally:
        bouncer.stop()
