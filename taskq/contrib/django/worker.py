"""The registry ``taskq worker`` runs for a Django project:

    DJANGO_SETTINGS_MODULE=mysite.settings taskq worker taskq.contrib.django.worker:registry

(``python manage.py taskq_worker`` runs exactly that, with the backend's ``QUEUES``
as the default ``--queue`` list.) Importing this module sets Django up, points
``TASKQ_SCHEMA`` at the taskq backend's schema and, unless it is set, points
``TASKQ_DATABASE_URL`` at the backend's Django database, then builds ``registry``:
a :class:`~taskq.contrib.django.registry.DjangoRegistry` of the project's tasks.
``TASKQ_DJANGO_BACKEND`` picks the ``TASKS`` alias when there is more than one taskq
backend. A configuration problem is raised as an ImportError, which ``taskq worker``
reports in one line.
"""

from __future__ import annotations

import os

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from taskq.contrib.django.registry import DjangoRegistry


def build() -> DjangoRegistry:
    """Set Django up and return the registry of the taskq backend's tasks."""
    from taskq.contrib.django.conf import taskq_backend, worker_environment

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ImportError("set DJANGO_SETTINGS_MODULE to your project's settings module")
    try:
        if not apps.ready:
            django.setup()
        os.environ.update(worker_environment())
        alias, backend = taskq_backend()
    except ImproperlyConfigured as e:
        raise ImportError(str(e)) from e
    found = DjangoRegistry(alias, backend.task_modules)
    found.discover()
    return found


registry = build()
