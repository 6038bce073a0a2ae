"""``taskq migrate|enqueue|workers``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from typing import Any

from taskq.cli.common import (
    add_output_options,
    check_reachable,
    connected,
    duration,
    human_duration,
    json_arg,
    parse_time,
    positive_int,
    references_arg,
    references_option,
    seconds,
)
from taskq.cli.output import format_time, print_json, table
from taskq.core.config import database_url, describe_target, resolve_schema
from taskq.core.defaults import HEARTBEAT_TIMEOUT, LIST_LIMIT, MAX_ATTEMPTS, RETRY_DELAY
from taskq.core.encode import RequestEncoder
from taskq.core.types import TaskEnqueueRequest


def _request_default(name: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(TaskEnqueueRequest)}
    return fields[name].default


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        help="create or upgrade taskq's tables (idempotent)",
        description="Upgrade taskq's schema to the newest version; running it again "
        "changes nothing. Concurrent runs take turns.",
    )
    p.add_argument("--json", action="store_true",
                   help="print the schema and the database as JSON")  # fmt: skip
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "enqueue",
        help="enqueue one task",
        description="Enqueue one task; every field of taskq.TaskEnqueueRequest has an "
        "option. Prints the task's id (--json: the task). Durations read 90s, 15m, 2h, 1d "
        "or a number of seconds. With --app, the type's registered options are the "
        "defaults, its validator checks the spec, and a type the registry does not know "
        "is refused.",
    )
    p.add_argument("queue", help="the queue to put the task on")
    p.add_argument("type", help="the task's type (which handler runs it)")
    p.add_argument("--app", metavar="MODULE:REGISTRY",
                   help="the taskq.Registry the workers run, e.g. myapp.tasks:registry: "
                   "use its defaults and validator for TYPE and refuse types it does not "
                   "know (default: none: any type, taskq's own defaults)")  # fmt: skip
    p.add_argument("--spec", metavar="JSON", help="the task's spec as JSON (default: null)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--run-at", metavar="TIME",
                      help="run no sooner than this ISO 8601 time with its offset, e.g. "
                      "2026-03-01T12:00:00+00:00 or ...Z (one without an offset is local "
                      "time with --local) (default: now)")  # fmt: skip
    when.add_argument("--delay", type=duration, metavar="DURATION",
                      help="run no sooner than this long from now, e.g. 15m")  # fmt: skip
    p.add_argument("--priority", type=int,
                   help=f"higher runs first (default {_request_default('priority')})")  # fmt: skip
    p.add_argument("--max-attempts", type=positive_int, metavar="N",
                   help="attempts before the task fails for good (default: the type's "
                   f"registered value with --app, else {MAX_ATTEMPTS})")  # fmt: skip
    p.add_argument("--timeout", type=seconds, metavar="DURATION",
                   help="an attempt running longer fails (default: the type's registered "
                   "value with --app, else none)")  # fmt: skip
    p.add_argument("--heartbeat-timeout", type=seconds, metavar="DURATION",
                   help="a running task whose worker is silent this long is rescued "
                   f"(default {human_duration(HEARTBEAT_TIMEOUT)})")  # fmt: skip
    p.add_argument("--retry-delay", type=seconds, metavar="DURATION",
                   help="wait before the first retry, doubled for each one after "
                   f"(default {human_duration(RETRY_DELAY)})")  # fmt: skip
    p.add_argument("--unique-key", metavar="KEY",
                   help="refused while a waiting or running task holds the same key")  # fmt: skip
    references_option(p, "columns of your own to set on the task")
    p.add_argument("--title", help="a title for people to read")
    p.add_argument("--user-id", metavar="ID",
                   help="who the task is for (taskq list --user-id finds it)")  # fmt: skip
    add_output_options(p, json_help="print the task as JSON (default: its id)")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser(
        "workers",
        help="list worker processes, live and vanished",
        description="Worker processes, newest first: live, stopped cleanly, or vanished "
        "(not seen for a while: their tasks are rescued).",
    )
    p.add_argument("--limit", type=positive_int, default=LIST_LIMIT, metavar="N",
                   help=f"at most this many (default {LIST_LIMIT})")  # fmt: skip
    add_output_options(p, json_help="print the workers as JSON")
    p.set_defaults(func=cmd_workers)


def cmd_migrate(args: argparse.Namespace) -> int:
    from taskq.db.migrate import migrate

    schema = resolve_schema(args.schema)
    url = database_url()
    if url is None:
        from taskq.db.embedded import data_dir, embedded_url

        url = embedded_url()
        where = f"the embedded PostgreSQL (data in {data_dir()})"
    else:
        where = describe_target(url)
    check_reachable(url)  # one line now, rather than Alembic's report after retries
    done = migrate(url, schema)
    if args.json:
        print_json({"schema": schema, "database": where, "before": done.before,
                    "after": done.after, "changed": done.changed})  # fmt: skip
    elif done.changed:
        print(f"migrated schema {schema} on {where} to revision {done.after}")
    else:
        print(f"migrated schema {schema} on {where}: already up to date (revision {done.after})")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    from taskq.queuer import Queuer

    fields: dict[str, Any] = {
        "spec": json_arg(args.spec, "--spec"),
        "references": references_arg(args.references),
    }
    for name in ("priority", "max_attempts", "timeout", "heartbeat_timeout", "retry_delay",
                 "unique_key", "title", "user_id"):  # fmt: skip
        if (value := getattr(args, name)) is not None:
            fields[name] = value
    if args.run_at is not None:
        fields["run_at"] = parse_time(args.run_at, args.local, "--run-at")
    elif args.delay is not None:
        fields["run_at"] = dt.datetime.now(dt.UTC) + args.delay
    request = TaskEnqueueRequest(args.queue, args.type, **fields)
    registry = None
    if args.app is not None:
        from taskq.cli.worker_cmd import load_registry

        registry = load_registry(args.app)
    strict = registry is not None
    RequestEncoder(registry, strict=strict).rows([request])  # refused before connecting
    with connected(args) as db, Queuer(db, registry=registry, strict=strict) as queuer:
        task = queuer.enqueue(request)
    if args.json:
        print_json(task, args.local)
    else:
        print(task.id)
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    from taskq.core.defaults import WORKER_STALE

    with connected(args) as db:
        rows = db.query(db.settings.stmts.workers.list_workers(WORKER_STALE, args.limit))
    if args.json:
        print_json(rows, args.local)
        return 0
    out = [
        (str(r["id"]), r["host"], r["pid"], ",".join(r["queues"]) or "*", r["concurrency"],
         r["running"], "live" if r["alive"] else ("stopped" if r["stopped_at"] else "vanished"),
         format_time(r["started_at"], args.local), format_time(r["last_seen_at"], args.local))
        for r in rows
    ]  # fmt: skip
    print(table(("ID", "HOST", "PID", "QUEUES", "CONC", "RUNNING", "STATE", "STARTED",
                 "LAST SEEN"), out))  # fmt: skip
    return 0
