"""``taskq bench``: measure enqueue, burn-down, latency and table growth on this database.

The logic is in taskq/bench.py; this module parses flags and prints the results.
"""

from __future__ import annotations

import argparse
from typing import Any

from taskq.cli.common import die, positive_float, positive_int
from taskq.cli.output import print_json, table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure taskq on this database (in a schema of its own, dropped after)",
        description="Benchmark taskq end to end with real worker processes, in a schema "
        "of its own (taskq_bench_<random>, dropped at the end, also on Ctrl-C; --schema "
        "is not used). Modes: enqueue (one per transaction, and batches of 500), "
        "burndown (N no-op tasks drained by W workers x C), finished (the same burn-down "
        "with M finished tasks in the table), stale (the same, with the planner's "
        "statistics taken before the burst), latency (enqueue at R tasks/s for T s to "
        "idle workers: p50/p95/p99), vacuum (burn-down with a long REPEATABLE READ "
        "transaction open, and after). Progress goes to stderr, results to stdout.",
    )
    p.add_argument("--tasks", "-n", type=positive_int, metavar="N",
                   help="tasks per burn-down and per enqueue run (default 20000; quick 1000)")  # fmt: skip
    p.add_argument("--workers", "-w", type=positive_int, metavar="W",
                   help="worker processes (default 2; quick 1)")  # fmt: skip
    p.add_argument("--concurrency", "-c", type=positive_int, metavar="C",
                   help="handler slots per worker (default 10)")  # fmt: skip
    p.add_argument("--rate", type=positive_float, metavar="R",
                   help="latency mode: tasks enqueued per second (default 100; quick 50)")  # fmt: skip
    p.add_argument("--duration", type=_seconds, metavar="T",
                   help="latency mode: seconds of enqueueing (default 15; quick 1)")  # fmt: skip
    p.add_argument("--finished", type=_count, metavar="M",
                   help="finished and stale modes: finished tasks in the table (default 100000; "
                   "quick 5000; 0 skips the mode)")  # fmt: skip
    p.add_argument("--modes", type=_modes, metavar="A,B",
                   help="comma-separated modes to run: enqueue, burndown, finished, stale, "
                   "latency, vacuum (default: all)")  # fmt: skip
    p.add_argument("--worker-log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="the workers' --log-level (default: theirs, INFO: a line per task "
                   "start and end)")  # fmt: skip
    p.add_argument("--async", dest="asyncio", action="store_true",
                   help="enqueue mode: AsyncQueuer and the sync Queuer in turn, three rounds "
                   "each; medians and the async/sync ratios")  # fmt: skip
    p.add_argument("--prefetch", action="store_true",
                   help="start the workers with --prefetch (see taskq worker --help)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, a few seconds in all (a smoke test)")  # fmt: skip
    p.set_defaults(func=cmd_bench)


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {value}")
    return value


def _seconds(text: str) -> float:
    t = text.strip().lower().removesuffix("s")
    return positive_float(t)


def _modes(text: str) -> tuple[str, ...]:
    from taskq.tools.bench import parse_modes

    try:
        return parse_modes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from taskq.core.config import database_url, describe_target
    from taskq.tools.bench import BenchConfig, BenchError, Progress, run, sigterm_as_interrupt

    fields = ("tasks", "workers", "concurrency", "rate", "duration", "finished", "modes",
              "worker_log_level")  # fmt: skip
    given = {f: v for f in fields if (v := getattr(args, f)) is not None}
    for flag in ("asyncio", "prefetch"):
        if getattr(args, flag):
            given[flag] = True
    try:
        config = BenchConfig.quick(**given) if args.quick else BenchConfig(**given)
    except ValueError as e:
        die(f"bench: {e}", status=2)
    progress = Progress()
    url = database_url()
    if url is None:
        from taskq.db.embedded import embedded_url, require

        require()
        progress.say("starting the embedded PostgreSQL")
        url = embedded_url()
        where = "the embedded PostgreSQL"
    else:
        where = describe_target(url)
    with sigterm_as_interrupt():
        try:
            results = run(url, config, progress)
        except BenchError as e:
            die(f"bench: {e}")
    results = {"database": where, **results}
    if args.json:
        print_json(results)
    else:
        print(render(results))
    return 0


