"""Settings read from the environment, checked when read. No I/O beyond ``os.environ``."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SCHEMA = "taskq"
ENV_URL = "TASKQ_DATABASE_URL"
ENV_SCHEMA = "TASKQ_SCHEMA"

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def resolve_schema(schema: str | None) -> str:
    """The schema to use: ``schema`` if given, else ``TASKQ_SCHEMA``, else ``taskq``.

    Raises ValueError for a name that is not a plain PostgreSQL identifier (letters,
    digits, underscore; at most 63 characters). It is still always quoted in SQL.
    """
    name = schema if schema is not None else os.environ.get(ENV_SCHEMA) or DEFAULT_SCHEMA
    if not _SCHEMA_RE.match(name):
        raise ValueError(
            f"invalid schema name {name!r}: use letters, digits and underscores, at most 63"
        )
    return name


POOLER_MODES = ("transaction", "session")
ENV_POOLER = "TASKQ_POOLER"
ENV_LISTEN_URL = "TASKQ_LISTEN_URL"
ENV_READ_URL = "TASKQ_READ_URL"


def libpq_url(url: str) -> str:
    """``url`` as a libpq URI: ``postgres://``, ``postgresql://`` and SQLAlchemy's
    ``postgresql+psycopg://`` forms are accepted; anything else is a ValueError that
    names the scheme (never the password)."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0].lower()
    if sep and base in ("postgres", "postgresql"):
        return f"postgresql://{rest}"
    if not sep and "=" in url:  # a keyword/value conninfo string: "host=... dbname=..."
        return url
    what = f"scheme {scheme!r}" if sep else "no scheme"
    raise ValueError(f"not a PostgreSQL URL ({what}): expected postgresql://user@host:port/dbname")


def database_url(url: str | None = None) -> str | None:
    """The configured libpq URI (``url``, else ``TASKQ_DATABASE_URL``), or None when
    none is set (the embedded server is used then)."""
    given = url or os.environ.get(ENV_URL) or None
    return None if given is None else libpq_url(given)


def resolve_pooler(pooler: str | None = None) -> str | None:
    """The pooler mode: ``pooler`` if given, else ``TASKQ_POOLER``; "transaction",
    "session", or None (no pooler; "none" and "" mean None)."""
    value = pooler if pooler is not None else os.environ.get(ENV_POOLER, "")
    value = value.strip().lower()
    if value in ("", "none", "off"):
        return None
    if value not in POOLER_MODES:
        raise ValueError(f"pooler must be 'transaction', 'session' or none, got {value!r}")
    return value


def listen_url(given: str | None, url: str | None, pooler: str | None) -> str | None:
    """Where to LISTEN for wake-ups: ``given``, else ``TASKQ_LISTEN_URL``, else the
    database URL itself unless that goes through a transaction-mode pooler (which
    cannot keep a LISTEN: then None, poll only)."""
    chosen = given or os.environ.get(ENV_LISTEN_URL) or None
    if chosen is not None:
        return libpq_url(chosen)
    return None if pooler == "transaction" else url


def read_url(given: str | None = None) -> str | None:
    """A read-only URL (a streaming replica) for reads that may lag: ``given``, else
    ``TASKQ_READ_URL``, else None."""
    chosen = given or os.environ.get(ENV_READ_URL) or None
    return None if chosen is None else libpq_url(chosen)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe_target(url: str) -> str:
    """The host (and port) or socket directory of ``url``, never its password."""
    try:
        import psycopg.conninfo

        info = psycopg.conninfo.conninfo_to_dict(url)
    except Exception:
        return redact(url)
    host = str(info.get("host") or "localhost")
    port = info.get("port")
    db = info.get("dbname")
    where = f"{host}:{port}" if port else host
    return f"{where}/{db}" if db else where
