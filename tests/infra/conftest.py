"""The fixtures of tests/support (see support/fixtures.py)."""

from support.fixtures import pgbouncer, replica, roles  # noqa: F401
