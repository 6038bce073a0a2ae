"""``taskq bench``: how fast taskq runs against one database, measured end to end.

Everything happens in a schema of its own (``taskq_bench_<random>``), created with
``taskq.migrate`` and dropped at the end, also after an error or Ctrl-C. Worker
processes are real ``taskq worker taskq.bench_app:registry`` processes, started the
way users start them (default flags, so INFO logging with a line per task start and
end, unless ``worker_log_level`` says otherwise) and stopped with SIGTERM.

Modes (all by default, in this order):

``enqueue``
    one producer: ``Queuer.enqueue`` one task per transaction, then
    ``Queuer.enqueue_many`` in batches of 500; tasks/s for each.
``burndown``
    N no-op tasks pre-enqueued with ``enqueue_many`` (batches of 500), then W worker
    processes x C concurrency. The clock runs from the database's clock just before
    the workers are spawned to the last ``finished_at`` (database clock too).
``finished``
    a burn-down on the empty table, then M finished tasks written by one
    ``INSERT ... SELECT generate_series`` (then ``VACUUM ANALYZE``, as autovacuum would
    have long done for old history), then the same burn-down again; the ratio of the
    two rates.
``latency``
    idle workers; one producer enqueues one task per transaction at R tasks/s for T
    seconds (open loop). Latency per task two ways: on the database clock,
    ``started_at - created_at`` (claim statement start minus enqueue statement start),
    and on the handler's side, the wall clock when the handler started minus the wall
    clock just before the ``enqueue`` call (the shared harness's definition: it
    includes the enqueue round trip and the dispatch to a handler thread).
``vacuum``
    three burn-downs: without a long transaction; while a REPEATABLE READ transaction
    that has taken its snapshot stays open (vacuum cannot remove any row version
    made dead after it); and after that transaction ends (no manual VACUUM: what
    autovacuum and index tuple killing recover on their own).

Table size, index size, live and dead tuples (``pg_relation_size``,
``pg_indexes_size``, and ``pg_stat_user_tables`` right after an ANALYZE) are recorded
before and after every burn-down. Between modes the table is emptied with TRUNCATE. A burn-down also reports
the steady rate (the middle 80 % of completions, by ``finished_at``) and the workers'
CPU per task from the first completion on (from /proc, so start-up is left out).
"""

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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psycopg
from psycopg import sql

from taskq.bench_app import NOOP, STAMP
from taskq.migrations import migrate
from taskq.queuer import Queuer
from taskq.types import TaskEnqueueRequest

MODES = ("enqueue", "burndown", "finished", "latency", "vacuum")
"""Every mode, in the order they run."""

ALIASES = {
    "burn-down": "burndown",
    "drain": "burndown",
    "steady": "latency",
    "rate": "latency",
    "enqueue-throughput": "enqueue",
    "long-transaction": "vacuum",
}

QUEUE = "bench"
BATCH = 500
POLL = 0.05
STALL_TIMEOUT = 60.0
"""A burn-down that finishes no task for this many seconds is an error."""

WORKER_APP = "taskq.bench_app:registry"


class BenchError(RuntimeError):
    """A measurement could not be made (a worker died, nothing finished in time...)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    tasks: int = 20_000
    workers: int = 2
    concurrency: int = 10
    rate: float = 100.0
    duration: float = 15.0
    finished: int = 100_000
    modes: tuple[str, ...] = MODES
    worker_log_level: str | None = None  # None: the worker's default (INFO)

    def __post_init__(self) -> None:
        for name in ("tasks", "workers", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1")
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("--rate and --duration must be above 0")
        if self.rate * self.duration < 1:
            raise ValueError("--rate x --duration must be at least one task")
        if self.finished < 0:
            raise ValueError("--finished must be at least 0")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
        if not self.modes:
            raise ValueError("no mode selected")
        if self.worker_log_level not in (None, "DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown worker log level {self.worker_log_level!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """Small sizes: the whole run takes seconds (a CI smoke test)."""
        base = cls(tasks=1000, workers=1, concurrency=10, rate=50.0, duration=1.0, finished=5000)
        return replace(base, **overrides)


def parse_modes(text: str) -> tuple[str, ...]:
    """``"burndown,latency"`` -> ("burndown", "latency"), in run order; ValueError else."""
    chosen: set[str] = set()
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        name = ALIASES.get(name, name)
        if name == "all":
            chosen.update(MODES)
        elif name in MODES:
            chosen.add(name)
        else:
            raise ValueError(f"unknown mode {part.strip()!r}; choose from {', '.join(MODES)}")
    if not chosen:
        raise ValueError("no mode given")
    return tuple(m for m in MODES if m in chosen)


# ---- progress on stderr --------------------------------------------------------------


class Progress:
    """Phase lines on stderr, and a bar redrawn in place when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar_shown = False
        self._last = 0.0

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        self._clear()
        self.stream.write(f"taskq bench: {text}\n")
        self.stream.flush()

    def bar(self, label: str, done: int, total: int) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
        width = 24
        filled = int(round(frac * width))
        line = f"  {label} [{'#' * filled}{'-' * (width - filled)}] {frac * 100:3.0f}% {done:,}/{total:,}"
        self.stream.write("\r" + line[:110].ljust(110))
        self.stream.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r" + " " * 110 + "\r")
            self._bar_shown = False


