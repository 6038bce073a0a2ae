"""``taskq demo``: everything at once, with no configuration.

Starts (or reuses) the embedded PostgreSQL when TASKQ_DATABASE_URL is unset, migrates,
runs a worker in this process and a scheduler process beside it, enqueues sample tasks
(one fails once and succeeds on its retry, one is cancelled, one comes from a cron
schedule), shows them moving, and exits 0 when they are done. With the server extra
installed it also runs ``taskq serve`` and prints the dashboard's address with a ready
token (revoked when the demo ends); ``--stay`` keeps everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from taskq.cli.common import open_db, progress_text
from taskq.core.config import database_url, describe_target, resolve_schema
from taskq.core.defaults import DEMO_TIMEOUT, SERVE_PORT
from taskq.core.types import TaskEnqueueRequest, TaskStatus

SCHEDULE = "* * * * * *"  # every second (6 fields: the last is seconds)


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a self-contained demo (embedded PostgreSQL by default)")
    p.add_argument(
        "--timeout", type=float, default=DEMO_TIMEOUT, help="give up after this many seconds"
    )
    p.add_argument("--port", type=int, default=SERVE_PORT,
                   help="the dashboard's port (default 8080, another free one if taken)")  # fmt: skip
    p.add_argument("--no-serve", action="store_true", help="do not start the dashboard")
    p.add_argument("--stay", action="store_true",
                   help="keep the dashboard, worker and scheduler running after the samples, "
                   "until Ctrl-C")  # fmt: skip
    p.set_defaults(func=cmd_demo)


class _Dashboard:
    """``taskq serve`` beside the demo, with a token made for it."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        import socket
        import uuid

        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                port = 0  # taken: any free port
        self.token_name = f"demo-{uuid.uuid4().hex[:6]}"
        self.env = env
        made = subprocess.run(_cli("token", "create", "--name", self.token_name, "--scope",
                                   "write"), env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        self.token = made.stdout.strip() if made.returncode == 0 else None
        self.proc = subprocess.Popen(_cli("serve", "--port", str(port)), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)  # fmt: skip
        self.url = None
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on " in line:
            self.url = line.split("listening on ", 1)[1].split()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.token:
            subprocess.run(_cli("token", "revoke", self.token_name), env=self.env,
                           capture_output=True, timeout=60)  # fmt: skip


def _start_dashboard(args: argparse.Namespace, env: dict[str, str]) -> _Dashboard | None:
    from taskq.server import missing_dependency

    if args.no_serve:
        return None
    reason = missing_dependency()
    if reason is not None:
        print(f"(no dashboard: {reason})", flush=True)
        return None
    dash = _Dashboard(env, args.port)
    if dash.url is None or dash.token is None:
        print("(the dashboard did not start; the demo goes on without it)", flush=True)
        dash.stop()
        return None
    print(f"Dashboard: {dash.url}login#token={dash.token}", flush=True)
    print(f"  (or open {dash.url} and sign in with the token {dash.token};", flush=True)
    print("   it is revoked when the demo ends)", flush=True)
    return dash


def _cli(*args: str, **kw: Any) -> list[str]:
    return [sys.executable, "-m", "taskq.cli", *args]


def cmd_demo(args: argparse.Namespace) -> int:
    from taskq.db.migrate import migrate
    from taskq.ops import logs
    from taskq.queuer import Queuer
    from taskq.tasks import Tasks
    from taskq.tools.demo_app import QUEUE, registry
    from taskq.worker import Worker, WorkerConfig

    logs.setup("text", 30)  # warnings only: the screen is for the progress bars
    schema = resolve_schema(args.schema)
    url = database_url()
    if url is None:
        from taskq.db.embedded import data_dir, embedded_url, require

        require()
        print(f"Starting the embedded PostgreSQL (data in {data_dir()}) ...", flush=True)
        url = embedded_url()
        where = f"the embedded PostgreSQL, data in {data_dir()}"
    else:
        where = describe_target(url)
    env = dict(os.environ, TASKQ_DATABASE_URL=url, TASKQ_SCHEMA=schema)
    migrate(url, schema)
    print(f"Migrated schema {schema!r} on {where}.", flush=True)

    dashboard = _start_dashboard(args, env)
    db = open_db(args, pool_size=6)
    worker = Worker(registry, db, WorkerConfig(queues=(QUEUE,), concurrency=4, grace=2.0))
    queuer = Queuer(db, registry=registry)
    tasks = Tasks(db)
    scheduler: subprocess.Popen[bytes] | None = None
    scheduled = False
    try:
        worker.start()
        r = subprocess.run(_cli("schedule", "add", QUEUE, "demo.tick", SCHEDULE), env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        if r.returncode == 0:
            scheduled = True
            scheduler = subprocess.Popen(_cli("scheduler"), env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)  # fmt: skip
        else:
            print(f"(no cron schedule: {r.stderr.strip() or 'taskq schedule failed'})")
        sample = [
            queuer.enqueue(TaskEnqueueRequest(QUEUE, "demo.resize", spec={"images": 8},
                                              title="resize 8 images"))
            ,
            queuer.enqueue(TaskEnqueueRequest(QUEUE, "demo.resize", spec={"images": 5},
                                              title="resize 5 images", priority=5)),
            queuer.enqueue(TaskEnqueueRequest(QUEUE, "demo.flaky", title="fails once, retried")),
            queuer.enqueue(TaskEnqueueRequest(QUEUE, "demo.long", title="cancelled midway")),
        ]  # fmt: skip
        long_id = sample[3].id
        deadline = time.monotonic() + args.timeout
        cancelled = False
        shown: dict[str, str] = {}
        tick_done: Any = None
        tty = sys.stdout.isatty()
        lines_drawn = 0
        while time.monotonic() < deadline:
            current = [tasks.get(t.id) for t in sample]
            if not cancelled and (current[3].progress or {}).get("percent", 0) >= 0.3:
                tasks.cancel(long_id)
                cancelled = True
            if scheduled and tick_done is None:
                ticks = tasks.list(queue=QUEUE, type="demo.tick", status="finished", limit=1)
                tick_done = ticks[0] if ticks else None
            rows = list(current)
            if tick_done is not None:
                rows.append(tick_done)
            lines = [
                f"{(t.title or t.type)[:22]:<22} {t.status.value:<9} "
                f"try {t.attempts}/{t.max_attempts}  {progress_text(t)}"
                for t in rows
            ]
            if tty:
                if lines_drawn:
                    sys.stdout.write(f"\x1b[{lines_drawn}F")
                sys.stdout.write("".join(f"\x1b[2K{line}\n" for line in lines))
                sys.stdout.flush()
                lines_drawn = len(lines)
            else:
                for t, line in zip(rows, lines, strict=True):
                    if shown.get(t.id) != line:
                        shown[t.id] = line
                        print(line, flush=True)
            if all(t.status.is_final for t in current) and (tick_done or not scheduled):
                break
            time.sleep(0.25)
        else:
            print("The demo timed out before every task ended.", file=sys.stderr)
            return 1
        final = {t.id: tasks.get(t.id) for t in sample}
        ok = (
            final[sample[0].id].status is TaskStatus.FINISHED
            and final[sample[1].id].status is TaskStatus.FINISHED
            and final[sample[2].id].status is TaskStatus.FINISHED
            and final[sample[2].id].attempts == 2
            and final[long_id].status is TaskStatus.CANCELLED
        )
        print()
        print("All sample tasks are done:" if ok else "Some sample tasks did not end as planned:")
        print(f"  - two resize jobs finished with results {final[sample[0].id].result} and "
              f"{final[sample[1].id].result}")  # fmt: skip
        print(f"  - the flaky task failed once ({final[sample[2].id].error or 'error kept'!s}) "
              f"and finished on attempt {final[sample[2].id].attempts}")  # fmt: skip
        print("  - the long task was cancelled while running")
        if tick_done is not None:
            print(
                f"  - the cron schedule '{SCHEDULE}' enqueued a task that ran: {tick_done.result}"
            )
        print()
        print(f"The data lives in {where}, schema {schema!r}. Look around with:")
        prefix = "" if database_url() is None else "TASKQ_DATABASE_URL=... "
        sch = "" if schema == "taskq" else f"TASKQ_SCHEMA={schema} "
        print(f"  {prefix}{sch}taskq list")
        print(f"  {prefix}{sch}taskq show {sample[0].id}")
        print(f"  {prefix}{sch}taskq workers")
        if database_url() is None:
            print("The embedded PostgreSQL is still running, so those commands find the data;")
            print("`taskq embedded status` shows it and `taskq embedded stop` stops it.")
        if dashboard is not None and args.stay:
            print(f"\nThe dashboard stays up at {dashboard.url}; Ctrl-C ends the demo.", flush=True)
            try:
                while dashboard.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print()
        return 0 if ok else 1
    finally:
        if dashboard is not None:
            dashboard.stop()
        if scheduler is not None:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(timeout=15)
            except subprocess.TimeoutExpired:
                scheduler.kill()
        if scheduled:
            subprocess.run(_cli("schedule", "remove", QUEUE, "demo.tick"), env=env,
                           capture_output=True, timeout=60)  # fmt: skip
        worker.request_stop()
        worker.shutdown()
        tasks.close()
        db.close()
