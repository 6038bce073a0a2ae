"""``taskq list|show|cancel|retry|purge``: looking at tasks and controlling them.

A task is named by its id or by a prefix of it (at least ``ID_PREFIX_MIN`` hex digits)
that only one task's id starts with. ``cancel`` and ``retry`` also take filters instead
of an id and act on every task that matches, with ``--dry-run`` to count them first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from taskq.cli.common import (
    TIMED_OUT,
    USAGE,
    add_output_options,
    add_read_url_option,
    connected,
    die,
    duration,
    human_duration,
    positive_int,
    task_id,
)
from taskq.cli.output import format_time, plural, print_json, progress_text, table
from taskq.core.defaults import ID_PREFIX_MIN, LIST_LIMIT, RETENTION
from taskq.core.text import printable
from taskq.core.types import Task, TaskStatus

ID_HELP = f"a task id, or its first {ID_PREFIX_MIN} or more hex digits"
BULK_PAGE = 500
"""Tasks read per statement by a cancel or retry by filter."""

CANCELLABLE = (TaskStatus.WAITING.value, TaskStatus.RUNNING.value)
RETRYABLE = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)


def register(sub: Any) -> None:
    p = sub.add_parser("list", help="list tasks, newest first",
                       description="Tasks matching every filter given, newest first.")  # fmt: skip
    p.add_argument("--queue", help="only tasks of this queue")
    p.add_argument("--status", choices=[s.value for s in TaskStatus],
                   help="only tasks in this status")  # fmt: skip
    p.add_argument("--type", help="only tasks of this type")
    p.add_argument("--user-id", metavar="ID", help="only tasks enqueued for this user")
    p.add_argument("--limit", type=positive_int, default=LIST_LIMIT, metavar="N",
                   help=f"at most this many (default {LIST_LIMIT})")  # fmt: skip
    add_read_url_option(p)
    add_output_options(p, json_help="print the tasks as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "show",
        help="show one task (--follow: live until it ends)",
        description="Show a task. With --follow, print a line per change of status or "
        "progress until it ends; the exit status is then 0 if it finished, 1 if it "
        f"failed or was cancelled, {TIMED_OUT} if --timeout ran out first.",
    )
    p.add_argument("id", help=ID_HELP)
    p.add_argument("--follow", "-f", action="store_true",
                   help="print each change until the task ends")  # fmt: skip
    p.add_argument("--timeout", type=duration, metavar="DURATION",
                   help=f"with --follow: give up after this long, e.g. 30s (exit {TIMED_OUT}) "
                   "(default: wait for the end)")  # fmt: skip
    add_read_url_option(p)
    add_output_options(p, json_help="print the task as JSON (with --follow: one JSON "
                       "object per line, per change)")  # fmt: skip
    p.set_defaults(func=cmd_show)

    _control_parser(sub, "cancel", "cancel", "cancelled", CANCELLABLE,
                    "A waiting task is cancelled at once; a running one is marked cancelled "
                    "and its worker stops at its next heartbeat.")  # fmt: skip
    _control_parser(sub, "retry", "retry", "retried", RETRYABLE,
                    "Failed or cancelled tasks go back to waiting with their attempts reset; "
                    "one whose unique_key another waiting or running task holds now stays "
                    "as it is (exit 1).")  # fmt: skip

    p = sub.add_parser(
        "purge",
        help="delete ended tasks older than an age",
        description="Delete finished, failed and cancelled tasks that ended more than "
        "--older-than ago (what `taskq scheduler` does every minute with --retention).",
    )
    p.add_argument("--older-than", type=duration, default=RETENTION, metavar="DURATION",
                   help=f"e.g. 12h, 7d (default {human_duration(RETENTION)})")  # fmt: skip
    p.add_argument("--queue", help="only tasks of this queue")
    p.add_argument("--dry-run", action="store_true",
                   help="count the tasks it would delete; delete nothing")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the count as JSON")
    p.set_defaults(func=cmd_purge)


def _control_parser(
    sub: Any, name: str, verb: str, done: str, statuses: tuple[str, ...], what: str
) -> None:
    p = sub.add_parser(
        name,
        help=f"{verb} a task, or every task matching --queue, --status and --type",
        description=f"{what} Name one task, or leave the id out and {verb} every task that "
        f"matches the filters given (those {' or '.join(statuses)}); --dry-run counts them.",
    )
    p.add_argument("id", nargs="?", help=f"{ID_HELP} (or leave it out and use filters)")
    p.add_argument("--queue", help=f"{verb} the tasks of this queue")
    p.add_argument("--status", choices=statuses,
                   help=f"{verb} only tasks in this status (default: {' and '.join(statuses)})")  # fmt: skip
    p.add_argument("--type", help=f"{verb} only tasks of this type")
    p.add_argument("--dry-run", action="store_true",
                   help=f"with filters: count the tasks it would {verb}; change nothing")  # fmt: skip
    add_output_options(p, json_help="print the task (with filters: the counts) as JSON")
    p.set_defaults(func=cmd_control, verb=verb, done=done, statuses=statuses)


# ---- list and show -----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from taskq.tasks import Tasks

    with connected(args) as db, Tasks(db) as t:
        found = t.list(queue=args.queue, status=args.status, type=args.type,
                       limit=args.limit, user_id=args.user_id)  # fmt: skip
    if args.json:
        print_json(found, args.local)
        return 0
    rows: list[tuple[str, ...]] = [
        (x.id, x.queue, x.type, x.status.value, f"{x.attempts}/{x.max_attempts}",
         x.title or "", x.user_id or "", format_time(x.created_at, args.local),
         progress_text(x))
        for x in found
    ]  # fmt: skip
    headers: tuple[str, ...] = ("ID", "QUEUE", "TYPE", "STATUS", "TRIES", "TITLE", "USER",
                                "CREATED", "PROGRESS")  # fmt: skip
    if any(x.errors or x.error for x in found):  # why the last attempt failed
        headers += ("LAST ERROR",)
        rows = [(*row, last_error(x)) for row, x in zip(rows, found, strict=True)]
    print(table(headers, rows))
    return 0


def last_error(task: Task, width: int = 60) -> str:
    """``Type: message`` of the task's last failed attempt, cut to ``width``."""
    text = task.errors[-1].summary() if task.errors else task.error or ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def history(task: Task, local: bool) -> list[str]:
    """The error history, oldest first, then the last traceback (escaped lines)."""
    out = []
    for e in task.errors:
        when = format_time(e.at, local) if e.at is not None else "?"
        worker = f" (worker {e.worker_id.split('-')[0]})" if e.worker_id else ""
        out.append(printable(f"  attempt {e.attempt}  {when}  {e.kind}  {e.summary()}{worker}"))
    last = task.errors[-1].traceback if task.errors else None
    if last:
        out.append("last traceback:")
        out += [f"  {printable(line)}" for line in last.rstrip().splitlines()[-40:]]
    return out


