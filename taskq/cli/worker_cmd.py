"""``taskq worker MODULE:REGISTRY``: run handlers until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any

from taskq.cli.common import die, open_db, positive_float, positive_int
from taskq.registry import Registry


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run task handlers",
        description="Run the handlers of a taskq.Registry. SIGTERM/SIGINT: stop claiming, "
        "let running tasks finish within --grace seconds, give the rest back, exit 0.",
    )
    p.add_argument("registry", metavar="MODULE:REGISTRY", help="e.g. myapp.tasks:registry")
    p.add_argument("--queue", "-q", action="append", default=[], dest="queues",
                   help="a queue to take tasks from (repeat for more; default: any)")  # fmt: skip
    p.add_argument("--concurrency", "-c", default="10",
                   help="handler slots: N, or MIN:MAX to grow with backlog (default 10)")  # fmt: skip
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds running tasks get to finish at shutdown (default 10)")  # fmt: skip
    p.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    p.add_argument("--rescue-interval", type=positive_float, default=2.0,
                   help="seconds between stale-task rescues (default 2)")  # fmt: skip
    p.add_argument("--poll-interval", type=positive_float, default=2.0,
                   help="seconds between claim attempts with no NOTIFY (default 2)")  # fmt: skip
    p.add_argument("--prefetch", type=int, default=None,
                   help="extra tasks to claim beyond free slots (default: automatic, "
                   "only for short tasks)")  # fmt: skip
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))  # fmt: skip
    p.set_defaults(func=cmd_worker)


def load_registry(spec: str) -> Registry:
    """The Registry named by ``module:attribute`` (the current folder is importable)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        die(f"expected MODULE:REGISTRY (e.g. myapp.tasks:registry), got {spec!r}", status=2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        die(f"cannot import {module_name!r}: {e}", status=2)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            die(f"{module_name!r} has no attribute {attr!r}", status=2)
        obj = getattr(obj, part)
    if not isinstance(obj, Registry):
        die(f"{spec} is a {type(obj).__name__}, not a taskq.Registry", status=2)
    if len(obj) == 0:
        die(f"{spec} has no task types registered", status=2)
    return obj


def parse_concurrency(text: str) -> tuple[int | None, int]:
    low, sep, high = text.partition(":")
    try:
        if sep:
            lo, hi = positive_int(low), positive_int(high)
            if lo > hi:
                die(f"--concurrency {text}: the minimum is above the maximum", status=2)
            return lo, hi
        return None, positive_int(text)
    except argparse.ArgumentTypeError as e:
        die(f"--concurrency: {e}", status=2)


def cmd_worker(args: argparse.Namespace) -> int:
    from taskq import logs
    from taskq.metrics import Metrics
    from taskq.worker import Worker, WorkerConfig

    registry = load_registry(args.registry)
    low, high = parse_concurrency(args.concurrency)
    for q in args.queues:
        if not q.strip():
            die("--queue cannot be blank", status=2)
    if args.grace < 0:
        die("--grace must be at least 0", status=2)
    logs.setup(args.log_format, getattr(logging, args.log_level))
    config = WorkerConfig(
        queues=tuple(args.queues), concurrency=high, min_concurrency=low, grace=args.grace,
        rescue_interval=args.rescue_interval, poll_interval=args.poll_interval,
        prefetch=None if args.prefetch is None else max(0, args.prefetch),
    )  # fmt: skip
    db = open_db(args, pool_size=4, timeout=30.0, check=False)  # rides out a late database
    metrics = Metrics() if args.metrics_port else None
    worker = Worker(registry, db, config, metrics=metrics)

    def on_signal(signum: int, frame: object) -> None:
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if args.metrics_port:
        from taskq.http import database_health, serve
        from taskq.metrics_db import DatabaseCollector

        assert metrics is not None and db.url is not None
        metrics.registry.register(DatabaseCollector(db, metrics.namespace, metrics=metrics))
        server = serve(args.metrics_port, metrics.registry, database_health(db.url))
    worker.start()
    while not worker.stop_claiming.wait(0.5):
        pass
    worker.shutdown()
    if server is not None:
        server.shutdown()
    db.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # handler threads that ignore cancellation must not hold the exit
