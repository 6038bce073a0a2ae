"""``taskq schedule add|list|remove|pause|resume``: cron schedules (``taskq scheduler``
turns them into tasks)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from taskq.cli.common import (
    add_output_options,
    connected,
    die,
    json_arg,
    references_arg,
    references_option,
)
from taskq.cli.output import format_time, print_json, table
from taskq.core.text import printable
from taskq.core.types import Schedule, TaskScheduleRequest


def _request_default(name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(TaskScheduleRequest)}[name]


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
    a.add_argument("queue", help="the queue its tasks go to")
    a.add_argument("type", help="its tasks' type")
    a.add_argument(
        "cron", metavar="CRON", help="e.g. '*/5 * * * *', or '* * * * * */10' (every 10 s)"
    )
    a.add_argument("--spec", metavar="JSON", help="the tasks' spec as JSON (default: null)")
    a.add_argument("--timezone", "--tz", metavar="ZONE",
                   help=f"IANA time zone (default {_request_default('timezone')})")  # fmt: skip
    a.add_argument("--skip-missed", action="store_true",
                   help="after downtime, skip missed ticks instead of one catch-up run")  # fmt: skip
    references_option(a, "the schedule's own columns, copied to each task")
    add_output_options(a, json_help="print the schedule as JSON")
    a.set_defaults(func=cmd_add)

    ls = ssub.add_parser("list", help="list schedules", description="List schedules.")
    ls.add_argument("--queue", help="only the schedules of this queue")
    add_output_options(ls, json_help="print the schedules as JSON")
    ls.set_defaults(func=cmd_list)

    for name, what in (
        ("remove", "remove the schedule (the tasks it enqueued stay)"),
        ("pause", "stop firing the schedule until resumed"),
        ("resume", "fire the schedule again, from its next tick"),
    ):
        c = ssub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        c.add_argument("queue", help="the schedule's queue")
        c.add_argument("type", help="the schedule's task type")
        references_option(c, "which schedule of QUEUE and TYPE")
        add_output_options(c, json_help="print the outcome (the schedule) as JSON")
        c.set_defaults(func=cmd_change, action=name)


def _scheduler(db: Any) -> Any:
    from taskq.scheduler import Scheduler

    return Scheduler(db)


def cmd_add(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {
        "spec": json_arg(args.spec, "--spec"),
        "references": references_arg(args.references),
        "skip_missed": args.skip_missed,
    }
    if args.timezone is not None:
        fields["timezone"] = args.timezone
    request = TaskScheduleRequest(args.queue, args.type, args.cron, **fields)
    with connected(args) as db, _scheduler(db) as s:
        schedule = s.schedule(request)
    if args.json:
        print_json(schedule, args.local)
    else:
        print(f"{schedule.id} next run {format_time(schedule.next_run_at, args.local)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connected(args) as db, _scheduler(db) as s:
        found = s.list_schedules(args.queue)
    if args.json:
        print_json(found, args.local)
        return 0
    rows = [
        (x.queue, x.type, x.cron_schedule, x.timezone, "active" if x.enabled else "paused",
         format_time(x.next_run_at, args.local), format_time(x.last_run_at, args.local),
         json.dumps(dict(x.references), default=str) if x.references else "")
        for x in found
    ]  # fmt: skip
    print(table(("QUEUE", "TYPE", "CRON", "TZ", "STATE", "NEXT RUN", "LAST RUN", "REFS"), rows))
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    refs = references_arg(args.references)
    key = {"queue": args.queue, "type": args.type, "references": refs}
    what = printable(f"the schedule of {args.queue} {args.type}")
    with connected(args) as db, _scheduler(db) as s:
        if args.action == "remove":
            if not s.unschedule(**key):
                die(
                    f"no schedule for queue {args.queue!r}, type {args.type!r}, references {refs!r}"
                )
            if args.json:
                print_json({"removed": True, **key})
            else:
                print(f"removed {what}")
            return 0
        x: Schedule = s.pause(**key) if args.action == "pause" else s.resume(**key)
    if args.json:
        print_json(x, args.local)
    elif args.action == "pause":
        print(f"paused {what}")
    else:
        print(f"resumed {what}; next run {format_time(x.next_run_at, args.local)}")
    return 0
