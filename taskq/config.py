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


def database_url(url: str | None = None) -> str | None:
    """The configured libpq URI, or None when none is set (use the embedded server)."""
    return url or os.environ.get(ENV_URL) or None


def sqlalchemy_url(url: str | None) -> str:
    """A SQLAlchemy URL (psycopg 3 driver) for ``url`` or the configured/embedded one."""
    resolved = database_url(url)
    if resolved is None:
        from taskq.embedded import embedded_url

        resolved = embedded_url()
    scheme, _, rest = resolved.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return resolved


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
