"""What the subcommands share: options every command takes, opening the database,
errors as one line, argument types and task ids.

Exit statuses: 0 done, 1 refused or failed (one line on stderr), 2 bad usage,
124 a ``--timeout`` ran out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from taskq.cli.output import progress_text as progress_text  # the demo's import
from taskq.core.config import ENV_URL, database_url, describe_target, libpq_url, resolve_schema
from taskq.core.defaults import CONNECT_TIMEOUT, ID_PREFIX_MIN

if TYPE_CHECKING:
    from taskq.db import Database

USAGE = 2
TIMED_OUT = 124


class CliError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def die(message: str, status: int = 1) -> NoReturn:
    raise CliError(message, status)


# ---- options every command takes -------------------------------------------------------


def add_global_options(p: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    """``--database-url``, ``--schema`` and ``--verbose``: on ``taskq`` itself and again
    on every subcommand (there without defaults, so ``taskq --schema s list`` and
    ``taskq list --schema s`` both work)."""
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if on_subcommand else {}
    p.add_argument("--database-url", metavar="URL", **kw,
                   help=f"the PostgreSQL URL (overrides ${ENV_URL}; when neither is set, an "
                   "embedded PostgreSQL). postgresql://, postgres:// and SQLAlchemy's "
                   "postgresql+psycopg:// forms are accepted")  # fmt: skip
    p.add_argument("--schema", **kw,
                   help="taskq's PostgreSQL schema (default: $TASKQ_SCHEMA or taskq)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", **kw,
                   help="log more (commands other than worker and scheduler)")  # fmt: skip


def add_read_url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--read-url", metavar="URL",
                   help="a read-only replica to read the tasks from; they may lag the primary "
                   "by its replication delay (overrides $TASKQ_READ_URL)")  # fmt: skip


def add_output_options(p: argparse.ArgumentParser, *, json_help: str = "print JSON") -> None:
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--local", action="store_true",
                   help="times in this machine's time zone (default: UTC; ISO 8601 with the "
                   "offset either way)")  # fmt: skip


def configure_database_url(args: argparse.Namespace) -> None:
    """Check the database URL once, before any command uses it, and make
    ``--database-url`` the one every part of taskq (and every process it starts) reads."""
    given = getattr(args, "database_url", None)
    if given is not None:
        try:
            os.environ[ENV_URL] = libpq_url(given)
        except ValueError as e:
            die(f"--database-url: {e}", USAGE)
        return
    raw = os.environ.get(ENV_URL)
    if raw:
        try:
            os.environ[ENV_URL] = libpq_url(raw)
        except ValueError as e:
            die(f"{ENV_URL}: {e}", USAGE)


def target() -> str:
    """Where the database is, for messages (never a password)."""
    try:
        url = database_url()
    except ValueError:
        return "an invalid database URL"
    return describe_target(url) if url else "the embedded PostgreSQL"


# ---- errors ------------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def describe(e: BaseException, schema: str | None = None) -> tuple[str, int] | None:
    """The one line (and exit status) for an error a command can meet, or None for an
    error nobody expected (a bug: ``taskq.cli.run`` reports those)."""
    import psycopg
    import psycopg_pool

    from taskq.core.errors import TaskqError

    orig = getattr(e, "orig", None)  # SQLAlchemy wraps the driver's error (migrate)
    if isinstance(orig, psycopg.Error):
        e = orig
    if isinstance(e, psycopg_pool.PoolTimeout):
        return f"cannot reach the database at {target()}: no connection could be made in time", 1
    if isinstance(e, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        name = _schema_name(schema)
        return f"schema {name!r} at {target()} has no taskq tables: run `taskq migrate`", 1
    if isinstance(e, psycopg.errors.UndefinedColumn):
        name = _schema_name(schema)
        return f"schema {name!r} at {target()} is not up to date: run `taskq migrate`", 1
    if isinstance(e, psycopg.OperationalError) and e.sqlstate is None:
        return f"cannot reach the database at {target()}: {_first_line(e)}", 1
    if isinstance(e, psycopg.errors.InsufficientPrivilege):
        return f"{_first_line(e)}: this role lacks a grant for that (see `taskq roles`)", 1
    if isinstance(e, psycopg.Error):
        return f"the database at {target()} refused: {_first_line(e)}", 1
    if isinstance(e, TaskqError | ValueError | TypeError | LookupError | TimeoutError):
        return _first_line(e), 1
    if type(e).__module__.startswith(("alembic", "sqlalchemy")):
        return f"migration failed: {_first_line(e)}", 1
    if isinstance(e, OSError):
        return _first_line(e), 1
    return None


def _schema_name(schema: str | None) -> str:
    try:
        return resolve_schema(schema)
    except ValueError:
        return str(schema)


@contextlib.contextmanager
def handle_errors(schema: str | None = None) -> Iterator[None]:
    """One line per error a command can meet, never a traceback; database passwords
    are never shown."""
    from taskq.ops.logs import redact

    try:
        yield
    except CliError as e:
        raise CliError(redact(str(e)), e.status) from None
    except Exception as e:
        said = describe(e, schema)
        if said is None:
            raise
        raise CliError(redact(said[0]), said[1]) from None


# ---- the database ------------------------------------------------------------------------


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """One direct connection attempt, so an unreachable server is reported at once with
    its reason (raises OperationalError) rather than after the pool's retries."""
    from taskq.db.connection import connect

    connect(url, connect_timeout=max(1, int(timeout))).close()


