"""Metrics: producer metrics on an application's registry, bounded label sets, the
one cheap gauge query, /metrics and /healthz of real `taskq worker` processes, and the
operator files in deploy/ naming only metrics taskq exports."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import taskq_test_app
from helpers import ROOT, taskq_cmd, taskq_env, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import taskq
import taskq.db
from taskq import TaskEnqueueRequest
from taskq.db import Database
from taskq.ops.gauges import DEFAULT_MAX_QUEUES, DatabaseCollector
from taskq.ops.metrics import MAX_LABEL_SETS, OTHER, Metrics
from taskq.sql import statements

# ---- helpers ------------------------------------------------------------------------


class Samples:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.values[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(lb)[label] for (n, lb) in self.values if n == name and label in dict(lb)}

    def names(self) -> set[str]:
        return {n for n, _ in self.values}


def registry_samples(registry: CollectorRegistry) -> Samples:
    return Samples(generate_latest(registry).decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> Samples:
    status, body = http_get(port, "/metrics")
    assert status == 200
    return Samples(body)


def reachable(port: int) -> bool:
    try:
        http_get(port, "/healthz")
        return True
    except OSError:
        return False


class WorkerProcess:
    """A `taskq worker` subprocess serving /metrics on a free port; killed at exit."""

    def __init__(self, url: str, schema: str, *args: str) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")
        cmd = ["worker", "taskq_test_app:registry", "--metrics-port", str(self.port),
               "--rescue-interval", "0.5", "--poll-interval", "0.5", *args]  # fmt: skip
        self.proc = subprocess.Popen(
            taskq_cmd(*cmd), env=taskq_env(url, schema), stdout=self.log,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def wait_serving(self) -> None:
        wait_for(lambda: self.proc.poll() is not None or reachable(self.port), timeout=60,
                 what="the worker's metrics server")  # fmt: skip
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        self.log.seek(0)
        text: str = self.log.read()
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def worker_process(database_url: str, schema: str) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str, url: str = database_url, schema: str = schema) -> WorkerProcess:
        w = WorkerProcess(url, schema, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def db_queue_counts(url: str, schema: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            f'SELECT queue, status, count(*) FROM "{schema}".tasks '
            "WHERE status IN ('waiting', 'running') GROUP BY queue, status"
        ).fetchall()
    return {(q, s): n for q, s, n in rows}


def db_oldest_age(url: str, schema: str, queue: str) -> float:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            f'SELECT extract(epoch FROM now() - min(run_at)) FROM "{schema}".tasks '
            "WHERE queue = %s AND status = 'waiting' AND run_at <= now()",
            (queue,),
        ).fetchone()
    assert row is not None
    return float(row[0]) if row[0] is not None else 0.0


# ---- producer metrics ---------------------------------------------------------------


def test_producer_metrics_on_the_applications_own_registry(
    database_url: str, schema: str, queue_name: str
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with taskq.Queuer(database_url, schema=schema, metrics=metrics) as q:
        q.enqueue(queue=queue_name, type="a", spec={"n": 1})
        q.enqueue_many([TaskEnqueueRequest(queue_name, "a"), TaskEnqueueRequest(queue_name, "b")])
        q.enqueue_chain([TaskEnqueueRequest(queue_name, "c"), TaskEnqueueRequest(queue_name, "c")])
        q.enqueue_group([TaskEnqueueRequest(queue_name, "d"), TaskEnqueueRequest(queue_name, "d")])
        with pytest.raises(taskq.QueueNotSpecified):
            q.enqueue(queue="", type="a")
    s = registry_samples(registry)
    assert s.get("taskq_tasks_total", queue=queue_name, type="a", status="waiting") == 2
    assert s.get("taskq_tasks_total", queue=queue_name, type="b", status="waiting") == 1
    assert s.get("taskq_tasks_total", queue=queue_name, type="c", status="waiting") == 2
    # One observation per call, labelled by the call's first task; refused calls none.
    assert s.get("taskq_enqueue_duration_seconds_count", queue=queue_name, type="a") == 2
    assert s.get("taskq_enqueue_duration_seconds_count", queue=queue_name, type="c") == 1
    assert s.get("taskq_tasks_total", queue=queue_name, type="d", status="waiting") == 2
    assert s.get("taskq_enqueue_duration_seconds_count", queue=queue_name, type="d") == 1
    assert (s.get("taskq_enqueue_duration_seconds_sum", queue=queue_name, type="a") or 0) > 0
    # Worker-side metrics are registered too, with no samples until something runs.
    assert "# TYPE taskq_task_run_duration_seconds histogram" in s.text

    # One Metrics per registry: a second one would register the same names twice.
    with pytest.raises(ValueError):
        Metrics(registry)

    # A namespace of the application's choosing.
    other = CollectorRegistry()
    with taskq.Queuer(
        database_url, schema=schema, metrics=Metrics(other, namespace="myapp_jobs")
    ) as q:
        q.enqueue(queue=queue_name, type="a")
    s = registry_samples(other)
    assert s.get("myapp_jobs_tasks_total", queue=queue_name, type="a", status="waiting") == 1
    assert not any(n.startswith("taskq_") for n in s.names())


def test_label_sets_stay_bounded_with_100000_queue_names(
    database_url: str, schema: str, queue_name: str
) -> None:
    with taskq.Queuer(database_url, schema=schema) as q:
        base = q.enqueue(queue=queue_name, type="t")
    n = 100_000
    # Stand-ins with the fields the metrics read (a real Task per name would only be slower).
    at = base.created_at
    flood: list[Any] = [
        SimpleNamespace(queue=f"flood-{i}", type="t", run_at=at, started_at=at) for i in range(n)
    ]
    rows = [
        {"queue": t.queue, "type": t.type, "status": "finished",
         "started_at": at, "finished_at": at}
        for t in flood
    ]  # fmt: skip
    m = Metrics()
    for i in range(0, n, 10_000):
        m.observe_enqueue(flood[i : i + 10_000], 0.001)
    m.observe_claimed(flood)
    m.observe_ended(rows)
    m.observe_rescued([r | {"status": "waiting"} for r in rows])

    s = registry_samples(m.registry)
    for name in ("taskq_tasks_total", "taskq_task_queue_wait_seconds_count",
                 "taskq_task_run_duration_seconds_count", "taskq_rescues_total"):  # fmt: skip
        queues = s.label_values(name, "queue")
        assert len(queues) == MAX_LABEL_SETS + 1, name
        assert OTHER in queues
    assert len(m.queues()) == MAX_LABEL_SETS
    # Nothing is lost: the overflow is counted under "other".
    waiting = s.get("taskq_tasks_total", queue=OTHER, type=OTHER, status="waiting")
    assert waiting == n - MAX_LABEL_SETS + (n - MAX_LABEL_SETS)  # enqueued + rescued
    assert s.get("taskq_tasks_total", queue=OTHER, type=OTHER, status="finished") == (
        n - MAX_LABEL_SETS
    )
    # The whole registry stays within the documented worst case (~70 series a pair).
    assert len(s.values) < (MAX_LABEL_SETS + 1) * 100


# ---- the gauge query ----------------------------------------------------------------


def test_gauge_query_does_not_read_finished_history(database_url: str, fresh_schema: str) -> None:
    schema = fresh_schema
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type, status, attempts, started_at, finished_at) '
            "SELECT 'q' || (i % 10), 't', (ARRAY['finished', 'failed', 'cancelled'])[1 + i % 3], "
            "1, now() - interval '1 hour', now() FROM generate_series(1, 100000) AS i"
        )
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type, run_at) '
            "SELECT 'q' || (i % 3), 't', now() - make_interval(secs => i) "
            "FROM generate_series(1, 30) AS i"
        )
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type, status, attempts, started_at, '
            "last_heartbeat_at) SELECT 'q7', 't', 'running', 1, now(), now() "
            "FROM generate_series(1, 4)"
        )
        c.execute(f'ANALYZE "{schema}".tasks')
        pages = c.execute(
            "SELECT pg_relation_size(%s) / current_setting('block_size')::int",
            (f'"{schema}".tasks',),
        ).fetchone()
        assert pages is not None
        q = statements(schema).gauges
        # exact_bytes=0: this table stands for one too large to count its history exactly
        params = {"stale": 30, "max_queues": 200, "schema": schema, "events": "", "channel": "",
                  "exact_bytes": 0}  # fmt: skip
        row = c.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + q.text("counts"), params
        ).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    # The tasks table is read only through the partial indexes of waiting and running.
    scans = [
        n["Node Type"] for n in nodes(plan)
        if n.get("Relation Name") == "tasks" and n.get("Actual Loops", 1) > 0
    ]  # fmt: skip
    assert scans and "Seq Scan" not in scans, scans
    indexes = {
        n["Index Name"] for n in nodes(plan)
        if str(n.get("Index Name")).startswith("tasks_") and n.get("Actual Loops", 1) > 0
    }  # fmt: skip
    assert indexes and indexes <= PARTIAL_INDEXES, indexes
    blocks = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert blocks < pages[0] / 5, (blocks, pages[0])

    # What the scrape reports matches the database, and the stored-rows estimate (from
    # ANALYZE's statistics) is in the right range.
    registry = CollectorRegistry()
    db = Database(database_url, schema, max_size=1)
    collector = DatabaseCollector(db, exact_bytes=0)  # as for a table too large to count
    try:
        registry.register(collector)
        s = registry_samples(registry)
    finally:
        collector.close()
        db.close()
    exact = db_queue_counts(database_url, schema)
    for (queue, status), count in exact.items():
        assert s.get("taskq_queue_tasks", queue=queue, status=status) == count
    assert s.get("taskq_queue_tasks", queue="q7", status="running") == 4
    assert s.get("taskq_queue_tasks", queue="q7", status="waiting") == 0
    assert s.label_values("taskq_queue_tasks", "queue") == {"q0", "q1", "q2", "q7"}
    assert (s.get("taskq_queue_oldest_waiting_seconds", queue="q7") or 0) == 0
    age = s.get("taskq_queue_oldest_waiting_seconds", queue="q0")
    assert age is not None and 30 <= age < db_oldest_age(database_url, schema, "q0") + 1
    for status, count in (("finished", 33_334), ("failed", 33_333), ("cancelled", 33_333)):
        estimate = s.get("taskq_tasks_stored_estimate", status=status)
        assert estimate is not None and 0.8 * count < estimate < 1.2 * count, (status, estimate)
    assert s.get("taskq_database_up") == 1
    assert s.get("taskq_workers_live") == 0


def test_gauges_stay_bounded_with_100000_queues(database_url: str, fresh_schema: str) -> None:
    schema = fresh_schema
    n = 100_000
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type) '
            "SELECT 'flood-' || i, 't' FROM generate_series(1, %s) AS i",
            (n,),
        )
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type) '
            "SELECT 'big', 't' FROM generate_series(1, 5)"
        )
    registry = CollectorRegistry()
    db = Database(database_url, schema, max_size=1)
    collector = DatabaseCollector(db)
    try:
        registry.register(collector)
        s = registry_samples(registry)
        queues = s.label_values("taskq_queue_tasks", "queue")
        assert len(queues) == DEFAULT_MAX_QUEUES + 1 and OTHER in queues
        assert s.label_values("taskq_queue_oldest_waiting_seconds", "queue") == queues
        # The busiest queue keeps its own series; nothing is lost in the sum.
        assert s.get("taskq_queue_tasks", queue="big", status="waiting") == 5
        total = sum(s.get("taskq_queue_tasks", queue=q, status="waiting") or 0 for q in queues)
        assert total == n + 5
        rest = n - (DEFAULT_MAX_QUEUES - 1)
        assert s.get("taskq_queue_tasks", queue=OTHER, status="waiting") == rest

        # A real queue named "other" among the top ones shares the series with the
        # rest (one series, never a duplicate).
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(
                f'INSERT INTO "{schema}".tasks (queue, type) '
                "SELECT 'other', 't' FROM generate_series(1, 3)"
            )
        s = registry_samples(registry)
        assert s.text.count('taskq_queue_tasks{queue="other",status="waiting"}') == 1
        assert len(s.label_values("taskq_queue_tasks", "queue")) == DEFAULT_MAX_QUEUES
        rest = n - (DEFAULT_MAX_QUEUES - 2)
        assert s.get("taskq_queue_tasks", queue=OTHER, status="waiting") == 3 + rest
    finally:
        collector.close()
        db.close()


PARTIAL_INDEXES = {"tasks_dequeue_idx", "tasks_dequeue_any_idx", "tasks_running_idx"}


# ---- a real worker process ----------------------------------------------------------


def test_worker_metrics_after_tasks_run(
    database_url: str, schema: str, worker_process: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    q_run, q_idle, q_stale = f"run-{tag}", f"idle-{tag}", f"stale-{tag}"
    w = worker_process("--queue", q_run)
    with taskq.Queuer(database_url, schema=schema, registry=taskq_test_app.registry) as queuer:
        idle = [queuer.enqueue(queue=q_idle, type="noop") for _ in range(2)]
        queuer.enqueue(TaskEnqueueRequest(q_idle, "noop", run_at=_in_an_hour()))  # not due
        w.wait_serving()
        status, body = http_get(w.port, "/healthz")
        assert status == 200 and body.startswith("ok"), body
        ids = [queuer.enqueue(queue=q_run, type="echo", spec={"i": i}).id for i in range(5)]
        ids.append(queuer.enqueue(queue=q_run, type="boom").id)
        ids.append(queuer.enqueue(queue=q_run, type="flaky", spec={"succeed_on": 2}).id)
        ids.append(queuer.enqueue(queue=q_run, type="steps", spec={"steps": 3, "pause": 0}).id)
        # A task claimed and abandoned on a queue the worker does not serve: the
        # worker's rescue takes it back (to waiting: one attempt remains).
        queuer.enqueue(TaskEnqueueRequest(q_stale, "noop", heartbeat_timeout=0.2, max_attempts=2))
        with taskq.Dequeuer(database_url, schema=schema) as d:
            assert d.dequeue(q_stale, timeout=10) is not None
    with taskq.Tasks(database_url, schema=schema) as tasks:
        ended = [tasks.wait(i, timeout=60) for i in ids]
    assert [t.status.value for t in ended] == ["finished"] * 5 + ["failed", "finished", "finished"]

    def settled() -> Samples | None:
        s = scrape(w.port)
        done = (
            s.get("taskq_tasks_total", queue=q_run, type="steps", status="finished") == 1
            and s.get("taskq_tasks_total", queue=q_run, type="echo", status="finished") == 5
            and s.get("taskq_tasks_total", queue=q_run, type="flaky", status="finished") == 1
            and s.get("taskq_tasks_total", queue=q_run, type="boom", status="failed") == 1
            and s.get("taskq_rescues_total", queue=q_stale, type="noop", status="waiting") == 1
        )
        return s if done else None

    s = wait_for(settled, timeout=60, what="the worker's counters")

    def total(type_: str, status: str, queue: str = q_run) -> float | None:
        return s.get("taskq_tasks_total", queue=queue, type=type_, status=status)

    # Transitions: each claim is one "running"; a retry is one "waiting".
    assert total("echo", "running") == 5 and total("echo", "finished") == 5
    assert total("boom", "running") == 1 and total("boom", "failed") == 1
    assert total("flaky", "running") == 2 and total("flaky", "waiting") == 1
    assert total("echo", "failed") is None and total("echo", "waiting") is None
    assert total("noop", "waiting", q_stale) == 1  # the rescue
    assert s.get("taskq_rescues_total", queue=q_stale, type="noop", status="waiting") == 1

    def count(name: str, **labels: str) -> float | None:
        return s.get(f"taskq_{name}_count", queue=q_run, **labels)

    assert count("task_run_duration_seconds", type="echo", status="finished") == 5
    assert count("task_run_duration_seconds", type="boom", status="failed") == 1
    assert count("task_run_duration_seconds", type="flaky", status="waiting") == 1
    assert count("task_run_duration_seconds", type="flaky", status="finished") == 1
    assert count("task_queue_wait_seconds", type="echo") == 5
    assert count("task_queue_wait_seconds", type="flaky") == 2
    assert (s.get("taskq_heartbeats_total") or 0) >= 3  # steps reported progress 3 times

    # Gauges match the database.
    assert s.get("taskq_database_up") == 1
    exact = db_queue_counts(database_url, schema)
    for queue in (q_run, q_idle, q_stale):
        for st in ("waiting", "running"):
            assert s.get("taskq_queue_tasks", queue=queue, status=st) == exact.get((queue, st), 0)
    assert s.get("taskq_queue_tasks", queue=q_idle, status="waiting") == len(idle) + 1
    assert s.get("taskq_queue_tasks", queue=q_stale, status="waiting") == 1
    assert s.get("taskq_queue_tasks", queue=q_run, status="waiting") == 0  # reported as 0
    assert s.get("taskq_queue_oldest_waiting_seconds", queue=q_run) == 0
    age = s.get("taskq_queue_oldest_waiting_seconds", queue=q_idle)
    assert age is not None and 0 < age <= db_oldest_age(database_url, schema, q_idle)
    with psycopg.connect(database_url, autocommit=True) as c:
        live = c.execute(
            f'SELECT count(*) FROM "{schema}".workers WHERE stopped_at IS NULL '
            "AND last_seen_at >= now() - interval '30 seconds'"
        ).fetchone()
    assert live is not None and s.get("taskq_workers_live") == live[0] == 1

    # The task events of the same run are in the worker's log.
    out = w.output()
    assert out.count("task rescued") == 1 and q_stale in out


def _in_an_hour() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


def test_healthz_turns_503_when_the_database_stops(worker_process: Any) -> None:
    from taskq.db.embedded import embedded_url, stop

    folder = Path(tempfile.mkdtemp(prefix="taskq-metrics-pg-"))
    pgdata = folder / "data"
    try:
        url = embedded_url(pgdata)
        schema = "taskq_health"
        taskq.migrate(url, schema)
        w = worker_process(url=url, schema=schema)
        w.wait_serving()
        wait_for(lambda: http_get(w.port, "/healthz")[0] == 200, timeout=30, what="healthy")
        assert scrape(w.port).get("taskq_database_up") == 1

        stop(pgdata)
        status, body = wait_for(
            lambda: (r := http_get(w.port, "/healthz"))[0] == 503 and r,
            timeout=30, what="/healthz to turn 503",
        )  # fmt: skip
        assert body.startswith("unhealthy: database unreachable"), body
        # /metrics still answers, saying the database is down.
        s = scrape(w.port)
        assert s.get("taskq_database_up") == 0
        assert s.get("taskq_queue_tasks", queue="x", status="waiting") is None
    finally:
        stop(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


# ---- operator files -----------------------------------------------------------------

DEPLOY = ROOT / "deploy"


def exported_metric_names(database_url: str, schema: str) -> set[str]:
    """Every sample name a worker process's registry can export: a real Metrics with
    each metric observed once, and a real DatabaseCollector scrape."""
    m = Metrics()
    with taskq.Queuer(database_url, schema=schema) as q:
        t = q.enqueue_many([TaskEnqueueRequest("names", "t") for _ in range(3)])[0]
    t = replace(t, started_at=t.created_at)
    row = {"queue": "names", "type": "t", "status": "finished", "started_at": t.created_at,
           "finished_at": t.created_at}  # fmt: skip
    m.observe_enqueue([t], 0.01)
    m.observe_claimed([t])
    m.observe_heartbeats(1)
    m.observe_ended([row])
    m.observe_rescued([row])
    m.scheduler_schedules.labels("names", "t").inc()
    m.scheduler_errors.labels("names", "t").inc()
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(f'ANALYZE "{schema}".tasks')  # so the stored-rows estimate has samples
    db = Database(database_url, schema, max_size=1)
    collector = DatabaseCollector(db, metrics=m)
    try:
        m.registry.register(collector)
        names = registry_samples(m.registry).names()
    finally:
        collector.close()
        db.close()
    return names


PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "max", "min", "avg", "count",
    "histogram_quantile", "le", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "offset", "deriv", "delta", "time", "vector", "scalar", "clamp_min",
    "clamp_max", "absent", "bool", "max_over_time", "min_over_time", "avg_over_time",
    "label_replace", "topk", "bottomk", "sort", "sort_desc", "abs", "round",
    "predict_linear", "changes", "resets", "queue", "type", "status", "instance", "job",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name metrics (not functions, keywords,
    label names, label values or durations). Unknown words count as metric names, so
    a new function must be added to PROMQL_WORDS rather than slip through."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop range durations
    expr = re.sub(r"\$\w+", "", expr)  # drop Grafana variables
    found = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in found if w not in PROMQL_WORDS and not re.fullmatch(r"\d.*", w)}


def load_yaml(text: str) -> Any:
    """PyYAML when installed, else a loader for the block-style subset the alert file
    uses (maps, lists of maps, plain and quoted one-line scalars, comments)."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return _mini_yaml(text)
    return yaml.safe_load(text)


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        assert text.endswith("'"), text
        return text[1:-1].replace("''", "'")
    if text.startswith('"'):
        return json.loads(text)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _mini_yaml(text: str) -> Any:
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))
    pos = 0

    def block(indent: int) -> Any:
        nonlocal pos
        if lines[pos][1].startswith("- "):
            items: list[Any] = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                ind, content = lines[pos]
                lines[pos] = (ind + 2, content[2:])  # the item's first line, as a map line
                items.append(block(ind + 2))
            return items
        out: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent:
            key, _, rest = lines[pos][1].partition(":")
            pos += 1
            if rest.strip():
                out[key.strip()] = _scalar(rest)
            else:
                out[key.strip()] = block(lines[pos][0])
        return out

    return block(lines[0][0])


