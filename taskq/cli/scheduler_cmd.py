"""``taskq scheduler``: fire cron schedules, rescue stale tasks, prune old ones."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from typing import Any

from taskq.cli.common import (
    CliError,
    die,
    duration,
    human_duration,
    open_db,
    positive_float,
    require_grants,
)
from taskq.cli.process import (
    add_process_options,
    read_logging_options,
    serve_metrics,
    setup_logging,
)
from taskq.core.defaults import MISFIRE_GRACE, RESCUE_INTERVAL, RETENTION


def register(sub: Any) -> None:
    s = sub.add_parser(
        "scheduler",
        help="fire cron schedules, rescue stale tasks, prune old ones",
        description="Enqueue each due schedule once per tick (any number of these may "
        "run), rescue tasks whose worker stopped heartbeating, and delete ended tasks "
        "older than --retention. SIGTERM/SIGINT: exit 0. Logging: --log-config, else "
        "taskq's lines on stderr.",
    )
    s.add_argument("--retention", type=duration, default=RETENTION, metavar="DURATION",
                   help="delete finished, failed and cancelled tasks older than this "
                   f"(e.g. 12h, 7d; default {human_duration(RETENTION)})")  # fmt: skip
    s.add_argument("--rescue-interval", type=positive_float, default=RESCUE_INTERVAL,
                   metavar="SECONDS",
                   help=f"seconds between stale-task rescues (default {RESCUE_INTERVAL:g})")  # fmt: skip
    s.add_argument("--misfire-grace", type=duration, default=MISFIRE_GRACE, metavar="DURATION",
                   help="a tick later than this is missed: one catch-up run (default "
                   f"{human_duration(MISFIRE_GRACE)})")  # fmt: skip
    add_process_options(s)
    s.set_defaults(func=cmd_scheduler, own_logging=True)


def cmd_scheduler(args: argparse.Namespace) -> int:
    # SIGTERM from here on is a clean stop, even while the process is still starting.
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    import psycopg

    from taskq.ops.metrics import Metrics
    from taskq.services.base import Runner, Service
    from taskq.services.pruner import Pruner
    from taskq.services.rescuer import Rescuer
    from taskq.services.ticker import CronTicker

    if args.retention <= dt.timedelta(0):
        die("--retention must be above 0", status=2)
    if args.misfire_grace < dt.timedelta(0):
        die("--misfire-grace cannot be negative", status=2)
    log_config = read_logging_options(args)
    setup_logging(args, log_config, list(logging.getLogger().handlers))
    # The process reports a database outage once itself (Runner); the pool's and
    # the LISTEN thread's own reconnect warnings would repeat it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    logging.getLogger("taskq.listen").setLevel(logging.ERROR)
    log = logging.getLogger("taskq.scheduler")

    db = open_db(args, pool_size=4, timeout=10.0, check=False)  # rides out a late database
    require_grants(db, "scheduler")
    try:
        db.query(db.settings.stmts.schedules.next_due())
    except psycopg.errors.UndefinedTable:
        db.close()
        die(f"schema {db.schema!r} has no schedules table: run `taskq migrate` first")
    except Exception:
        pass  # not reachable yet: the services retry, and report the outage once

    metrics = Metrics()
    ticker = CronTicker(db, metrics=metrics, misfire_grace=args.misfire_grace)
    services: list[Service] = [
        ticker,
        Rescuer(db, interval=args.rescue_interval, metrics=metrics),
        Pruner(db, retention=args.retention),
    ]
    runner = Runner(services, stop, one_outage_line=True)
    try:
        server = serve_metrics(args, db, metrics, count_outcomes=False)
    except CliError:
        db.close()
        raise
    runner.start()
    log.info(
        "scheduler started (schema %s, retention %gs, misfire grace %gs)",
        db.schema, args.retention.total_seconds(), args.misfire_grace.total_seconds(),
    )  # fmt: skip
    while not stop.wait(0.5):
        pass
    log.info("scheduler stopping")
    runner.stop(timeout=1.0)  # per thread; each wait is bounded
    if server is not None:
        server.shutdown()

    # Close politely, but never wait long: a service may be stuck on a dead connection.
    def close() -> None:
        ticker.close()
        db.close()

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(2.0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a service stuck on an unreachable database must not hold the exit
