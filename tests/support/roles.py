"""Throwaway login roles on the test server: role plumbing only, no grants.

    with Roles(database_url) as roles:
        app = roles.create("app")                  # LOGIN role t3f9a1c2b4d_app
        with psycopg.connect(app.url) as conn: ... # connects as that role
        roles.run_as(app, lambda conn: conn.execute("SELECT current_user"))

Names start with a per-``Roles`` uuid prefix, so parallel runs (pytest-xdist
workers, two CI runs on one server) never clash. Every role gets a random password
too: trust auth (this machine's server and the embedded one) ignores it, a server
that asks for one gets it from the URL. ``drop()`` / leaving the block terminates
the role's sessions, runs ``DROP OWNED BY`` in every database where it owns or was
granted anything, and ``DROP ROLE``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from ._proc import make_url, parse_url, wait_until

T = TypeVar("T")

# CREATE ROLE options a test may ask for (no privileges on objects: that is
# taskq's own roles feature).
_ATTRIBUTES = re.compile(
    r"(NO)?(SUPERUSER|CREATEDB|CREATEROLE|INHERIT|LOGIN|REPLICATION|BYPASSRLS)"
    r"|CONNECTION LIMIT -?\d+"
)


@dataclass(frozen=True)
class Role:
    name: str
    password: str
    url: str

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection logged in as this role."""
        return psycopg.connect(self.url, **kwargs)


def role_url(base_url: str, name: str, password: str | None = None) -> str:
    """``base_url`` (any libpq URL) with its user and password replaced."""
    params: dict[str, Any] = parse_url(base_url)
    params["dbname"] = params.get("dbname") or params.get("user")
    params["user"] = name
    params["password"] = password
    return make_url(params)


def create_role(
    admin_url: str,
    name: str,
    *,
    attributes: Sequence[str] = (),
    password: str | None = None,
) -> Role:
    """``CREATE ROLE name LOGIN PASSWORD ...`` plus ``attributes`` (e.g.
    ``["NOINHERIT"]``); returns the role with its URL (``admin_url``'s server and
    database)."""
    for attr in attributes:
        if not _ATTRIBUTES.fullmatch(attr.upper()):
            raise ValueError(f"not a role attribute this helper knows: {attr!r}")
    password = password or secrets.token_hex(16)
    query = sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
        sql.Identifier(name),
        sql.SQL(" ").join(sql.SQL(a.upper()) for a in attributes),
        sql.Literal(password),
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(query)
    return Role(name, password, role_url(admin_url, name, password))


def drop_role(admin_url: str, name: str, timeout: float = 30.0) -> None:
    """Terminate ``name``'s sessions, ``DROP OWNED BY`` it in every database where
    it owns or was granted anything, and ``DROP ROLE IF EXISTS``."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if exists is None:
            return
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        wait_until(
            lambda: (
                not conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename = %s", (name,)
                ).fetchone()
            ),
            timeout,
            f"the sessions of role {name} to end",
        )
        here = conn.execute("SELECT current_database()").fetchone()
        rows = conn.execute(
            "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %s"
            " AND d.datallowconn",
            (exists[0],),
        ).fetchall()
        others = sorted({r[0] for r in rows} - {here[0] if here else None})
        for dbname in others:
            params: dict[str, Any] = parse_url(admin_url)
            params["dbname"] = dbname
            with psycopg.connect(make_url(params), autocommit=True) as other:
                other.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        # Here last: it also revokes what was granted on shared objects (databases).
        conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def run_as(role: Role, fn: Callable[[psycopg.Connection[Any]], T], **connect_kwargs: Any) -> T:
    """Call ``fn(conn)`` with a fresh connection logged in as ``role`` (a real login,
    not ``SET ROLE``), committed if ``fn`` returns, rolled back if it raises, closed
    either way."""
    with role.connect(**connect_kwargs) as conn:
        return fn(conn)


class Roles:
    """Creates roles named ``<prefix>_<suffix>`` on the server of ``admin_url`` (a
    superuser, or a role with CREATEROLE) and drops them all in ``drop_all()``."""

    def __init__(self, admin_url: str, prefix: str | None = None) -> None:
        self.admin_url = admin_url
        self.prefix = prefix or f"t{uuid.uuid4().hex[:12]}"
        self.created: list[Role] = []

    def name(self, suffix: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]{1,40}", suffix):
            raise ValueError(f"a role suffix is 1-40 of [a-z0-9_]: {suffix!r}")
        return f"{self.prefix}_{suffix}"

    def create(self, suffix: str = "role", *, attributes: Sequence[str] = ()) -> Role:
        role = create_role(self.admin_url, self.name(suffix), attributes=attributes)
        self.created.append(role)
        return role

    def run_as(self, role: Role, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        return run_as(role, fn)

    def leftovers(self) -> list[str]:
        """Roles with this prefix that still exist on the server."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1",
                (self.prefix + "_",),
            ).fetchall()
        return [r[0] for r in rows]

    def drop_all(self) -> None:
        """Drop every role this object created, and any other role with its prefix
        (one a test created by hand). Raises the first failure after trying all."""
        names = [r.name for r in reversed(self.created)]
        names += [n for n in self.leftovers() if n not in names]
        first: BaseException | None = None
        for name in names:
            try:
                drop_role(self.admin_url, name)
            except Exception as exc:  # keep dropping the others
                first = first or exc
        self.created.clear()
        if first is not None:
            raise first

    def __enter__(self) -> Roles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop_all()


@contextmanager
def temp_role(
    admin_url: str, suffix: str = "role", *, attributes: Sequence[str] = ()
) -> Iterator[Role]:
    """One throwaway role, dropped on the way out."""
    with Roles(admin_url) as roles:
        yield roles.create(suffix, attributes=attributes)