def test_operator_files_name_only_exported_metrics(database_url: str, fresh_schema: str) -> None:
    exported = exported_metric_names(database_url, fresh_schema)
    for must in ("taskq_tasks_total", "taskq_enqueue_duration_seconds_bucket",
                 "taskq_task_run_duration_seconds_bucket", "taskq_task_queue_wait_seconds_bucket",
                 "taskq_heartbeats_total", "taskq_rescues_total",
                 "taskq_scheduler_schedules_total", "taskq_scheduler_errors_total",
                 "taskq_queue_tasks", "taskq_queue_oldest_waiting_seconds",
                 "taskq_tasks_stored_estimate", "taskq_workers_live", "taskq_database_up"):  # fmt: skip
        assert must in exported, must

    from support.serve import server_metric_names

    exported |= server_metric_names()  # taskq serve's /metrics: the dashboard's HTTP row
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    named = set().union(*(metric_names_in(e) for e in exprs))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            named |= set(re.findall(r"label_values\((\w+)", var["definition"]))
    assert named and named <= exported, named - exported

    rules = load_yaml((DEPLOY / "prometheus-alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"TaskqQueueBacklogGrowing", "TaskqOldestWaitingTaskTooOld", "TaskqHighFailureRate",
            "TaskqNoLiveWorkers", "TaskqSchedulerErrors"} <= set(alerts)  # fmt: skip
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        used = metric_names_in(rule["expr"])
        assert used and used <= exported, (name, used - exported)


def test_mini_yaml_loader_reads_the_alert_file_like_pyyaml() -> None:
    text = (DEPLOY / "prometheus-alerts.yml").read_text()
    mini = _mini_yaml(text)
    assert mini["groups"][0]["rules"]
    try:
        import yaml
    except ImportError:
        pytest.skip("PyYAML is not installed; the mini loader is all there is")
    assert mini == yaml.safe_load(text)


# ---- a real scheduler process -------------------------------------------------------


def test_scheduler_metrics_after_a_schedule_fires(database_url: str, schema: str) -> None:
    tag = uuid.uuid4().hex[:8]
    q_ok, q_bad = f"cron-{tag}", f"cron-bad-{tag}"
    every_second = taskq.TaskScheduleRequest(q_ok, "noop", "* * * * * *")
    broken = taskq.TaskScheduleRequest(q_bad, "noop", "0 3 * * *")
    with taskq.Scheduler(database_url, schema=schema) as scheduler:
        scheduler.schedule(every_second)
        bad = scheduler.schedule(broken)
    with psycopg.connect(database_url, autocommit=True) as c:  # broken by hand, and due
        c.execute(
            f'UPDATE "{schema}".schedules SET cron_schedule = %s, next_run_at = now() '
            "WHERE id = %s",
            ("not a cron expression", bad.id),
        )
    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        taskq_cmd("scheduler", "--metrics-port", str(port)),
        env=taskq_env(database_url, schema), stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or reachable(port), timeout=60,
                 what="the scheduler's metrics server")  # fmt: skip
        assert proc.poll() is None
        assert http_get(port, "/healthz")[0] == 200

        def fired(n: int) -> Samples | None:
            s = scrape(port)
            got = s.get("taskq_scheduler_schedules_total", queue=q_ok, type="noop") or 0
            errors = s.get("taskq_scheduler_errors_total", queue=q_bad, type="noop") or 0
            return s if got >= n and errors >= 1 else None

        wait_for(lambda: fired(2), timeout=60, what="two fires and one error")
        with taskq.Scheduler(database_url, schema=schema) as scheduler:
            scheduler.unschedule(every_second)

        def in_db(queue: str) -> int:
            return db_queue_counts(database_url, schema).get((queue, "waiting"), 0)

        # Each fire is one task in the database, and one waiting transition.
        s = wait_for(
            lambda: (s := scrape(port)).get(
                "taskq_scheduler_schedules_total", queue=q_ok, type="noop"
            ) == in_db(q_ok) and s,
            timeout=60, what="the counter to match the tasks enqueued",
        )  # fmt: skip
        fires = s.get("taskq_scheduler_schedules_total", queue=q_ok, type="noop")
        assert fires is not None and fires >= 2
        assert s.get("taskq_tasks_total", queue=q_ok, type="noop", status="waiting") == fires
        assert s.get("taskq_scheduler_schedules_total", queue=q_bad, type="noop") is None
        assert in_db(q_bad) == 0
        # The scheduler exports the database gauges too.
        assert s.get("taskq_queue_tasks", queue=q_ok, status="waiting") == fires
        assert s.get("taskq_database_up") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_gauges_count_final_statuses_per_queue_while_the_table_is_small(
    database_url: str, fresh_schema: str
) -> None:
    schema = fresh_schema
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            f'INSERT INTO "{schema}".tasks (queue, type, status, attempts, finished_at) '  # noqa: S608
            "SELECT 'done', 't', (ARRAY['finished', 'failed', 'cancelled'])[1 + i % 3], 1, now() "
            "FROM generate_series(0, 8) AS i"
        )
        db = taskq.db.Database(c)
        counts = statements(schema).gauges.counts
        small = {(r["queue"], r["status"]): r["waiting"]
                 for r in db.query(counts(30, 200, 64 * 1024 * 1024))
                 if r["kind"] == "final"}  # fmt: skip
        large = [r for r in db.query(counts(30, 200, 0)) if r["kind"] == "final"]
    assert small == {("done", "finished"): 3, ("done", "failed"): 3, ("done", "cancelled"): 3}
    assert large == []