def describe(task: Task, local: bool) -> str:
    """A task as labelled lines."""
    lines = [
        ("id", task.id),
        ("queue", task.queue),
        ("type", task.type),
        ("status", task.status.value),
        ("attempts", f"{task.attempts}/{task.max_attempts}"),
        ("priority", str(task.priority)),
    ]
    for label, value in (("title", task.title), ("user", task.user_id),
                         ("unique key", task.unique_key), ("chain", task.chain_id),
                         ("group", task.group_id), ("worker", task.worker_id)):  # fmt: skip
        if value:
            lines.append((label, str(value)))
    for label, when in (("created", task.created_at), ("run at", task.run_at),
                        ("started", task.started_at), ("heartbeat", task.last_heartbeat_at),
                        ("ended", task.finished_at)):  # fmt: skip
        if when is not None:
            lines.append((label, format_time(when, local)))
    if task.progress is not None:
        lines.append(("progress", progress_text(task)))
    if task.result is not None:
        lines.append(("result", json.dumps(task.result, default=str)[:500]))
    if task.error:
        lines.append(("error", task.error[:500]))
    if task.references:
        lines.append(("refs", json.dumps(dict(task.references), default=str)))
    text = [f"{label + ':':<11}{printable(value)}" for label, value in lines]
    if task.errors:
        text += ["errors:", *history(task, local)]
    return "\n".join(text)


def cmd_show(args: argparse.Namespace) -> int:
    from taskq.tasks import Tasks

    if args.timeout is not None and not args.follow:
        die("--timeout applies only with --follow", USAGE)
    with connected(args) as db, Tasks(db) as t:
        tid = task_id(db, args.id)
        if not args.follow:
            task = t.get(tid)
            print_json(task, args.local) if args.json else print(describe(task, args.local))
            return 0
        return _follow(t, tid, args)


