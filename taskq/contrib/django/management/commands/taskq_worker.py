"""``python manage.py taskq_worker [taskq worker's flags]``: runs the project's Django
tasks in a ``taskq worker`` process.

It takes the flags of ``taskq worker`` (``--queue``, ``--concurrency``, ``--grace``,
``--metrics-port`` ...; see ``--help``) and ``--backend ALIAS`` to pick a ``TASKS``
entry when there are several taskq backends. Without ``--queue`` it serves the
backend's ``QUEUES`` (every queue when ``QUEUES`` is empty). It becomes (``exec``)
``taskq worker taskq.contrib.django.worker:registry`` with the project's settings,
database and schema in its environment, so signals, exit status and logs are those of
``taskq worker``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from taskq.contrib.django.conf import taskq_backend, worker_environment

REGISTRY = "taskq.contrib.django.worker:registry"

# manage.py's own options, already applied by the time a command runs.
_DJANGO_OPTIONS = {"--settings", "--pythonpath", "--verbosity", "-v"}
_DJANGO_FLAGS = {"--traceback", "--no-color", "--force-color", "--skip-checks"}


class Command(BaseCommand):
    help = (
        "Run a taskq worker for this project's Django tasks. Takes the flags of "
        "`taskq worker` (see below), and --backend ALIAS to choose the TASKS entry."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand the arguments to ``taskq worker`` unparsed: its flags are its own."""
        try:
            self.execute_worker(_worker_args(argv[2:]))
        except CommandError as e:  # as BaseCommand.run_from_argv reports it
            self.stderr.write(f"CommandError: {e}")
            sys.exit(e.returncode)

    def handle(self, *args: Any, **options: Any) -> None:  # call_command()
        self.execute_worker(list(args))

    def execute_worker(self, args: list[str]) -> None:
        backend_alias = None
        if "--backend" in args:
            i = args.index("--backend")
            if i + 1 >= len(args):
                raise CommandError("--backend needs the alias of a TASKS entry")
            backend_alias = args[i + 1]
            del args[i : i + 2]
        helping = "-h" in args or "--help" in args
        try:
            alias, backend = taskq_backend(backend_alias)
            env = dict(os.environ) | worker_environment(alias)
        except ImproperlyConfigured as e:
            raise CommandError(str(e)) from e
        if not helping and not any(a in ("--queue", "-q") or a.startswith("--queue=")
                                   for a in args):  # fmt: skip
            for queue in sorted(backend.queues):
                args += ["--queue", queue]
        env["PYTHONPATH"] = os.pathsep.join(
            [p for p in [_project_root(), env.get("PYTHONPATH", "")] if p]
        )
        command = [sys.executable, "-m", "taskq.cli", "worker", REGISTRY, *args]
        if helping:
            self.stdout.write(
                "manage.py taskq_worker [--backend ALIAS] [taskq worker's flags]: the "
                "registry argument below is given for you.\n"
            )
            self.stdout.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, env)


def _worker_args(argv: list[str]) -> list[str]:
    """``argv`` without manage.py's own options."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _DJANGO_OPTIONS:
            skip = "=" not in arg
            continue
        if arg in _DJANGO_FLAGS or (arg.startswith("-v") and arg[2:].isdigit()):
            continue
        out.append(arg)
    return out


def _project_root() -> str:
    """The folder the settings module's top package is imported from, so the worker
    process imports the project the way manage.py did."""
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    top = settings_module.split(".", 1)[0]
    if not top:
        return ""
    module = importlib.import_module(top)
    where = getattr(module, "__file__", None)
    if where is None:
        return ""
    path = Path(where).resolve().parent
    return str(path.parent if path.name == top else path)
