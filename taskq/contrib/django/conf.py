"""Where a Django project's taskq lives: the taskq backends in ``TASKS``, the Django
database each one uses, and that database as a libpq URI (for the worker process and
for migrations, which open connections of their own)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from taskq.contrib.django.compat import task_backends

if TYPE_CHECKING:
    from taskq.contrib.django.backend import TaskqBackend

ENV_BACKEND = "TASKQ_DJANGO_BACKEND"
"""The ``TASKS`` alias the worker serves, when not the first taskq backend."""

# Connection parameters Django gives psycopg that are not libpq's.
_NOT_LIBPQ = {"context", "cursor_factory", "prepare_threshold", "autocommit", "row_factory"}


def taskq_backends() -> dict[str, TaskqBackend]:
    """The ``TASKS`` entries whose backend is a TaskqBackend, by alias."""
    from taskq.contrib.django.backend import TaskqBackend

    found = {}
    for alias in getattr(settings, "TASKS", {}) or {}:
        backend = task_backends[alias]
        if isinstance(backend, TaskqBackend):
            found[alias] = backend
    return found


def taskq_backend(alias: str | None = None) -> tuple[str, TaskqBackend]:
    """The taskq backend ``alias`` (default: ``TASKQ_DJANGO_BACKEND``, else the first
    one in ``TASKS``)."""
    backends = taskq_backends()
    alias = alias or os.environ.get(ENV_BACKEND) or None
    if alias is not None:
        if alias not in backends:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}] is not a taskq backend "
                f"(its BACKEND should be 'taskq.contrib.django.TaskqBackend')"
            )
        return alias, backends[alias]
    if not backends:
        raise ImproperlyConfigured(
            "no taskq backend in settings.TASKS: add "
            "TASKS = {'default': {'BACKEND': 'taskq.contrib.django.TaskqBackend'}}"
        )
    first = next(iter(backends))
    return first, backends[first]


def database_url(alias: str) -> str:
    """Django's database ``alias`` as a libpq URI (what taskq's own connections use).

    Built from the parameters Django itself connects with, so the test runner's test
    database, ``OPTIONS`` such as ``sslmode`` or ``options`` and a Unix socket HOST
    carry over.
    """
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"taskq needs PostgreSQL: DATABASES[{alias!r}] uses {wrapper.vendor}"
        )
    params: dict[str, Any] = dict(wrapper.get_connection_params())
    return conninfo_url(params)


def conninfo_url(params: dict[str, Any]) -> str:
    """A ``postgresql://`` URI for psycopg connection parameters."""
    import psycopg

    known = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    values = {k: str(v) for k, v in params.items() if v not in (None, "") and k not in _NOT_LIBPQ}
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise ImproperlyConfigured(f"not libpq connection parameters: {', '.join(unknown)}")
    user = values.pop("user", "")
    password = values.pop("password", "")
    host = values.pop("host", "")
    port = values.pop("port", "")
    dbname = values.pop("dbname", "")
    auth = ""
    if user or password:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    netloc = ""
    if host and "," not in host and not host.startswith("/"):
        netloc = f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{port}"
    else:
        if host:
            values["host"] = host
        if port:
            values["port"] = port
    query = ("?" + urlencode(values, quote_via=quote)) if values else ""
    return f"postgresql://{auth}{netloc}/{quote(dbname, safe='')}{query}"


def worker_environment(alias: str | None = None) -> dict[str, str]:
    """What a ``taskq worker`` process for the taskq backend ``alias`` needs in its
    environment: the backend's alias, its schema, and its Django database as
    ``TASKQ_DATABASE_URL`` unless that is set already (to reach the same database
    another way, say through a pooler or as another role)."""
    name, backend = taskq_backend(alias)
    env = {ENV_BACKEND: name, "TASKQ_SCHEMA": backend.schema}
    if not os.environ.get("TASKQ_DATABASE_URL"):
        env["TASKQ_DATABASE_URL"] = database_url(backend.database)
    return env


def schemas_for(alias: str) -> list[str]:
    """The taskq schemas kept in Django's database ``alias``: those of the taskq
    backends that use it, or the default schema in "default" when ``TASKS`` has no
    taskq backend (the app installed before it is configured)."""
    from taskq.core.config import resolve_schema

    backends = taskq_backends()
    found = sorted({b.schema for b in backends.values() if b.database == alias})
    if not backends and alias == "default" and connections[alias].vendor == "postgresql":
        found = [resolve_schema(None)]
    return found


def migrate_database(alias: str) -> list[str]:
    """Run taskq's migrations (``taskq migrate``) in Django's database ``alias`` for
    each schema of ``schemas_for(alias)``; returns those schemas."""
    from taskq.db.migrate import migrate

    schemas = schemas_for(alias)
    if schemas:
        url = database_url(alias)
        for schema in schemas:
            migrate(url, schema)
    return schemas