def _follow(tasks: Any, tid: str, args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty() and not args.json
    timeout = None if args.timeout is None else max(0.0, args.timeout.total_seconds())
    last: Task | None = None
    try:
        for task in tasks.watch(tid, timeout=timeout):
            last = task
            if args.json:
                print_json(task, args.local, one_line=True)
            elif tty:
                sys.stdout.write(f"\r{task.status.value:<9} {progress_text(task):<60}")
                sys.stdout.flush()
            else:
                print(f"{task.status.value} {progress_text(task)}", flush=True)
    except TimeoutError:
        if tty:
            print()
        now = f" (it is {last.status.value})" if last is not None else ""
        die(f"task {tid} did not end within {human_duration(args.timeout)}{now}", TIMED_OUT)
    if not args.json:
        if tty:
            print()
        if last is not None:
            print(describe(last, args.local))
    return 0 if last is not None and last.status is TaskStatus.FINISHED else 1


# ---- cancel and retry --------------------------------------------------------------------


def cmd_control(args: argparse.Namespace) -> int:
    from taskq.tasks import Tasks

    filtered = args.queue is not None or args.status is not None or args.type is not None
    if args.id is not None and filtered:
        die("give a task id or filters (--queue, --status, --type), not both", USAGE)
    if args.id is None and not filtered:
        die(f"give a task id, or choose the tasks to {args.verb} with --queue, --status or "
            "--type", USAGE)  # fmt: skip
    if args.id is not None and args.dry_run:
        die("--dry-run applies to filters, not to one task", USAGE)
    with connected(args) as db, Tasks(db) as t:
        act: Callable[[str], Task] = t.cancel if args.verb == "cancel" else t.retry
        if args.id is not None:
            task = act(task_id(db, args.id))
            print_json(task, args.local) if args.json else print(f"{task.id} {task.status.value}")
            return 0
        statuses = [args.status] if args.status is not None else list(args.statuses)
        if args.dry_run:
            query = db.settings.stmts.tasks.count_tasks(queue=args.queue, statuses=statuses,
                                                        type=args.type)  # fmt: skip
            n = db.query(query)
            if args.json:
                print_json({"dry_run": True, f"would_{args.verb}": n})
            else:
                print(f"would {args.verb} {plural(n)}")
            return 0
        return _bulk(t, act, statuses, args)


def _bulk(tasks: Any, act: Callable[[str], Task], statuses: list[str],
          args: argparse.Namespace) -> int:  # fmt: skip
    """``act`` on every task matching the filters, newest first, a page at a time. A task
    that moved on meanwhile (ended, or already retried) is skipped; one the database
    refuses (its unique_key is held) is reported."""
    from taskq.core.errors import TaskAlreadyExists, TaskqError

    done = skipped = 0
    refused: list[TaskAlreadyExists] = []
    before: Task | None = None
    while True:
        page = tasks.list(queue=args.queue, status=statuses, type=args.type, limit=BULK_PAGE,
                          before=before)  # fmt: skip
        for task in page:
            try:
                act(task.id)
                done += 1
            except TaskAlreadyExists as e:
                refused.append(e)
            except TaskqError:  # ended, or changed status, since it was listed
                skipped += 1
        if len(page) < BULK_PAGE:
            break
        before = page[-1]
    if args.json:
        print_json({args.done: done, "skipped": skipped,
                    "refused": [{"id": e.task_id, "error": str(e)} for e in refused]})  # fmt: skip
    else:
        moved = f"; {plural(skipped)} skipped (moved on meanwhile)" if skipped else ""
        print(f"{args.done} {plural(done)}{moved}")
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        die(f"{plural(len(refused))} not {args.done}: {refused[0]}{more}")
    return 0


# ---- purge -------------------------------------------------------------------------------


def cmd_purge(args: argparse.Namespace) -> int:
    from taskq.tasks import Tasks

    if args.older_than.total_seconds() < 0:
        die("--older-than cannot be negative", USAGE)
    with connected(args) as db:
        if args.dry_run:
            query = db.settings.stmts.tasks.count_purgeable(args.older_than.total_seconds(),
                                                            args.queue)  # fmt: skip
            n = db.query(query)
        else:
            with Tasks(db) as t:
                n = t.purge(args.older_than, queue=args.queue)
    if args.json:
        print_json({"dry_run": True, "would_purge": n} if args.dry_run else {"purged": n})
    else:
        print(f"would purge {plural(n)}" if args.dry_run else f"purged {plural(n)}")
    return 0