# ---- the run -------------------------------------------------------------------------


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


class Bench:
    """One ``taskq bench`` run against ``url``; ``run()`` returns the results as a dict."""

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
            self._admin = psycopg.connect(self.url, autocommit=True)
            out["server"] = self._server_info()
            self._queuer = Queuer(self.url, schema=self.schema, pool_size=2)
            results: dict[str, Any] = {}
            for mode in MODES:
                if mode not in self.config.modes:
                    continue
                self._truncate()
                if mode == "finished":
                    if self.config.finished == 0:
                        results[mode] = {"skipped": "--finished 0"}
                        continue
                    results[mode] = self._mode_finished()
                else:
                    results[mode] = getattr(self, f"_mode_{mode}")()
            out["modes"] = results
        finally:
            self.cleanup()
        out["wall_s"] = round(time.perf_counter() - started, 2)
        return out

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
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as c:
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
        """CHECKPOINT (if allowed) so a timed phase starts clean; the table is ANALYZEd
        by ``_sizes`` right after."""
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            self.admin.execute("CHECKPOINT")

    def _sizes(self) -> dict[str, Any]:
        """Sizes, and live and dead tuples as ANALYZE estimates them now (the counters
        other backends report reach pg_stat_user_tables up to seconds later)."""
        self.admin.execute(sql.SQL("ANALYZE {}").format(self.tasks))
        row = self.admin.execute(
            """
            SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
                   coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),
                   coalesce(s.autovacuum_count, 0) + coalesce(s.vacuum_count, 0)
            FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
            WHERE n.nspname = %s AND c.relname = 'tasks'
            """,
            (self.schema,),
        ).fetchone()
        assert row is not None
        keys = ("table_bytes", "index_bytes", "total_bytes", "live_tuples", "dead_tuples",
                "vacuums")  # fmt: skip
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

    def _burndown(self, label: str) -> dict[str, Any]:
        n = self.config.tasks
        since = self._db_now()
        enqueue_s = self._enqueue_batched(n, NOOP, f"{label}: enqueue")
        self._settle()  # ANALYZE and CHECKPOINT
        before = self._sizes()
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

    def _mode_enqueue(self) -> dict[str, Any]:
        n = self.config.tasks
        q = self.queuer
        for k in range(20):  # warm-up: connection, statement cache
            q.enqueue(self._request(NOOP, -1 - k))
        self.progress.say(f"enqueue: {n:,} tasks one per transaction")
        t0 = time.perf_counter()
        for k in range(n):
            q.enqueue(self._request(NOOP, k))
            if k % 100 == 0:
                self.progress.bar("enqueue one per transaction", k, n)
        single = time.perf_counter() - t0
        self._truncate()
        self.progress.say(f"enqueue: {n:,} tasks in batches of {BATCH}")
        batched = self._enqueue_batched(n, NOOP, f"enqueue {BATCH} per transaction")
        return {
            "single": {"tasks": n, "per_transaction": 1, "elapsed_s": round(single, 4),
                       "tasks_per_s": _rate(n, single)},
            "batched": {"tasks": n, "per_transaction": BATCH, "elapsed_s": round(batched, 4),
                        "tasks_per_s": _rate(n, batched)},
        }  # fmt: skip

    def _mode_burndown(self) -> dict[str, Any]:
        return self._burndown("burn-down")

    def _mode_finished(self) -> dict[str, Any]:
        # The empty-table figure is measured right before, not taken from the burndown
        # mode: adjacent runs differ least on a noisy machine.
        m = self.config.finished
        empty = self._burndown("finished: empty table")
        self._truncate()
        self.progress.say(f"finished: writing {m:,} finished tasks")
        t0 = time.perf_counter()
        self.admin.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, status, spec, attempts, run_at, created_at,"
                " updated_at, started_at, finished_at, last_heartbeat_at, lease)"
                " SELECT %(queue)s, %(type)s, 'finished', jsonb_build_object('k', g), 1,"
                " ts, ts, ts, ts, ts, ts, gen_random_uuid()"
                " FROM (SELECT g, now() - interval '1 day' + g * interval '1 ms' AS ts"
                "       FROM generate_series(1, %(m)s) AS g) AS s"
            ).format(self.tasks),
            {"queue": QUEUE, "type": NOOP, "m": m},
        )
        self.admin.execute(sql.SQL("VACUUM ANALYZE {}").format(self.tasks))
        prefill_s = time.perf_counter() - t0
        filled = self._burndown(f"finished: {m:,} finished rows")
        return {
            "finished_rows": m,
            "prefill_s": round(prefill_s, 2),
            "empty_tasks_per_s": empty["tasks_per_s"],
            "empty_steady_tasks_per_s": empty["steady_tasks_per_s"],
            "tasks_per_s": filled["tasks_per_s"],
            "ratio": _ratio(filled["tasks_per_s"], empty["tasks_per_s"]),
            "steady_ratio": _ratio(filled["steady_tasks_per_s"], empty["steady_tasks_per_s"]),
            "burndown": filled,
            "empty_burndown": empty,
        }

    def _mode_latency(self) -> dict[str, Any]:
        rate, n = self.config.rate, max(1, round(self.config.rate * self.config.duration))
        q = self.queuer
        self.progress.say(f"latency: {self.config.workers} idle worker(s) x "
                          f"{self.config.concurrency}, {rate:g} tasks/s for "
                          f"{self.config.duration:g} s")  # fmt: skip
        self._start_workers("latency")
        try:
            for k in range(10):  # warm-up: the workers are up and listening
                q.enqueue(self._request(STAMP, -1 - k))
            self._wait_until_done("latency: warm-up", 10)
            time.sleep(1.0)  # idle: back to waiting on LISTEN
            since = self._db_now()
            calls: list[float] = []
            behind = 0.0
            t0 = time.perf_counter() + 0.01
            for k in range(n):
                target = t0 + k / rate
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
                else:
                    behind = max(behind, now - target)
                c0 = time.perf_counter()
                q.enqueue(self._request(STAMP, k))
                calls.append(time.perf_counter() - c0)
                self.progress.bar("latency", k + 1, n)
            produced = time.perf_counter() - t0
            self._wait_until_done("latency: last tasks", n, timeout=30.0)
        finally:
            self._stop_workers()
        row = self.admin.execute(
            sql.SQL(
                "SELECT count(*),"
                " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY db_ms),"
                " max(db_ms),"
                " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY h_ms),"
                " max(h_ms)"
                " FROM (SELECT 1000 * extract(epoch FROM started_at - created_at)::float8 AS db_ms,"
                "              1000 * ((result->>'started')::float8 - (spec->>'t')::float8) AS h_ms"
                "       FROM {} WHERE created_at >= to_timestamp(%s) AND type = %s"
                "         AND status = 'finished') AS x"
            ).format(self.tasks),
            (since, STAMP),
        ).fetchone()
        assert row is not None
        count, db_p, db_max, h_p, h_max = row
        if count != n:
            raise BenchError(f"latency: {count} of {n} tasks finished")
        calls.sort()

        def ms(v: float) -> float:
            return round(v, 3)

        return {
            "rate": rate,
            "duration_s": self.config.duration,
            "tasks": n,
            "workers": self.config.workers,
            "concurrency": self.config.concurrency,
            "achieved_rate": _rate(n, produced),
            "producer_behind_max_ms": ms(1000 * behind),
            "enqueue_call_p50_ms": ms(1000 * calls[len(calls) // 2]),
            "handler": {"p50_ms": ms(h_p[0]), "p95_ms": ms(h_p[1]), "p99_ms": ms(h_p[2]),
                        "max_ms": ms(h_max)},
            "database": {"p50_ms": ms(db_p[0]), "p95_ms": ms(db_p[1]), "p99_ms": ms(db_p[2]),
                         "max_ms": ms(db_max)},
        }  # fmt: skip

    def _mode_vacuum(self) -> dict[str, Any]:
        without = self._burndown("vacuum: without long transaction")
        self._truncate()
        held = psycopg.connect(self.url)
        self._held = held
        held.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        held.execute(sql.SQL("SELECT count(*) FROM {}").format(self.tasks))  # the snapshot
        held_since = time.perf_counter()
        xmin = self._one(
            "SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = %s",
            (held.info.backend_pid,),
        )
        try:
            during = self._burndown("vacuum: long transaction open")
        finally:
            held.rollback()
            held.close()
            self._held = None
        held_s = time.perf_counter() - held_since
        after = self._burndown("vacuum: after it ended")
        return {
            "without": without,
            "with": during,
            "after": after,
            "held_s": round(held_s, 2),
            "held_backend_xmin": xmin,
            "with_ratio": _ratio(during["tasks_per_s"], without["tasks_per_s"]),
            "after_ratio": _ratio(after["tasks_per_s"], without["tasks_per_s"]),
        }


def run(
    url: str, config: BenchConfig, progress: Progress | None = None
) -> dict[str, Any]:  # fmt: skip
    """Run the benchmark on ``url`` and return its results (see the module docstring)."""
    return Bench(url, config, progress).run()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so a killed run still cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
