"""Test infrastructure: a PgBouncer in front of the test server, a streaming replica,
throwaway login roles. Import as ``from support.pgbouncer import PgBouncer`` (``tests/``
is on ``sys.path`` under pytest, as for ``helpers``).
"""
