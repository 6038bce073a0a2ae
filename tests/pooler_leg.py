"""``pytest -p pooler_leg``: run the suite as a deployment behind PgBouncer in
transaction mode runs it.

Each test process starts Debian's PgBouncer (``pool_mode=transaction``, no support for
prepared statements) in front of ``TASKQ_TEST_DATABASE_URL`` and points the suite at
it; ``TASKQ_POOLER=transaction`` puts every taskq object and process in its
pooler-safe mode, and ``TASKQ_LISTEN_URL`` gives LISTEN the direct connection it needs.
The tests' own psycopg connections prepare nothing either (they share the pooler).
``TASKQ_TEST_POOLER_POOL_SIZE`` sets the server connections per test process.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_BOUNCER: Any = None


def pytest_configure(config: pytest.Config) -> None:
    global _BOUNCER
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller runs no test
    direct = os.environ.get("TASKQ_TEST_DATABASE_URL")
    if not direct:
        raise pytest.UsageError("the pooler leg needs TASKQ_TEST_DATABASE_URL (a direct URL)")
    import psycopg
    from support import roles
    from support.pgbouncer import PgBouncer, ensure_pgbouncer

    ensure_pgbouncer()
    size = int(os.environ.get("TASKQ_TEST_POOLER_POOL_SIZE", "8"))
    _BOUNCER = PgBouncer(direct, pool_mode="transaction", default_pool_size=size)
    os.environ["TASKQ_TEST_DIRECT_URL"] = direct
    os.environ["TASKQ_TEST_DATABASE_URL"] = _BOUNCER.url
    os.environ["TASKQ_POOLER"] = "transaction"
    os.environ["TASKQ_LISTEN_URL"] = direct
    os.environ["TASKQ_TEST_POOLER_ADMIN_URL"] = _BOUNCER.admin_url  # helpers.open_connections
    _prepare_nothing(psycopg)  # the tests' own connections share the pooler too
    create = roles.Roles.create

    def create_through_the_pooler(self: Any, *args: Any, **kwargs: Any) -> Any:
        role = create(self, *args, **kwargs)
        _BOUNCER.add_user(role.name, role.password)  # PgBouncer must know every user
        return role

    roles.Roles.create = create_through_the_pooler  # type: ignore[method-assign]


def _prepare_nothing(psycopg: Any) -> None:
    for cls in (psycopg.Connection, psycopg.AsyncConnection):
        original = cls.connect.__func__

        def connect(cls: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare_threshold", None)
            return _original(cls, *args, **kwargs)

        cls.connect = classmethod(connect)
    psycopg.connect = psycopg.Connection.connect


def pytest_unconfigure(config: pytest.Config) -> None:
    if _BOUNCER is not None:
        _BOUNCER.stop()


def pytest_report_header(config: pytest.Config) -> str:
    return "taskq: through PgBouncer in transaction mode (TASKQ_POOLER=transaction)"


NOT_BEHIND_THE_POOLER = {
    # the pytest plugin: a user's own test suite talks to its test server directly
    "test_testing_plugin.py",
    # HTTP input fuzzing: refusals happen before any SQL, and what is accepted takes the
    # paths test_serve_api.py runs behind the pooler
    "test_serve_fuzz.py",
    # the demo is the first-minute path on the embedded server, never behind a pooler
    "test_demo.py",
    "test_serve_demo.py",
    # input refused before any SQL runs (what is stored takes the core tests' paths),
    # cron arithmetic, and command-line and logging set-up: nothing a pooler changes
    # (test_cli_commands.py runs the commands' database work behind it)
    "test_bad_input.py",
    "test_cron.py",
    "test_cli.py",
    "test_cli_errors.py",
    "test_worker_logging.py",
}
"""Test files this leg leaves out; the direct legs run them."""


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    return True if collection_path.name in NOT_BEHIND_THE_POOLER else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tests/infra tests the pooler and replica harness itself, with poolers of its own
    keep = [i for i in items if "/tests/infra/" not in str(i.path)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
