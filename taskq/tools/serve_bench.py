"""``python -m taskq.tools.serve_bench``: how fast ``taskq serve`` answers, on this
machine and database, in a schema of its own (dropped at the end).

It starts a ``taskq serve`` process and measures from this one, over loopback:

- **enqueue**: tasks per second through ``POST /api/v1/tasks`` (one task per request,
  ``--concurrency`` keep-alive connections) beside the in-process rate of
  ``AsyncQueuer.enqueue`` with as many coroutines; the target is a ratio of 0.5 or more.
- **get**: ``GET /api/v1/tasks/{id}`` at ``--rate`` requests per second for
  ``--duration`` seconds, open loop (a request is sent on schedule whether or not the
  last one came back): p50, p95, p99 latency; the target is p99 under 10 ms at 200/s.
- **sse**: ``--watchers`` event streams on one task, then ``--changes`` progress
  changes: for each, the time until every watcher received it; the target is 1,000
  watchers, each change delivered to all of them within 1 s. Also how many database
  connections the server held meanwhile.

Results are printed as JSON. Requires the server extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from taskq.aio import AsyncQueuer
from taskq.db.migrate import migrate
from taskq.dequeuer import Dequeuer


class Http:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (no dependency, low
    overhead, so the measurement is of the server)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def _head(self, method: str, path: str, length: int | None = None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Authorization: Bearer {self.token}"]  # fmt: skip
        if length is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _status_and_headers(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def request(self, method: str, path: str, body: bytes | None = None) -> int:
        if self.writer is None:
            await self.connect()
        assert self.writer is not None and self.reader is not None
        self.writer.write(self._head(method, path, None if body is None else len(body)) +
                          (body or b""))  # fmt: skip
        status, headers = await self._status_and_headers()
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status

    async def stream(self, path: str) -> asyncio.StreamReader:
        await self.connect()
        assert self.writer is not None
        self.writer.write(self._head("GET", path))
        status, _ = await self._status_and_headers()
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        assert self.reader is not None
        return self.reader

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _ms(values: list[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(_pct(values, p) * 1000, 2) for p in (50, 95, 99)} | {
        "max_ms": round(max(values) * 1000, 2), "n": len(values)}  # fmt: skip


async def bench_enqueue(url: str, schema: str, http: tuple[str, int, str], n: int,
                        concurrency: int) -> dict[str, Any]:  # fmt: skip
    body = json.dumps({"queue": "bench-http", "type": "noop", "spec": {"n": 1}}).encode()

    async def in_process() -> float:
        async with AsyncQueuer(url, schema=schema, pool_size=concurrency) as q:
            await q.enqueue(queue="warm", type="noop")
            left = n
            start = time.perf_counter()

            async def one() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await q.enqueue(queue="bench-inproc", type="noop", spec={"n": 1})

            await asyncio.gather(*(one() for _ in range(concurrency)))
            return n / (time.perf_counter() - start)

    async def over_http() -> float:
        clients = [Http(*http) for _ in range(concurrency)]
        for c in clients:
            await c.request("GET", "/api/v1/queues")
        left = n
        start = time.perf_counter()

        async def one(c: Http) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if await c.request("POST", "/api/v1/tasks", body) != 201:
                    raise RuntimeError("an enqueue over HTTP failed")

        await asyncio.gather(*(one(c) for c in clients))
        rate = n / (time.perf_counter() - start)
        for c in clients:
            c.close()
        return rate

    local = await in_process()
    remote = await over_http()
    return {"tasks": n, "concurrency": concurrency, "in_process_per_s": round(local),
            "http_per_s": round(remote), "ratio": round(remote / local, 2)}  # fmt: skip


async def bench_get(http: tuple[str, int, str], task_id: str, rate: float,
                    duration: float) -> dict[str, Any]:  # fmt: skip
    pool: asyncio.Queue[Http] = asyncio.Queue()
    for _ in range(16):
        c = Http(*http)
        await c.request("GET", f"/api/v1/tasks/{task_id}")
        pool.put_nowait(c)
    latencies: list[float] = []
    statuses: list[int] = []

    async def one(due: float) -> None:
        c = await pool.get()
        status = await c.request("GET", f"/api/v1/tasks/{task_id}")
        latencies.append(time.perf_counter() - due)  # from when it was due: open loop
        statuses.append(status)
        pool.put_nowait(c)

    start = time.perf_counter()
    total = int(rate * duration)
    pending = []
    for i in range(total):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        pending.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return {"rate": rate, "achieved_rate": round(total / elapsed, 1), "duration_s": duration,
            "ok": statuses.count(200), **_ms(latencies)}  # fmt: skip


async def bench_sse(url: str, schema: str, http: tuple[str, int, str], task_id: str,
                    watchers: int, changes: int, app: str) -> dict[str, Any]:  # fmt: skip
    got: list[dict[int, float]] = [{} for _ in range(watchers)]
    ready = 0

    async def watch(i: int) -> None:
        nonlocal ready
        c = Http(*http)
        reader = await c.stream(f"/api/v1/tasks/{task_id}/events")
        first = True
        try:
            while line := await reader.readline():
                if line.startswith(b"data: "):
                    progress = json.loads(line[6:])["progress"]
                    if first:
                        first = False
                        ready += 1
                    if isinstance(progress, dict) and "step" in progress:
                        got[i][progress["step"]] = time.perf_counter()
        finally:
            c.close()

    tasks = []
    for i in range(watchers):  # open them in waves, as browsers would arrive
        tasks.append(asyncio.ensure_future(watch(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 120
    while ready < watchers and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if ready < watchers:
        raise RuntimeError(f"only {ready} of {watchers} watchers connected")
    dq = Dequeuer(url, schema=schema)
    claimed = await asyncio.to_thread(dq.dequeue, "bench-sse", timeout=10)
    if claimed is None:
        raise RuntimeError("the watched task could not be claimed")
    delivery: list[float] = []
    for step in range(1, changes + 1):
        sent = time.perf_counter()
        await asyncio.to_thread(dq.heartbeat, claimed, {"step": step})
        end = time.monotonic() + 30
        while any(step not in g for g in got) and time.monotonic() < end:
            await asyncio.sleep(0.005)
        missing = sum(1 for g in got if step not in g)
        if missing:
            raise RuntimeError(f"{missing} watchers never got change {step}")
        delivery.append(max(g[step] for g in got) - sent)
        await asyncio.sleep(0.5)
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                        (f"{app}%",)).fetchone()  # fmt: skip
    await asyncio.to_thread(dq.finish, claimed, None)
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    dq.close()
    return {"watchers": watchers, "changes": changes,
            "all_watchers_delivery": _ms(delivery), "server_db_connections": row[0] if row else None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m taskq.tools.serve_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--modes", default="enqueue,get,sse")
    p.add_argument("--tasks", type=int, default=5000, help="enqueue: tasks per side")
    p.add_argument("--concurrency", type=int, default=8, help="enqueue: clients")
    p.add_argument("--rate", type=float, default=200.0, help="get: requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="get: seconds")
    p.add_argument("--watchers", type=int, default=1000, help="sse: event streams")
    p.add_argument("--changes", type=int, default=10, help="sse: progress changes")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    from taskq.core.config import database_url

    url = database_url()
    if url is None:
        from taskq.db.embedded import embedded_url

        url = embedded_url()
    schema = f"taskq_bench_serve_{uuid.uuid4().hex[:8]}"
    app = f"taskq-bench-{uuid.uuid4().hex[:6]}"
    migrate(url, schema)
    env = dict(os.environ, TASKQ_DATABASE_URL=url, TASKQ_SCHEMA=schema)
    cli = [sys.executable, "-m", "taskq.cli"]
    token = subprocess.run([*cli, "token", "create", "--name", "bench", "--scope", "write"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    server = subprocess.Popen([*cli, "serve", "--port", "0", "--application-name", app],
                              env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        assert server.stdout is not None
        m = re.search(r"http://([\d.]+):(\d+)/", server.stdout.readline())
        if not m:
            raise SystemExit("taskq serve did not start")
        http = (m.group(1), int(m.group(2)), token)
        modes = args.modes.split(",")
        sample = None

        async def run() -> None:
            nonlocal sample
            async with AsyncQueuer(url, schema=schema) as q:
                sample = await q.enqueue(queue="bench-get", type="noop", spec={"x": 1})
                watched = await q.enqueue(queue="bench-sse", type="noop")
            if "enqueue" in modes:
                print("enqueue ...", file=sys.stderr, flush=True)
                results["enqueue"] = await bench_enqueue(url, schema, http, args.tasks,
                                                         args.concurrency)  # fmt: skip
            if "get" in modes:
                print("get ...", file=sys.stderr, flush=True)
                results["get"] = await bench_get(http, sample.id, args.rate, args.duration)
            if "sse" in modes:
                print("sse ...", file=sys.stderr, flush=True)
                results["sse"] = await bench_sse(url, schema, http, watched.id, args.watchers,
                                                 args.changes, app)  # fmt: skip

        asyncio.run(run())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
