"""The machinery of a ``taskq bench`` run: its own schema, worker processes, table
sizes, and the timed burn-down every mode is built from."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from taskq.core.config import listen_url, resolve_pooler
from taskq.core.types import TaskEnqueueRequest
from taskq.db.connection import connect
from taskq.db.migrate import migrate
from taskq.queuer import Queuer
from taskq.tools.bench.config import (
    BATCH,
    MODES,
    POLL,
    QUEUE,
    STALL_TIMEOUT,
    WORKER_APP,
    BenchConfig,
    BenchError,
    Progress,
)
from taskq.tools.bench_app import NOOP


@dataclass
class _Workers:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        rest = data[data.rindex(")") + 2 :].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _rate(n: float, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds and seconds > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


class Harness:
    """What every mode uses: the schema, the connections, worker processes, sizes, and
    one timed burn-down."""

    def __init__(self, url: str, config: BenchConfig, progress: Progress | None = None) -> None:
        self.url = url
        self.config = config
        self.progress = progress or Progress(enabled=False)
        self.schema = f"taskq_bench_{secrets.token_hex(4)}"
        self.tasks = sql.Identifier(self.schema, "tasks")
        self._admin: psycopg.Connection[Any] | None = None
        self._queuer: Queuer | None = None
        self._workers = _Workers()
        self._held: psycopg.Connection[Any] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix="taskq-bench-"))

    # ---- lifecycle ---------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        out: dict[str, Any] = {"schema": self.schema, "config": asdict(self.config)}
        try:
            self.progress.say(f"creating schema {self.schema}")
            migrate(self.url, self.schema)
            self._admin = connect(self._direct(), pooler=resolve_pooler())
            out["server"] = self._server_info()
            self._queuer = Queuer(self.url, schema=self.schema, pool_size=2)
            results: dict[str, Any] = {}
            for mode in MODES:
                if mode in self.config.modes:
                    self._truncate()
                    results[mode] = self.measure(mode)
            out["modes"] = results
        finally:
            self.cleanup()
        out["wall_s"] = round(time.perf_counter() - started, 2)
        return out

    def measure(self, mode: str) -> dict[str, Any]:
        """One mode's results (the subclass defines them)."""
        raise NotImplementedError(mode)

    def cleanup(self) -> None:
        """Stop the workers, end the long transaction, drop the schema. Idempotent;
        further Ctrl-C is ignored meanwhile so the schema is not left behind."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._stop_workers()
            if self._held is not None:
                with contextlib.suppress(Exception):
                    self._held.close()
                self._held = None
            if self._queuer is not None:
                with contextlib.suppress(Exception):
                    self._queuer.close()
                self._queuer = None
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
            self.progress.say(f"dropping schema {self.schema}")
            self._drop_schema()
            for p in self._logdir.glob("*"):
                p.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._logdir.rmdir()
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _drop_schema(self) -> None:
        stmt = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
        last: Exception | None = None
        for _ in range(5):  # a killed worker's backend may still hold a lock for a moment
            try:
                with connect(self._direct(), pooler=resolve_pooler(), connect_timeout=10) as c:
                    c.execute("SET lock_timeout = '10s'")
                    c.execute(stmt)
                return
            except psycopg.Error as e:
                last = e
                time.sleep(1.0)
        raise BenchError(f"could not drop schema {self.schema}: {last}")

    # ---- helpers -----------------------------------------------------------------

    @property
    def admin(self) -> psycopg.Connection[Any]:
        assert self._admin is not None
        return self._admin

    @property
    def queuer(self) -> Queuer:
        assert self._queuer is not None
        return self._queuer

    def _direct(self) -> str:
        """The bench's own measuring connections (catalog reads, a held snapshot) need
        the server itself, not a transaction pooler: TASKQ_LISTEN_URL when set."""
        return listen_url(None, self.url, resolve_pooler()) or self.url

    def _one(self, query: sql.Composed | sql.SQL | str, params: Any = None) -> Any:
        row = self.admin.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def _db_now(self) -> float:
        """The database server's clock, in epoch seconds."""
        return float(self._one("SELECT extract(epoch FROM clock_timestamp())::float8"))

    def _server_info(self) -> dict[str, Any]:
        settings = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "autovacuum")
        info: dict[str, Any] = {
            s: self._one("SELECT current_setting(%s)", (s,)) for s in settings
        }  # fmt: skip
        info["client_cpus"] = os.cpu_count()
        info["client_platform"] = platform.platform()
        info["python"] = platform.python_version()
        return info

    def _truncate(self) -> None:
        self.admin.execute(sql.SQL("TRUNCATE {} CASCADE").format(self.tasks))
        if self.admin.info.server_version >= 150000:
            # report the truncation to the statistics now, not up to 10 s later (when it
            # would zero the counts of rows inserted meanwhile)
            self.admin.execute("SELECT pg_stat_force_next_flush()")

    def _settle(self) -> None:
        """CHECKPOINT (if allowed) so a timed phase starts clean."""
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            self.admin.execute("CHECKPOINT")

    def _sizes(self, analyze: bool = True) -> dict[str, Any]:
        """Sizes, and live and dead tuples as ANALYZE estimates them now (the counters
        other backends report reach pg_stat_user_tables up to seconds later), and the
        rows the planner believes the table holds (``reltuples``, from the last
        ANALYZE or VACUUM: stale on purpose without ``analyze``)."""
        if analyze:
            self.admin.execute(sql.SQL("ANALYZE {}").format(self.tasks))
        row = self.admin.execute(
            """
            SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
                   coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),
                   coalesce(s.autovacuum_count, 0) + coalesce(s.vacuum_count, 0),
                   greatest(c.reltuples, 0)
            FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
            WHERE n.nspname = %s AND c.relname = 'tasks'
            """,
            (self.schema,),
        ).fetchone()
        assert row is not None
        keys = ("table_bytes", "index_bytes", "total_bytes", "live_tuples", "dead_tuples",
                "vacuums", "planner_rows")  # fmt: skip
        return {k: int(v) for k, v in zip(keys, row, strict=True)}

    def _remaining(self) -> int:
        """Waiting plus running tasks, counted through their partial indexes (cheap even
        with a big history of finished rows)."""
        q = sql.SQL(
            "SELECT (SELECT count(*) FROM {t} WHERE status = 'waiting')"
            " + (SELECT count(*) FROM {t} WHERE status = 'running')"
        ).format(t=self.tasks)
        return int(self._one(q))

    def _request(self, type_: str, k: int) -> TaskEnqueueRequest:
        return TaskEnqueueRequest(queue=QUEUE, type=type_, spec={"t": time.time(), "k": k})

    def _enqueue_batched(self, n: int, type_: str, label: str) -> float:
        """Enqueue ``n`` tasks with enqueue_many in batches of BATCH; seconds taken."""
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            self.queuer.enqueue_many([self._request(type_, k) for k in range(start, stop)])
            self.progress.bar(label, stop, n)
        return time.perf_counter() - t0

    # ---- workers -----------------------------------------------------------------

    def _start_workers(self, tag: str) -> list[subprocess.Popen[bytes]]:
        env = dict(os.environ, TASKQ_DATABASE_URL=self.url, TASKQ_SCHEMA=self.schema,
                   PYTHONUNBUFFERED="1")  # fmt: skip
        cmd = [sys.executable, "-m", "taskq.cli", "worker", WORKER_APP, "--queue", QUEUE,
               "--concurrency", str(self.config.concurrency)]  # fmt: skip
        if self.config.worker_log_level is not None:
            cmd += ["--log-level", self.config.worker_log_level]
        if self.config.prefetch:
            cmd += ["--prefetch"]
        procs = []
        for i in range(self.config.workers):
            log = self._logdir / f"{tag}-worker{i}.log"
            with open(log, "wb") as f:
                p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            procs.append(p)
            self._workers.procs.append(p)
            self._workers.logs.append(log)
        return procs

    def _check_workers(self) -> None:
        for p, log in zip(self._workers.procs, self._workers.logs, strict=True):
            rc = p.poll()
            if rc is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                raise BenchError(f"worker {p.pid} exited with status {rc}: {tail[0][:300]}")

    def _stop_workers(self, grace: float = 15.0) -> None:
        """SIGTERM every worker we started, SIGKILL any still running after ``grace``."""
        procs = self._workers.procs
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._workers = _Workers()

    def _worker_cpu(self) -> float | None:
        used = [_cpu_seconds(p.pid) for p in self._workers.procs]
        return None if any(u is None for u in used) else sum(u for u in used if u is not None)

    def _wait_until_done(
        self, label: str, total: int, timeout: float = STALL_TIMEOUT
    ) -> tuple[int, float | None]:
        """Poll until no task is waiting or running; a stall of ``timeout`` s is an error.

        Returns the tasks done when the first completion was seen and the workers' CPU
        seconds then (so per-task CPU can leave out the workers' start-up)."""
        last_change = time.monotonic()
        last = -1
        first: tuple[int, float | None] | None = None
        while True:
            remaining = self._remaining()
            self.progress.bar(label, total - remaining, total)
            if first is None and remaining < total:
                first = (total - remaining, self._worker_cpu())
            if remaining == 0:
                return first or (0, None)
            if remaining != last:
                last, last_change = remaining, time.monotonic()
            elif time.monotonic() - last_change > timeout:
                raise BenchError(f"{label}: {remaining} task(s) unfinished, no progress for "
                                 f"{timeout:.0f} s")  # fmt: skip
            self._check_workers()
            time.sleep(POLL)

    # ---- one burn-down -----------------------------------------------------------

    def _burndown(self, label: str, stale: bool = False) -> dict[str, Any]:
        """Enqueue ``tasks`` no-ops and time the workers through them. ``stale``: the
        planner's statistics are the ones taken before the burst (ANALYZE runs before
        the enqueue, not after), as between two autovacuum runs."""
        n = self.config.tasks
        since = self._db_now()
        if stale:
            self.admin.execute(sql.SQL("ANALYZE {}").format(self.tasks))
        enqueue_s = self._enqueue_batched(n, NOOP, f"{label}: enqueue")
        self._settle()  # CHECKPOINT
        before = self._sizes(analyze=not stale)
        self.progress.say(f"{label}: {n:,} tasks, {self.config.workers} worker(s) x "
                          f"{self.config.concurrency}")  # fmt: skip
        start = self._db_now()
        self._start_workers(label.replace(" ", "_").replace(":", ""))
        try:
            done_then, cpu_then = self._wait_until_done(label, n)
            cpu = self._worker_cpu()
        finally:
            self._stop_workers()
        time.sleep(0.3)  # let the workers' backends exit and flush their statistics
        after = self._sizes()
        row = self.admin.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE status = 'finished'),"
                " extract(epoch FROM min(finished_at))::float8,"
                " extract(epoch FROM max(finished_at))::float8,"
                " extract(epoch FROM percentile_disc(0.1) WITHIN GROUP (ORDER BY finished_at))::float8,"
                " extract(epoch FROM percentile_disc(0.9) WITHIN GROUP (ORDER BY finished_at))::float8"
                " FROM {} WHERE created_at >= to_timestamp(%s)"
            ).format(self.tasks),
            (since,),
        ).fetchone()
        assert row is not None
        done, first, last, p10, p90 = row
        if done != n or last is None:
            raise BenchError(f"{label}: {done} of {n} tasks finished")
        elapsed = last - start
        return {
            "tasks": n,
            "workers": self.config.workers,
            "concurrency": self.config.concurrency,
            "elapsed_s": round(elapsed, 4),
            "tasks_per_s": _rate(n, elapsed),
            "steady_tasks_per_s": _rate(0.8 * n, p90 - p10),
            "first_finished_s": round(first - start, 3),
            "enqueue_tasks_per_s": _rate(n, enqueue_s),
            "worker_cpu_us_per_task": (
                round(1e6 * (cpu - cpu_then) / (n - done_then), 1)
                if cpu is not None and cpu_then is not None and n > done_then
                else None
            ),
            "worker_cpu_s_at_first_finish": round(cpu_then, 3) if cpu_then is not None else None,
            "sizes": {"before": before, "after": after},
        }

    # ---- modes -------------------------------------------------------------------
