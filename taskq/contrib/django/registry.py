"""The taskq Registry that runs a Django project's tasks (``DjangoRegistry``).

A taskq task of type ``myapp.tasks.send_welcome`` runs the Django ``@task`` at that
dotted path. The registry knows the tasks of every installed app's ``tasks`` module
(imported when it is built, the way Django's own autodiscovery works) and of the
modules in the backend's ``OPTIONS["TASK_MODULES"]``; a task defined elsewhere is
found on first use by its path, as long as that path lies inside an installed app or
one of those modules (the worker never imports a module a task row names otherwise).

Each run is handled as Django handles a request: old database connections are closed
(``close_old_connections``, honouring ``CONN_MAX_AGE``) before and after it, so a
connection is reused within its age or closed, and never shared: Django's
connections belong to the thread (a worker slot) that opened them. Django's
``task_started`` and ``task_finished`` signals are sent around each run.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import connections
from django.utils.module_loading import autodiscover_modules, import_string

from taskq.contrib.django.compat import (
    Task,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from taskq.contrib.django.results import arguments, exception_error
from taskq.core.types import JSON
from taskq.core.types import Task as TaskqTask
from taskq.registry import Registry, TaskOptions, TaskType
from taskq.registry import TaskContext as TaskqContext


class DjangoRegistry(Registry):
    """A Registry of Django tasks, keyed by their dotted paths."""

    def __init__(self, alias: str, modules: Iterable[str] = ()) -> None:
        super().__init__()
        self.alias = alias
        self.modules = tuple(modules)
        self._lock = threading.Lock()
        self._prefixes = tuple(a.name for a in apps.get_app_configs()) + self.modules

    def discover(self) -> None:
        """Register the tasks of every app's ``tasks`` module and of ``modules``."""
        autodiscover_modules("tasks")
        for name in self.modules:
            importlib.import_module(name)
        for name, module in list(sys.modules.items()):
            if module is None or not self._inside(name):
                continue
            for value in list(getattr(module, "__dict__", {}).values()):
                if isinstance(value, Task) and self._inside(value.module_path):
                    self.add(value)

    def _inside(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self._prefixes)

    def add(self, task: Task) -> None:
        """Register Django task ``task`` under its dotted path (once)."""
        with self._lock:
            if super().get(task.module_path) is None:
                self.task(task.module_path)(_handler(task, self.alias))

    # A type not registered yet is looked up by its path on first use.

    def get(self, name: str) -> TaskType | None:
        found = super().get(name)
        if found is None and self._resolve(name):
            found = super().get(name)
        return found

    def options(self, name: str) -> TaskOptions | None:
        found = self.get(name)
        return found.options if found is not None else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _resolve(self, name: str) -> bool:
        if not self._inside(name):
            return False
        try:
            task = import_string(name)
        except ImportError:
            return False
        if not isinstance(task, Task):
            return False
        self.add(task)
        return True


def _handler(task: Task, alias: str) -> Any:
    def run(ctx: TaskqContext) -> JSON:
        args, kwargs = arguments(ctx.spec)
        backend = ctx.spec.get("backend", alias) if isinstance(ctx.spec, dict) else alias
        result = _running(task, ctx.task, backend, args, kwargs)
        _close_old_connections()
        try:
            task_started.send(sender=_backend_class(), task_result=result)
            try:
                if task.takes_context:
                    value = task.call(TaskContext(task_result=result), *args, **kwargs)
                else:
                    value = task.call(*args, **kwargs)
                value = normalize_json(value)
            except Exception as e:
                _ended(result, TaskResultStatus.FAILED, errors=[exception_error(e)])
                task_finished.send(sender=_backend_class(), task_result=result)
                raise  # its type and traceback join the task's error history
            _ended(result, TaskResultStatus.SUCCESSFUL, value=value)
            task_finished.send(sender=_backend_class(), task_result=result)
            return value
        finally:
            _close_old_connections()

    run.__name__ = run.__qualname__ = f"run_{task.name}"
    return run


def _close_old_connections() -> None:
    """Django's ``close_old_connections`` (what it does around each request), leaving
    alone a connection inside ``atomic()``: a task run inside a transaction (a test's,
    through ``taskq.testing.drain``) must not end it."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _backend_class() -> type:
    from taskq.contrib.django.backend import TaskqBackend

    return TaskqBackend


def _running(task: Task, row: TaskqTask, alias: str, args: list[Any],
             kwargs: dict[str, Any]) -> TaskResult:  # fmt: skip
    """The TaskResult of a task as it starts running (for signals and the context)."""
    from django.utils import timezone

    from taskq.contrib.django.results import to_result

    result = to_result(task, row, alias)
    object.__setattr__(result, "status", TaskResultStatus.RUNNING)
    object.__setattr__(result, "args", args)
    object.__setattr__(result, "kwargs", kwargs)
    if result.started_at is None:
        object.__setattr__(result, "started_at", timezone.now())
    return result


def _ended(result: TaskResult, status: Any, *, value: Any = None, errors: Any = None) -> None:
    from django.utils import timezone

    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    if errors is not None:
        result.errors.extend(errors)
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", value)


__all__ = ["DjangoRegistry"]
