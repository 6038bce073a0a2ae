"""The throwaway-role helpers: create a login role, connect as it, drop it (and what
it owns) without leaving anything on the server."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from support.pgbouncer import PgBouncer
from support.roles import Roles, drop_role, temp_role


def _role_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            is not None
        )


def test_create_connect_and_drop_a_role(database_url: str) -> None:
    roles = Roles(database_url)
    try:
        app = roles.create("app")
        assert app.name.startswith(roles.prefix + "_")
        with app.connect() as conn:
            row = conn.execute("SELECT current_user, session_user, current_database()").fetchone()
        with psycopg.connect(database_url) as admin:
            db = admin.execute("SELECT current_database()").fetchone()
        assert row == (app.name, app.name, db[0] if db else None)
        with psycopg.connect(database_url) as admin:
            attrs = admin.execute(
                "SELECT rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s",
                (app.name,),
            ).fetchone()
        assert attrs == (True, False, False)
    finally:
        roles.drop_all()
    assert not _role_exists(database_url, app.name)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(app.url, connect_timeout=5)


def test_run_as_returns_what_the_callable_returns(roles: Roles) -> None:
    reader = roles.create("reader")
    assert roles.run_as(reader, lambda c: c.execute("SELECT current_user").fetchone()) == (
        reader.name,
    )


def test_drop_removes_what_the_role_owns_and_its_sessions(database_url: str) -> None:
    with Roles(database_url) as roles:
        owner = roles.create("owner")
        schema = sql.Identifier(f"{owner.name}_s")
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                    schema, sql.Identifier(owner.name)
                )
            )
        lingering = owner.connect(autocommit=True)
        lingering.execute(sql.SQL("CREATE TABLE {}.t (x int)").format(schema))
        roles.drop_all()  # with `lingering` still connected
        assert roles.leftovers() == []
    lingering.close()
    with psycopg.connect(database_url) as admin:
        left = admin.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (f"{owner.name}_s",)
        ).fetchone()
    assert left is None


def test_prefixes_differ_and_attributes_are_checked(database_url: str) -> None:
    assert Roles(database_url).prefix != Roles(database_url).prefix
    with Roles(database_url) as roles, pytest.raises(ValueError):
        roles.create("x", attributes=["SUPERUSER; DROP TABLE y"])
    with temp_role(database_url, "noinherit", attributes=["NOINHERIT"]) as role:
        with psycopg.connect(database_url) as admin:
            row = admin.execute(
                "SELECT rolinherit FROM pg_roles WHERE rolname = %s", (role.name,)
            ).fetchone()
        assert row == (False,)
    assert not _role_exists(database_url, role.name)
    drop_role(database_url, role.name)  # dropping a dropped role is quiet


def test_a_role_logs_in_through_the_pooler(roles: Roles, pgbouncer: PgBouncer) -> None:
    worker = roles.create("worker")
    url = pgbouncer.add_user(worker.name, worker.password)
    with psycopg.connect(url, prepare_threshold=None) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row == (worker.name,)
