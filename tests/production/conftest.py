"""Production set-ups: a pooler, roles, a replica (see support/fixtures.py)."""

from support.fixtures import pgbouncer, replica, roles  # noqa: F401
