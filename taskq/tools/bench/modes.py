"""The modes of ``taskq bench`` (see the package docstring), each a method of ``Bench``."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import psycopg
from psycopg import sql

from taskq.core.config import resolve_pooler
from taskq.db.connection import connect
from taskq.tools.bench.config import (
    BATCH,
    QUEUE,
    BenchConfig,
    BenchError,
    Progress,
)
from taskq.tools.bench.harness import Harness, _rate, _ratio
from taskq.tools.bench_app import NOOP, STAMP

FACE_ROUNDS = 3
"""``--async``: rounds of each face in the enqueue mode (medians are reported)."""


class Bench(Harness):
    """One ``taskq bench`` run against ``url``; ``run()`` returns the results as a dict."""

    def _mode_enqueue(self) -> dict[str, Any]:
        if self.config.asyncio:
            return self._enqueue_faces()
        n = self.config.tasks
        self.progress.say(f"enqueue: {n:,} tasks one per transaction")
        single = self._enqueue_singly(n)
        self._truncate()
        self.progress.say(f"enqueue: {n:,} tasks in batches of {BATCH}")
        batched = self._enqueue_batched(n, NOOP, f"enqueue {BATCH} per transaction")
        return {
            "single": {"tasks": n, "per_transaction": 1, "elapsed_s": round(single, 4),
                       "tasks_per_s": _rate(n, single)},
            "batched": {"tasks": n, "per_transaction": BATCH, "elapsed_s": round(batched, 4),
                        "tasks_per_s": _rate(n, batched)},
        }  # fmt: skip

    def _enqueue_faces(self) -> dict[str, Any]:
        """``--async``: the enqueue mode through ``AsyncQueuer`` and ``Queuer`` in turn,
        FACE_ROUNDS rounds (sync then async, single then batched), on pools of the
        same size; medians per face and async/sync ratios."""
        import asyncio
        import statistics

        from taskq.aio import AsyncQueuer

        n = self.config.tasks
        rates: dict[str, list[float]] = {f"{face}_{kind}": [] for face in ("sync", "async")
                                         for kind in ("single", "batched")}  # fmt: skip

        async def run_async(q: AsyncQueuer, batch: int) -> float:
            for k in range(20):  # warm-up: connection, statement cache
                await q.enqueue(self._request(NOOP, -1 - k))
            t0 = time.perf_counter()
            for start in range(0, n, batch):
                stop = min(n, start + batch)
                if batch == 1:
                    await q.enqueue(self._request(NOOP, start))
                else:
                    await q.enqueue_many([self._request(NOOP, k) for k in range(start, stop)])
            return time.perf_counter() - t0

        async def both() -> None:
            async with AsyncQueuer(self.url, schema=self.schema, pool_size=2) as aq:
                for r in range(FACE_ROUNDS):
                    for kind, batch in (("single", 1), ("batched", BATCH)):
                        self.progress.say(f"enqueue round {r + 1}/{FACE_ROUNDS}: {n:,} tasks, "
                                          f"{batch} per transaction, sync then async")  # fmt: skip
                        if batch == 1:
                            took = self._enqueue_singly(n)
                        else:
                            took = self._enqueue_batched(
                                n, NOOP, f"enqueue {batch} per transaction"
                            )
                        rates[f"sync_{kind}"].append(n / took)
                        self._truncate()
                        took = await run_async(aq, batch)
                        rates[f"async_{kind}"].append(n / took)
                        self._truncate()

        asyncio.run(both())
        med = {k: round(statistics.median(v), 1) for k, v in rates.items()}
        out: dict[str, Any] = {"tasks": n, "rounds": FACE_ROUNDS, "per_batch": BATCH,
                               "tasks_per_s": {k: [round(x, 1) for x in v]
                                               for k, v in rates.items()},
                               "median_tasks_per_s": med}  # fmt: skip
        for kind in ("single", "batched"):
            out[f"async_over_sync_{kind}"] = _ratio(med[f"async_{kind}"], med[f"sync_{kind}"])
        return out

    def _enqueue_singly(self, n: int) -> float:
        """Enqueue ``n`` tasks one per transaction (after a warm-up); seconds taken."""
        q = self.queuer
        for k in range(20):  # warm-up: connection, statement cache
            q.enqueue(self._request(NOOP, -1 - k))
        t0 = time.perf_counter()
        for k in range(n):
            q.enqueue(self._request(NOOP, k))
            if k % 100 == 0:
                self.progress.bar("enqueue one per transaction", k, n)
        return time.perf_counter() - t0

    def _mode_burndown(self) -> dict[str, Any]:
        return self._burndown("burn-down")

    def measure(self, mode: str) -> dict[str, Any]:
        if mode in ("finished", "stale") and self.config.finished == 0:
            return {"skipped": "--finished 0"}
        result: dict[str, Any] = getattr(self, f"_mode_{mode}")()
        return result

    def _write_finished(self, m: int) -> float:
        """M finished tasks in one INSERT ... SELECT, then VACUUM ANALYZE (as autovacuum
        would long have done for old history); seconds taken."""
        self.progress.say(f"writing {m:,} finished tasks")
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
        return time.perf_counter() - t0

    def _against_empty(self, label: str, stale: bool) -> dict[str, Any]:
        # The empty-table figure is measured right before, not taken from the burndown
        # mode: adjacent runs differ least on a noisy machine.
        m = self.config.finished
        empty = self._burndown(f"{label}: empty table")
        self._truncate()
        prefill_s = self._write_finished(m)
        filled = self._burndown(f"{label}: {m:,} finished rows", stale=stale)
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

    def _mode_finished(self) -> dict[str, Any]:
        return self._against_empty("finished", stale=False)

    def _mode_stale(self) -> dict[str, Any]:
        return self._against_empty("stale", stale=True)

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
        held = connect(self._direct(), pooler=resolve_pooler(), autocommit=False)
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
