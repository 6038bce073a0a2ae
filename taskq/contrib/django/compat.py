"""Django's Tasks framework, from Django itself (6.0+) or the django-tasks backport.

Both define the same names; Django's own wins where both are installed.
"""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
except ImportError:
    try:
        from django_tasks import TaskResultStatus, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError, TaskResult
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as e:  # pragma: no cover - depends on what is installed
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "taskq.contrib.django needs Django's Tasks framework: Django 6.0 or newer, or "
            "the django-tasks backport on Django 5.2 (pip install 'taskq[django]')"
        ) from e

    FRAMEWORK = "django_tasks"


def module_path(obj: Any) -> str:
    """The dotted path Django's Tasks framework names a function or class by."""
    return f"{obj.__module__}.{obj.__qualname__}"


__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "module_path",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