# ---- the readable report -------------------------------------------------------------


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def _x(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _bytes(v: int) -> str:
    size = float(v)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{v} B"


def _drain(r: dict[str, Any]) -> str:
    parts = [f"steady {_n(r['steady_tasks_per_s'])}/s", f"first after {r['first_finished_s']} s"]
    if r.get("worker_cpu_us_per_task") is not None:
        parts.append(f"worker CPU {_n(r['worker_cpu_us_per_task'])} µs/task")
    return f"{_n(r['tasks_per_s'])} tasks/s ({'; '.join(parts)})"


def render(results: dict[str, Any]) -> str:
    server = results.get("server", {})
    head = (
        f"taskq bench on {results['database']} (PostgreSQL {server.get('server_version', '?')}, "
        f"synchronous_commit {server.get('synchronous_commit', '?')}, "
        f"autovacuum {server.get('autovacuum', '?')}); "
        f"{server.get('client_cpus', '?')} CPUs here; {results['wall_s']} s in all"
    )
    rows: list[list[str]] = []
    sizes: list[list[str]] = []
    modes = results.get("modes", {})

    def add_sizes(label: str, r: dict[str, Any]) -> None:
        for when in ("before", "after"):
            s = r["sizes"][when]
            sizes.append([label, when, _bytes(s["table_bytes"]), _bytes(s["index_bytes"]),
                          _n(s["live_tuples"]), _n(s["dead_tuples"])])  # fmt: skip

    if "enqueue" in modes and "median_tasks_per_s" in modes["enqueue"]:
        e, med = modes["enqueue"], modes["enqueue"]["median_tasks_per_s"]
        for key, what in (("single", "1 per transaction"), ("batched", "500 per transaction")):
            rows.append(["enqueue", f"{what}, {_n(e['tasks'])} tasks, median of {e['rounds']}",
                         f"sync {_n(med['sync_' + key])}/s, async {_n(med['async_' + key])}/s"
                         f" = {_x(e['async_over_sync_' + key])}"])  # fmt: skip
    elif "enqueue" in modes:
        e = modes["enqueue"]
        for key, what in (("single", "1 per transaction"), ("batched", "500 per transaction")):
            r = e[key]
            rows.append(["enqueue", f"{what}, {_n(r['tasks'])} tasks",
                         f"{_n(r['tasks_per_s'])} tasks/s"])  # fmt: skip
    if "burndown" in modes:
        r = modes["burndown"]
        rows.append(["burn-down", f"{_n(r['tasks'])} tasks, {r['workers']} worker(s) x "
                     f"{r['concurrency']}", _drain(r)])  # fmt: skip
        add_sizes("burn-down", r)
    for key, what in (
        ("finished", "fresh statistics"),
        ("stale", "statistics from before the burst"),
    ):
        if key not in modes:
            continue
        f = modes[key]
        if "skipped" in f:
            rows.append([key, "skipped", f["skipped"]])
            continue
        rows.append([key, f"burn-down with {_n(f['finished_rows'])} finished rows, {what}",
                     f"{_drain(f['burndown'])} = {_x(f['ratio'])} the empty table "
                     f"({_n(f['empty_tasks_per_s'])}/s)"])  # fmt: skip
        add_sizes(f"{key}: empty", f["empty_burndown"])
        add_sizes(f"{key}: {_n(f['finished_rows'])}", f["burndown"])
    if "latency" in modes:
        r = modes["latency"]
        h, d = r["handler"], r["database"]
        rows.append(["latency", f"{r['rate']:g}/s for {r['duration_s']:g} s (achieved "
                     f"{_n(r['achieved_rate'], 1)}/s), {r['workers']} x {r['concurrency']}",
                     f"handler start - before enqueue: p50 {h['p50_ms']:.1f} / p95 "
                     f"{h['p95_ms']:.1f} / p99 {h['p99_ms']:.1f} ms"])  # fmt: skip
        rows.append(["", "", f"database started_at - created_at: p50 {d['p50_ms']:.1f} / p95 "
                     f"{d['p95_ms']:.1f} / p99 {d['p99_ms']:.1f} ms"])  # fmt: skip
    if "vacuum" in modes:
        v = modes["vacuum"]
        rows.append(["vacuum", "burn-down, no long transaction", _drain(v["without"])])
        rows.append(["vacuum", f"with a REPEATABLE READ snapshot held ({v['held_s']} s)",
                     f"{_drain(v['with'])} = {_x(v['with_ratio'])}"])  # fmt: skip
        rows.append(["vacuum", "after that transaction ended",
                     f"{_drain(v['after'])} = {_x(v['after_ratio'])}"])  # fmt: skip
        for key, label in (("without", "vacuum: none"), ("with", "vacuum: held"),
                           ("after", "vacuum: after")):  # fmt: skip
            add_sizes(label, v[key])
    out = [head, "", table(["mode", "what", "result"], rows)]
    if sizes:
        out += ["", "tasks table (pg_relation_size, pg_indexes_size, pg_stat_user_tables):",
                table(["phase", "", "table", "indexes", "live tuples", "dead tuples"], sizes)]  # fmt: skip
    return "\n".join(out)
