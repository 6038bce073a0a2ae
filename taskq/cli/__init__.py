"""The ``taskq`` command. Each group of subcommands lives in its own module with a
``register(subparsers)`` function; handlers return the exit status.

Every command takes ``--database-url``, ``--schema`` and ``--verbose`` (before or after
its name). Bad input and every error a command can meet get one line on stderr and a
non-zero exit, never a traceback (``TASKQ_DEBUG=1`` shows one for an unexpected error).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from taskq.cli.common import (
    USAGE,
    CliError,
    add_global_options,
    configure_database_url,
    die,
    handle_errors,
)
from taskq.core.text import printable

COMMAND_MODULES = (
    "taskq.cli.core_cmd",
    "taskq.cli.tasks_cmd",
    "taskq.cli.embedded_cmd",
    "taskq.cli.worker_cmd",
    "taskq.cli.schedule_cmd",
    "taskq.cli.scheduler_cmd",
    "taskq.cli.bench_cmd",
    "taskq.cli.demo_cmd",
    "taskq.cli.roles_cmd",
    "taskq.cli.serve_cmd",
    "taskq.cli.token_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("taskq").strip()
        die(f"{where}: {message}" if where else message, status=USAGE)


class _CommandParser(_Parser):
    """A subcommand's parser: it takes the options every command takes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        add_global_options(self, on_subcommand=True)


def version() -> str:
    try:
        from importlib.metadata import version as installed

        return installed("taskq-pg")
    except Exception:  # not installed (run from a source tree)
        import taskq

        return taskq.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taskq",
        description="A durable job queue on PostgreSQL. Reads TASKQ_DATABASE_URL (an "
        "embedded PostgreSQL when unset) and TASKQ_SCHEMA (default taskq).",
    )
    parser.add_argument("--version", action="version", version=f"taskq {version()}",
                        help="print taskq's version and exit")  # fmt: skip
    add_global_options(parser, on_subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that group of commands is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with handle_errors(getattr(args, "schema", None)):
        if getattr(args, "uses_database", True):
            configure_database_url(args)
        if not getattr(args, "own_logging", False):  # worker and scheduler set theirs up
            from taskq.ops.logs import TextFormatter

            handler = logging.StreamHandler()
            handler.setFormatter(TextFormatter())
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                handlers=[handler])  # fmt: skip
        return int(args.func(args) or 0)
    raise AssertionError("unreachable")  # handle_errors re-raises


def _unexpected(e: BaseException) -> str:
    from taskq.ops.logs import redact

    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    what = type(e).__name__ + (f": {first}" if first else "")
    return redact(f"unexpected error: {what} (TASKQ_DEBUG=1 shows the traceback)")


def run() -> None:
    try:
        status = main()
        sys.stdout.flush()
    except CliError as e:
        print(f"taskq: {printable(str(e))}", file=sys.stderr)
        status = e.status
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:  # `taskq list | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    except Exception as e:
        if os.environ.get("TASKQ_DEBUG"):
            raise
        print(f"taskq: {printable(_unexpected(e))}", file=sys.stderr)
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    run()
