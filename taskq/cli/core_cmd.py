"""``taskq migrate|enqueue|list|show|cancel|retry|purge|workers``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskq.cli.common import (
    die,
    duration,
    open_db,
    positive_int,
    print_json,
    progress_text,
    short_time,
    table,
)
from taskq.config import database_url
from taskq.types import TaskEnqueueRequest, TaskStatus


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="create or upgrade taskq's tables (idempotent)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("enqueue", help="enqueue one task")
    p.add_argument("queue")
    p.add_argument("type")
    p.add_argument("--spec", default="null", help="the task's spec as JSON (default null)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--max-attempts", type=positive_int)
    p.add_argument("--title")
    p.add_argument("--user-id")
    p.add_argument("--unique-key")
    p.add_argument("--json", action="store_true", help="print the task as JSON")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("list", help="list tasks, newest first")
    p.add_argument("--queue")
    p.add_argument("--status", choices=[s.value for s in TaskStatus])
    p.add_argument("--type")
    p.add_argument("--user-id")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show one task (--follow: live until it ends)")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("cancel", help="cancel a waiting or running task")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", help="put a failed or cancelled task back to waiting")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("purge", help="delete ended tasks older than an age")
    p.add_argument("--older-than", type=duration, default=duration("7d"),
                   help="e.g. 12h, 7d (default 7d)")  # fmt: skip
    p.add_argument("--queue")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser("workers", help="list worker processes, live and vanished")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)


def _tasks(args: argparse.Namespace) -> Any:
    from taskq.tasks import Tasks

    return Tasks(open_db(args))


def cmd_migrate(args: argparse.Namespace) -> int:
    from taskq.config import resolve_schema
    from taskq.migrations import migrate

    schema = resolve_schema(args.schema)
    migrate(None, schema)
    url = database_url()
    if url is None:
        from taskq.embedded import data_dir

        print(f"migrated schema {schema} on the embedded PostgreSQL (data in {data_dir()})")
    else:
        print(f"migrated schema {schema}")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    from taskq.queuer import Queuer

    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as e:
        die(f"--spec is not valid JSON: {e}")
    req = TaskEnqueueRequest(
        queue=args.queue, type=args.type, spec=spec, priority=args.priority,
        max_attempts=args.max_attempts, title=args.title, user_id=args.user_id,
        unique_key=args.unique_key,
    )  # fmt: skip
    with Queuer(open_db(args)) as q:
        task = q.enqueue(req)
    if args.json:
        print_json(task)
    else:
        print(task.id)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _tasks(args) as t:
        found = t.list(queue=args.queue, status=args.status, type=args.type,
                       limit=args.limit, user_id=args.user_id)  # fmt: skip
    if args.json:
        print_json(found)
        return 0
    rows = [
        (x.id, x.queue, x.type, x.status.value, f"{x.attempts}/{x.max_attempts}",
         x.title or "", x.user_id or "", short_time(x.created_at), progress_text(x.progress))
        for x in found
    ]  # fmt: skip
    headers = ("ID", "QUEUE", "TYPE", "STATUS", "TRIES", "TITLE", "USER", "CREATED", "PROGRESS")
    print(table(headers, rows))
    return 0


def _describe(task: Any) -> str:
    lines = [
        f"id:        {task.id}",
        f"queue:     {task.queue}",
        f"type:      {task.type}",
        f"status:    {task.status.value}",
        f"attempts:  {task.attempts}/{task.max_attempts}",
        f"priority:  {task.priority}",
    ]
    for label, value in (("title", task.title), ("user", task.user_id)):
        if value:
            lines.append(f"{label + ':':<11}{value}")
    lines.append(f"created:   {short_time(task.created_at)}")
    lines.append(f"run at:    {short_time(task.run_at)}")
    if task.started_at:
        lines.append(f"started:   {short_time(task.started_at)}")
    if task.finished_at:
        lines.append(f"ended:     {short_time(task.finished_at)}")
    if task.progress is not None:
        lines.append(f"progress:  {progress_text(task.progress)}")
    if task.result is not None:
        lines.append(f"result:    {json.dumps(task.result, default=str)[:500]}")
    if task.error:
        lines.append(f"error:     {task.error[:500]}")
    if task.references:
        lines.append(f"refs:      {json.dumps(dict(task.references), default=str)}")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    with _tasks(args) as t:
        if not args.follow:
            task = t.get(args.id)
            print_json(task) if args.json else print(_describe(task))
            return 0
        last = None
        for task in t.watch(args.id, timeout=args.timeout):
            last = task
            if args.json:
                print(json.dumps({"status": task.status.value, "progress": task.progress},
                                 default=str), flush=True)  # fmt: skip
            elif sys.stdout.isatty():
                sys.stdout.write(f"\r{task.status.value:<9} {progress_text(task.progress):<60}")
                sys.stdout.flush()
            else:
                print(f"{task.status.value} {progress_text(task.progress)}", flush=True)
        if not args.json:
            if sys.stdout.isatty():
                print()
            if last is not None:
                print(_describe(last))
        return 0 if last is not None and last.status is TaskStatus.FINISHED else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    with _tasks(args) as t:
        task = t.cancel(args.id)
    print_json(task) if args.json else print(f"{task.id} {task.status.value}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _tasks(args) as t:
        task = t.retry(args.id)
    print_json(task) if args.json else print(f"{task.id} {task.status.value}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with _tasks(args) as t:
        n = t.purge(args.older_than, queue=args.queue)
    print(f"purged {n} task(s)")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    from taskq.queries import Queries
    from taskq.worker.identity import WORKER_STALE

    db = open_db(args)
    try:
        with db.connection() as conn:
            rows = Queries(db.schema).worker(conn, "list", stale=WORKER_STALE, limit=args.limit)
    finally:
        db.close()
    if args.json:
        print_json(rows)
        return 0
    out = [
        (str(r["id"]), r["host"], r["pid"], ",".join(r["queues"]) or "*", r["concurrency"],
         r["running"], "live" if r["alive"] else ("stopped" if r["stopped_at"] else "vanished"),
         short_time(r["started_at"]), short_time(r["last_seen_at"]))
        for r in rows
    ]  # fmt: skip
    print(table(("ID", "HOST", "PID", "QUEUES", "CONC", "RUNNING", "STATE", "STARTED",
                 "LAST SEEN"), out))  # fmt: skip
    return 0
