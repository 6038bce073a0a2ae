"""The ``taskq`` command. Each group of subcommands lives in its own module with a
``register(subparsers)`` function; handlers return the exit status.

Bad input gets one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from taskq.cli.common import CliError, die, handle_errors

COMMAND_MODULES = (
    "taskq.cli.core_cmd",
    "taskq.cli.worker_cmd",
    "taskq.cli.schedule_cmd",
    "taskq.cli.bench_cmd",
    "taskq.cli.demo_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("taskq").strip()
        die(f"{where}: {message}" if where else message, status=2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taskq",
        description="A durable job queue on PostgreSQL. Reads TASKQ_DATABASE_URL (an "
        "embedded PostgreSQL when unset) and TASKQ_SCHEMA (default taskq).",
    )
    parser.add_argument(
        "--schema", help="taskq's PostgreSQL schema (default: $TASKQ_SCHEMA or taskq)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with handle_errors():
        status = args.func(args)
        return int(status or 0)
    return 1


def run() -> None:
    try:
        sys.exit(main())
    except CliError as e:
        print(f"taskq: {e}", file=sys.stderr)
        sys.exit(e.status)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
