"""Testing applications that use taskq.

- ``drain(registry, db, queues=None)`` runs every runnable task in this process until
  none is left and returns the tasks it ran (see ``taskq.testing.drain``).
- ``assert_enqueued(db, type, ...)``, ``assert_not_enqueued`` and ``enqueued`` check
  what was enqueued.
- A pytest plugin (``pytest -p taskq.testing``, or loaded by itself through the
  ``pytest11`` entry point when taskq is installed): the ``taskq_db`` fixture, a
  migrated, empty schema per test on ``TASKQ_TEST_DATABASE_URL`` or the embedded
  PostgreSQL, and the session fixture ``taskq_database_url``.
"""

from taskq.testing.asserts import ANY, assert_enqueued, assert_not_enqueued, enqueued
from taskq.testing.drain import drain

try:
    import pytest  # noqa: F401
except ImportError:  # drain and the assertions work without pytest
    pass
else:
    from taskq.testing.plugin import taskq_database_url, taskq_db  # noqa: F401  (fixtures)

__all__ = ["ANY", "assert_enqueued", "assert_not_enqueued", "drain", "enqueued"]
