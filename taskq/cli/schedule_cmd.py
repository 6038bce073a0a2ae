"""``taskq schedule add|list|remove|pause|resume`` and ``taskq scheduler``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from taskq.cli.common import die, duration, open_db, positive_float, print_json, short_time, table
from taskq.types import TaskScheduleRequest


def register(sub: Any) -> None:
    p = sub.add_parser(
        "schedule",
        help="add, list, remove, pause or resume cron schedules",
        description="Cron schedules; `taskq scheduler` turns them into tasks.",
    )
    ssub = p.add_subparsers(dest="schedule_command", metavar="ACTION", parser_class=type(p))
    ssub.required = True

    a = ssub.add_parser(
        "add",
        help="create or update the schedule of QUEUE and TYPE",
        description="Create the schedule, or update the one with the same queue, type and "
        "references. CRON has 5 fields (minute hour day-of-month month day-of-week), or 6 "
        "whose last is seconds; quote it.",
    )
    a.add_argument("queue")
    a.add_argument("type")
    a.add_argument(
        "cron", metavar="CRON", help="e.g. '*/5 * * * *', or '* * * * * */10' (every 10 s)"
    )
    a.add_argument("--spec", default="null", help="the tasks' spec as JSON (default null)")
    a.add_argument("--timezone", "--tz", default="UTC", help="IANA time zone (default UTC)")
    a.add_argument("--skip-missed", action="store_true",
                   help="after downtime, skip missed ticks instead of one catch-up run")  # fmt: skip
    _references_option(a)
    a.add_argument("--json", action="store_true", help="print the schedule as JSON")
    a.set_defaults(func=cmd_add)

    ls = ssub.add_parser("list", help="list schedules")
    ls.add_argument("--queue")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    for name, what in (
        ("remove", "remove the schedule (the tasks it enqueued stay)"),
        ("pause", "stop firing the schedule until resumed"),
        ("resume", "fire the schedule again, from its next tick"),
    ):
        c = ssub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        c.add_argument("queue")
        c.add_argument("type")
        _references_option(c)
        c.set_defaults(func=cmd_change, action=name)

    s = sub.add_parser(
        "scheduler",
        help="fire cron schedules, rescue stale tasks, prune old ones",
        description="Enqueue each due schedule once per tick (any number of these may "
        "run), rescue tasks whose worker stopped heartbeating, and delete ended tasks "
        "older than --retention. SIGTERM/SIGINT: exit 0.",
    )
    s.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    s.add_argument("--retention", type=duration, default=duration("7d"),
                   help="delete finished, failed and cancelled tasks older than this "
                        "(e.g. 12h, 7d; default 7d)")  # fmt: skip
    s.add_argument("--rescue-interval", type=positive_float, default=2.0,
                   help="seconds between stale-task rescues (default 2)")  # fmt: skip
    s.add_argument("--misfire-grace", type=duration, default=duration("10s"),
                   help="a tick later than this is missed: one catch-up run (default 10s)")  # fmt: skip
    s.add_argument("--log-format", choices=("text", "json"), default="text")
    s.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    s.set_defaults(func=cmd_scheduler)


def _references_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--references", default="{}", metavar="JSON",
                   help='reference columns and values, e.g. \'{"account_id": 7}\'')  # fmt: skip


def _json_arg(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        die(f"{option} is not valid JSON: {e}", status=2)


def _references(args: argparse.Namespace) -> dict[str, Any]:
    refs = _json_arg(args.references, "--references")
    if not isinstance(refs, dict):
        die("--references must be a JSON object, e.g. '{\"account_id\": 7}'", status=2)
    return refs


def _scheduler(args: argparse.Namespace) -> Any:
    from taskq.scheduler import Scheduler

    return Scheduler(open_db(args))


def _jsonable(schedule: Any) -> dict[str, Any]:
    d = dataclasses.asdict(schedule)
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in d.items()}


def cmd_add(args: argparse.Namespace) -> int:
    request = TaskScheduleRequest(
        queue=args.queue, type=args.type, cron_schedule=args.cron,
        spec=_json_arg(args.spec, "--spec"), references=_references(args),
        timezone=args.timezone, skip_missed=args.skip_missed,
    )  # fmt: skip
    with _scheduler(args) as s:
        schedule = s.schedule(request)
    if args.json:
        print_json(_jsonable(schedule))
    else:
        print(f"{schedule.id} next run {schedule.next_run_at.isoformat()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _scheduler(args) as s:
        found = s.list_schedules(args.queue)
    if args.json:
        print_json([_jsonable(x) for x in found])
        return 0
    rows = [
        (x.queue, x.type, x.cron_schedule, x.timezone, "active" if x.enabled else "paused",
         short_time(x.next_run_at), short_time(x.last_run_at),
         json.dumps(dict(x.references), default=str) if x.references else "")
        for x in found
    ]  # fmt: skip
    print(table(("QUEUE", "TYPE", "CRON", "TZ", "STATE", "NEXT RUN", "LAST RUN", "REFS"), rows))
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    refs = _references(args)
    with _scheduler(args) as s:
        if args.action == "remove":
            if not s.unschedule(queue=args.queue, type=args.type, references=refs):
                die(
                    f"no schedule for queue {args.queue!r}, type {args.type!r}, references {refs!r}"
                )
            print(f"removed the schedule of {args.queue} {args.type}")
        elif args.action == "pause":
            s.pause(queue=args.queue, type=args.type, references=refs)
            print(f"paused the schedule of {args.queue} {args.type}")
        else:
            x = s.resume(queue=args.queue, type=args.type, references=refs)
            print(f"resumed the schedule of {args.queue} {args.type}; next run {x.next_run_at}")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    import psycopg

    from taskq import logs
    from taskq.maintenance import Maintenance, Pruner, Rescuer, Service
    from taskq.metrics import Metrics
    from taskq.schedule_queries import ScheduleQueries
    from taskq.ticker import CronTicker

    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        die(f"--metrics-port must be between 1 and 65535, got {args.metrics_port}", status=2)
    if args.retention <= dt.timedelta(0):
        die("--retention must be above 0", status=2)
    if args.misfire_grace < dt.timedelta(0):
        die("--misfire-grace cannot be negative", status=2)
    logs.setup(args.log_format, getattr(logging, args.log_level))
    # The process reports a database outage once itself (Maintenance); the pool's and
    # the LISTEN thread's own reconnect warnings would repeat it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    logging.getLogger("taskq.notify").setLevel(logging.ERROR)
    log = logging.getLogger("taskq.scheduler")

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    db = open_db(args, pool_size=4, timeout=10.0, check=False)  # rides out a late database
    assert db.url is not None
    try:
        with psycopg.connect(db.url, connect_timeout=5, autocommit=True) as conn:
            ScheduleQueries(db.schema).next_due(conn)
    except psycopg.errors.UndefinedTable:
        db.close()
        die(f"schema {db.schema!r} has no schedules table: run `taskq migrate` first")
    except psycopg.OperationalError:
        pass  # not reachable yet: the services retry, and report the outage once

    metrics = Metrics()
    ticker = CronTicker(db, metrics=metrics, misfire_grace=args.misfire_grace)
    services: list[Service] = [
        ticker,
        Rescuer(db, interval=args.rescue_interval, metrics=metrics),
        Pruner(db, retention=args.retention),
    ]
    maintenance = Maintenance(services, stop, one_outage_line=True)
    server = None
    if args.metrics_port:
        from taskq.http import database_health, serve
        from taskq.metrics_db import DatabaseCollector

        metrics.registry.register(DatabaseCollector(db, metrics.namespace))
        try:
            server = serve(args.metrics_port, metrics.registry, database_health(db.url))
        except OSError as e:
            die(f"cannot serve metrics on port {args.metrics_port}: {e.strerror or e}")
    maintenance.start()
    log.info(
        "scheduler started (schema %s, retention %gs, misfire grace %gs)",
        db.schema, args.retention.total_seconds(), args.misfire_grace.total_seconds(),
    )  # fmt: skip
    while not stop.wait(0.5):
        pass
    log.info("scheduler stopping")
    maintenance.stop(timeout=1.0)  # per thread; each wait is bounded
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
