"""What the long-running commands (``taskq worker``, ``taskq scheduler``) share: whose
logging they use, and the /metrics and /healthz server.

Logging belongs to the application. ``--log-config FILE`` takes full control (a
``logging.config`` dictionary in JSON or YAML, or an INI file for ``fileConfig``);
else a handler the application's module put on the root logger keeps receiving
taskq's records with the application's own; else taskq writes to stderr through its
buffered handler, in ``--log-format``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq.cli.common import USAGE, die, port
from taskq.core.defaults import LOG_FORMAT, LOG_LEVEL, METRICS_HOST

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from taskq.db import Database
    from taskq.ops.logs import LogConfig
    from taskq.ops.metrics import Metrics

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_process_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=port, metavar="PORT",
                   help="serve Prometheus /metrics and /healthz on this port (default: "
                   "none)")  # fmt: skip
    p.add_argument("--metrics-host", default=METRICS_HOST, metavar="HOST",
                   help=f"the address /metrics and /healthz bind to (default {METRICS_HOST})")  # fmt: skip
    p.add_argument("--log-config", metavar="FILE",
                   help="configure logging from FILE, as the standard library reads it: a "
                   "logging.config dictionary in JSON (.json) or YAML (.yaml, needs PyYAML), "
                   "or an INI file for fileConfig (.ini); taskq's loggers stay enabled")  # fmt: skip
    p.add_argument("--log-format", choices=("text", "json"),
                   help="taskq's own log lines on stderr: text, or one JSON object each "
                   f"(default {LOG_FORMAT}); not used when the application's module or "
                   "--log-config configured logging")  # fmt: skip
    p.add_argument("--log-level", choices=LEVELS, type=str.upper,
                   help=f"the level of taskq's own stderr logs (default {LOG_LEVEL}); with "
                   "the application's logging or --log-config, the level of the taskq "
                   "loggers (default: as configured there)")  # fmt: skip


def read_logging_options(args: argparse.Namespace) -> LogConfig | None:
    """Check the logging options, and read ``--log-config`` (refused here, before the
    application is imported, when it cannot be read or parsed)."""
    from taskq.ops.logs import LogConfigError, read_config

    if args.log_config is None:
        return None
    if args.log_format is not None:
        die("--log-format and --log-config cannot be combined: the file chooses the "
            "formatters", USAGE)  # fmt: skip
    try:
        return read_config(args.log_config)
    except LogConfigError as e:
        die(f"--log-config {e}", USAGE)


def setup_logging(
    args: argparse.Namespace, config: LogConfig | None, handlers_before: Sequence[logging.Handler]
) -> str:
    """Logging for this process (see the module's docstring); returns whose it is."""
    from taskq.ops import logs

    try:
        mode = logs.configure(
            fmt=args.log_format or LOG_FORMAT, level=args.log_level, default_level=LOG_LEVEL,
            config=config, handlers_before=handlers_before,
        )  # fmt: skip
    except logs.LogConfigError as e:
        die(f"--log-config {e}", USAGE)
    if mode == "application" and args.log_format is not None:
        logging.getLogger("taskq").warning(
            "--log-format %s is not used: the application configured logging", args.log_format
        )
    return mode


def serve_metrics(
    args: argparse.Namespace, db: Database, metrics: Metrics, *, count_outcomes: bool
) -> ThreadingHTTPServer | None:
    """Serve /metrics (with the database gauges) and /healthz when ``--metrics-port``
    is given; ``count_outcomes``: the gauges also feed the per-process counters."""
    if args.metrics_port is None:
        return None
    from taskq.db.side import SideConnection
    from taskq.ops.gauges import DatabaseCollector
    from taskq.ops.http import database_health, serve

    side = SideConnection(db)
    # the gauges read the replica where there is one (TASKQ_READ_URL); /healthz, the
    # primary the process works on
    gauges = SideConnection(db, read=True) if db.settings.read_url else side
    extra: dict[str, Any] = {"metrics": metrics} if count_outcomes else {}
    metrics.registry.register(DatabaseCollector(db, metrics.namespace, side=gauges, **extra))
    try:
        return serve(args.metrics_port, metrics.registry, database_health(side),
                     host=args.metrics_host)  # fmt: skip
    except OSError as e:
        die(f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: "
            f"{e.strerror or e}")  # fmt: skip