def open_db(
    args: argparse.Namespace,
    *,
    pool_size: int = 4,
    timeout: float = 10.0,
    check: bool = True,
    generic_plans: bool = False,
) -> Database:
    """A pool on the configured database (``check``: after one direct connection
    attempt, see ``check_reachable``; ``generic_plans``: see ``Database``)."""
    import logging

    from taskq.db import Database
    from taskq.db.embedded import embedded_url

    # The pool retries in the background and would log every attempt: commands report
    # an outage themselves, once.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    url = database_url() or embedded_url()
    if check:
        check_reachable(url, timeout)
    return Database(url, getattr(args, "schema", None), max_size=pool_size, timeout=timeout,
                    read_url=getattr(args, "read_url", None),
                    generic_plans=generic_plans)  # fmt: skip


@contextlib.contextmanager
def connected(args: argparse.Namespace, **kwargs: Any) -> Iterator[Database]:
    """``open_db`` for the length of a ``with`` block."""
    db = open_db(args, **kwargs)
    try:
        yield db
    finally:
        db.close()


def require_grants(db: Database, kind: str) -> None:
    """Refuse to start a long-running process whose role lacks what it needs (one
    line naming every missing grant), rather than failing task by task later.
    Does nothing while the database cannot be reached (the process waits for it)."""
    import psycopg
    import psycopg_pool

    from taskq.db.roles import needed
    from taskq.db.side import SideConnection

    pairs = [(t, p) for t, privileges in needed(kind).items() for p in privileges]
    side = SideConnection(db, application_name="taskq-check")
    try:
        found = side.run(lambda: db.settings.stmts.catalog.missing_privileges(pairs), 5.0)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout, TimeoutError):
        return
    finally:
        side.close()
    if any(absent for _, _, absent in found):
        die(f"schema {db.schema!r} has no taskq tables: run `taskq migrate` first")
    lacking = [f"{p} on {db.schema}.{t}" for t, p, _ in found]
    if lacking:
        die(f"this role cannot run a {kind}: it lacks " + ", ".join(lacking)
            + f" (`taskq roles grant {kind} ROLE` prints the grants)")  # fmt: skip


def task_id(db: Database, text: str) -> str:
    """The id of the task ``text`` names: a whole id, or a prefix of at least
    ``ID_PREFIX_MIN`` hex digits that only one task's id starts with."""
    t = text.strip().lower()
    try:
        return str(uuid.UUID(t))
    except ValueError:
        pass
    digits = t.replace("-", "")
    if not digits or len(digits) > 32 or digits.strip("0123456789abcdef"):
        die(f"{text!r} is not a task id (a UUID, or its first {ID_PREFIX_MIN} or more hex digits)")
    if len(digits) < ID_PREFIX_MIN:
        die(f"task id prefix {text!r} is too short: give at least {ID_PREFIX_MIN} hex digits")
    found = db.query(db.settings.stmts.tasks.ids_with_prefix(digits, limit=2))
    if not found:
        die(f"no task id starts with {text!r}")
    if len(found) > 1:
        die(f"task id prefix {text!r} is ambiguous ({found[0]}, {found[1]}, ...): give more digits")
    return found[0]


# ---- argument types ----------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, got {value}")
    return value


def duration(text: str) -> dt.timedelta:
    """'90s', '15m', '12h', '7d', '1w' or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            value = dt.timedelta(seconds=float(t[:-1]) * units[t[-1]])
        else:
            value = dt.timedelta(seconds=float(t))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 15m, 12h or 7d, got {text!r}"
        ) from None
    return value


def seconds(text: str) -> float:
    """A duration (see ``duration``) in seconds."""
    return duration(text).total_seconds()


def human_duration(value: dt.timedelta | float) -> str:
    """``value`` the way ``duration`` reads it: 7d, 10s, 1.5h."""
    total = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if total >= size and total % size == 0:
            return f"{total // size:g}{unit}"
    return f"{total:g}s"


def parse_time(text: str, local: bool, option: str) -> dt.datetime:
    """An ISO 8601 time with its offset (``Z`` for UTC); without one, it is read as
    this machine's local time only with ``--local``."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        die(f"{option}: expected an ISO 8601 time like 2026-03-01T12:00:00+00:00, got {text!r}",
            USAGE)  # fmt: skip
    if value.tzinfo is None:
        if not local:
            die(f"{option}: {text!r} has no offset: add one (e.g. +00:00 or Z), or pass "
                "--local to read it as local time", USAGE)  # fmt: skip
        value = value.astimezone()
    return value


def json_arg(text: str | None, option: str, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        die(f"{option} is not valid JSON: {e}", USAGE)


def references_arg(text: str | None) -> dict[str, Any]:
    refs = json_arg(text, "--references", {})
    if not isinstance(refs, dict):
        die("--references must be a JSON object, e.g. '{\"account_id\": 7}'", USAGE)
    return refs


def references_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--references", metavar="JSON",
                   help=f"{what}: reference columns and their values as a JSON object, "
                   'e.g. \'{"account_id": 7}\' (default: none)')  # fmt: skip
