"""Running a Django project's tasks inside its tests, with no worker:

    from taskq.contrib.django.testing import run_tasks

    def test_signup_sends_the_welcome_mail(self):      # a django.test.TestCase
        self.client.post("/signup", {...})
        [result] = run_tasks()
        assert result.status == TaskResultStatus.SUCCESSFUL

``run_tasks`` runs every runnable task of the taskq backend on Django's own connection,
in this thread (``taskq.testing.drain``), so it sees the tasks a ``TestCase`` enqueued
inside its transaction, and what the tasks write is rolled back with the test.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskq.contrib.django.compat import TaskResult
from taskq.contrib.django.conf import taskq_backend
from taskq.contrib.django.registry import DjangoRegistry
from taskq.contrib.django.results import to_result
from taskq.testing.drain import drain


def run_tasks(
    queues: Iterable[str] | None = None, *, backend: str | None = None, **options: Any
) -> list[TaskResult]:
    """Run the runnable tasks of the taskq backend ``backend`` (default: the first in
    ``TASKS``) on ``queues`` (default: the backend's ``QUEUES``, every queue when that
    is empty) until none is left; return their TaskResults in the order they ran.
    ``options`` go to ``taskq.testing.drain`` (``skip_backoff``, ``raise_errors``)."""
    alias, found = taskq_backend(backend)
    registry = DjangoRegistry(alias, found.task_modules)
    registry.discover()
    names = list(queues) if queues is not None else sorted(found.queues) or None
    ran = drain(registry, found.connection(), names, schema=found.schema, **options)
    return [to_result(found.task_of(row), row, alias) for row in ran]
