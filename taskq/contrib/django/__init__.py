"""taskq for Django: a backend for Django's Tasks framework, and its worker.

Settings::

    INSTALLED_APPS = [..., "django_tasks" (on Django 5.2), "taskq.contrib.django"]
    TASKS = {"default": {"BACKEND": "taskq.contrib.django.TaskqBackend"}}

``python manage.py migrate`` creates taskq's tables (this app's migration runs
taskq's own, like ``taskq migrate``), and ``python manage.py taskq_worker`` runs the
project's ``@task`` functions (the flags of ``taskq worker``).
"""

from taskq.contrib.django.backend import TaskqBackend

__all__ = ["TaskqBackend"]
