"""``taskq worker MODULE:REGISTRY``: run handlers until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

from taskq.cli.common import (
    CliError,
    die,
    open_db,
    positive_float,
    positive_int,
    require_grants,
)
from taskq.cli.process import (
    add_process_options,
    read_logging_options,
    serve_metrics,
    setup_logging,
)
from taskq.core.defaults import (
    CONCURRENCY,
    GRACE,
    POLL_INTERVAL,
    POOLER_POLL_INTERVAL,
    PREFETCH,
    RESCUE_INTERVAL,
)
from taskq.registry import Registry


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run task handlers",
        description="Run the handlers of a taskq.Registry. SIGTERM/SIGINT: stop claiming, "
        "let running tasks finish within --grace seconds, give the rest back, exit 0. "
        "Logging is the application's: --log-config, else what the module named by "
        "MODULE:REGISTRY set up on the root logger, else taskq's lines on stderr.",
    )
    p.add_argument("registry", metavar="MODULE:REGISTRY",
                   help="the module to import and its taskq.Registry, e.g. "
                   "myapp.tasks:registry (the current folder is importable)")  # fmt: skip
    p.add_argument("--queue", "-q", action="append", default=[], dest="queues", metavar="QUEUE",
                   help="a queue to take tasks from (repeat for more; default: any)")  # fmt: skip
    p.add_argument("--concurrency", "-c", default=CONCURRENCY, metavar="N",
                   help=f"handler slots: N, or MIN:MAX to grow with backlog (default {CONCURRENCY})")  # fmt: skip
    p.add_argument("--grace", type=float, default=GRACE, metavar="SECONDS",
                   help=f"seconds running tasks get to finish at shutdown (default {GRACE:g})")  # fmt: skip
    p.add_argument("--rescue-interval", type=positive_float, default=RESCUE_INTERVAL,
                   metavar="SECONDS",
                   help=f"seconds between stale-task rescues (default {RESCUE_INTERVAL:g})")  # fmt: skip
    p.add_argument("--poll-interval", type=positive_float, default=None, metavar="SECONDS",
                   help=f"seconds between claim attempts with no NOTIFY (default "
                   f"{POLL_INTERVAL:g}; {POOLER_POLL_INTERVAL:g} behind a transaction pooler "
                   "with no TASKQ_LISTEN_URL)")  # fmt: skip
    p.add_argument("--prefetch", action="store_true", default=PREFETCH,
                   help="reserve short tasks ahead of the free slots, charging each "
                   "attempt when it starts (faster for short tasks; a run in the moment "
                   "before its start is recorded can go uncharged if the worker then dies; "
                   "default: claim only what the free slots start now, charged at claim)")  # fmt: skip
    add_process_options(p)
    p.set_defaults(func=cmd_worker, own_logging=True)


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
    except Exception as e:  # the module's own code failed: say where, on one line
        frames = traceback.extract_tb(e.__traceback__)
        at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        die(f"importing {module_name!r} failed: {type(e).__name__}: {e}{at}")
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
    worker: Worker | None = None

    def on_signal(signum: int, frame: object) -> None:
        if worker is None:  # still starting: nothing claimed yet, leave at once
            os._exit(0)
        worker.request_stop()

    # Installed first: SIGTERM while the process still starts is a clean exit too.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from taskq.ops.metrics import Metrics
    from taskq.worker import Worker, WorkerConfig

    low, high = parse_concurrency(str(args.concurrency))
    for q in args.queues:
        if not q.strip():
            die("--queue cannot be blank", status=2)
    if args.grace < 0:
        die("--grace must be at least 0", status=2)
    log_config = read_logging_options(args)
    # The application's module may set up logging as it is imported: what it adds to
    # the root logger is kept (see taskq.cli.process).
    handlers_before = list(logging.getLogger().handlers)
    registry = load_registry(args.registry)
    setup_logging(args, log_config, handlers_before)
    config = WorkerConfig(
        queues=tuple(args.queues), concurrency=high, min_concurrency=low, grace=args.grace,
        rescue_interval=args.rescue_interval, poll_interval=args.poll_interval,
        prefetch=args.prefetch,
    )  # fmt: skip
    # rides out a late database; plans its hot statements once per connection
    db = open_db(args, pool_size=4, timeout=30.0, check=False, generic_plans=True)
    require_grants(db, "worker")
    metrics = Metrics() if args.metrics_port else None
    worker = Worker(registry, db, config, metrics=metrics)
    server = None
    if metrics is not None:
        try:
            server = serve_metrics(args, db, metrics, count_outcomes=True)
        except CliError:
            db.close()
            raise
    if worker.start():
        while not worker.stop_claiming.wait(0.5):
            pass
        worker.shutdown()
    if server is not None:
        server.shutdown()
    db.close()
    _exit()


def _exit() -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # handler threads that ignore cancellation must not hold the exit
