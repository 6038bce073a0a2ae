"""Query plans: claiming reads only the claimed queue's entries of the partial dequeue
indexes, never the whole table and never another queue's backlog, whatever the
planner's statistics say.

Two states of the table, each with finished rows, a backlog in queue ``busy`` enqueued
first (earliest run_at, so any plan that walks tasks_dequeue_any_idx or sorts the
waiting rows meets it first), a few tasks in quiet queues ``q1``/``q2`` and a queue
``later`` whose tasks are all in the future:

- ``stale``: ANALYZE ran while the table was empty, then the rows came (statistics
  older than a burst, as between autovacuum runs after a large enqueue);
- ``fresh``: ANALYZE after the rows came.

No planner setting is forced on the statements under test. Both the custom plan (what
EXPLAIN shows for given values) and the generic plan (what a prepared statement may
switch to after a few runs) are checked. The claims of any queue and of several queues
run in functions (migration 0005), whose plans EXPLAIN cannot show: they are checked by
the table's and indexes' cumulative statistics instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskq.sql import statements
from taskq.sql.tasks import Finishing, Starting

FINISHED_ROWS = 20_000
BUSY_BACKLOG = 20_000
PARAM_TYPES = {"queue": "text", "queues": "text[]", "limit": "bigint", "worker_id": "uuid",
               "charge": "boolean", "ids": "uuid[]", "leases": "uuid[]", "progress": "jsonb[]",
               "results": "jsonb[]", "agos": "float8[]", "start_ids": "uuid[]",
               "start_leases": "uuid[]", "start_agos": "float8[]", "events": "text",
               "channel": "text", "errors": "text[]", "finals": "boolean[]", "entries": "jsonb[]"}  # fmt: skip


# (shape, parameters, queues named)
QUEUE_CASES = {
    "one-quiet": ("one", {"queue": "q1"}, 1),
    "one-busy": ("one", {"queue": "busy"}, 1),
    "one-future-only": ("one", {"queue": "later"}, 1),
}

# (parameters, queues named): the claims that run inside a function (migration 0005)
FUNCTION_CASES = {
    "any": ({}, 0),
    "many-quiet": ({"queues": ["q1", "q2"]}, 2),
    "many-quiet-and-future": ({"queues": ["q1", "later"]}, 2),
    "many-with-the-backlog": ({"queues": ["busy", "q1"]}, 2),
}


@pytest.fixture(scope="module", params=["stale", "fresh"])
def loaded(
    request: pytest.FixtureRequest, database_url: str, schema: str
) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        t = sql.Identifier(schema, "tasks")
        conn.execute(sql.SQL("TRUNCATE {}").format(t))
        if request.param == "stale":
            conn.execute(sql.SQL("ANALYZE {}").format(t))  # the statistics of an empty table
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, status, attempts, started_at, finished_at)"
                " SELECT 'q' || (i %% 5), 't', 'finished', 1, now(), now()"
                " FROM generate_series(1, %s) AS i"
            ).format(t),
            (FINISHED_ROWS,),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, run_at) SELECT 'busy', 't',"
                " now() - interval '1 hour' + i * interval '1 ms' FROM generate_series(1, %s) i"
            ).format(t),
            (BUSY_BACKLOG,),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, run_at) SELECT 'q' || (i % 2 + 1), 't',"
                " now() - interval '1 minute' FROM generate_series(1, 40) AS i"
            ).format(t)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, run_at) SELECT 'later', 't',"
                " now() + interval '1 day' FROM generate_series(1, 200)"
            ).format(t)
        )
        if request.param == "fresh":
            conn.execute(sql.SQL("ANALYZE {}").format(t))
        yield conn


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def cte(plan: dict[str, Any], name: str) -> dict[str, Any]:
    for node in plan_nodes(plan):
        if node.get("Subplan Name") == f"CTE {name}":
            return node
    raise AssertionError(f"no CTE {name} in plan: {json.dumps(plan)[:2000]}")


def claim_subplan(plan: dict[str, Any]) -> dict[str, Any]:
    """The CTE that picks the rows to claim (``next``)."""
    return cte(plan, "next")


def explain(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], *, generic: bool
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of a claim, in a transaction rolled back;
    ``generic``: as a prepared statement forced to its generic plan."""
    with conn.transaction(force_rollback=True):
        if not generic:
            row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params)
            found = row.fetchone()
            assert found is not None
            return found[0][0]["Plan"]  # type: ignore[no-any-return]
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
        for i, name in enumerate(names, 1):
            query = query.replace(f"%({name})s", f"${i}")
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE claim_t ({', '.join(PARAM_TYPES[n] for n in names)}) AS {query}")
        try:
            # EXECUTE is a utility statement: its arguments are literals, not parameters
            args = sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
            found = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim_t ({})").format(args)
            ).fetchone()
        finally:
            conn.execute("DEALLOCATE claim_t")
        assert found is not None
        return found[0][0]["Plan"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("limit", [1, 100])
@pytest.mark.parametrize("case", list(QUEUE_CASES))
@pytest.mark.parametrize("kind", ["dequeue", "exchange"])
def test_a_queue_claim_reads_only_its_own_queues_entries(
    loaded: psycopg.Connection[Any], schema: str, kind: str, case: str, limit: int, generic: bool
) -> None:
    shape, params, queues = QUEUE_CASES[case]
    stmts = statements(schema).tasks
    if kind == "dequeue":
        q = stmts.dequeue([params["queue"]], limit, None)
    else:  # nothing to finish or record: the plan is the claim's
        q = stmts.exchange(Finishing([], [], [], []), Starting([], [], []), [params["queue"]],
                           limit, None)  # fmt: skip
    assert q.name == f"tasks.{kind}_{shape}"
    plan = explain(loaded, q.text, dict(q.params), generic=generic)
    picked = claim_subplan(plan)
    scans = [n for n in plan_nodes(picked) if n.get("Relation Name") == "tasks"]
    assert scans, json.dumps(picked)
    for n in scans:
        # the scan starts and stops inside the queue's own range of tasks_dequeue_idx:
        # other queues' entries are never visited (a Filter on queue would visit, then
        # drop them). Where the queue holds few rows the planner may read them all by
        # bitmap and sort; that is bounded by the queue's own range too.
        assert n["Node Type"] in ("Index Scan", "Bitmap Heap Scan"), json.dumps(n)
        bound = n.get("Index Cond") or n.get("Recheck Cond") or ""
        assert "queue >=" in bound and "queue <=" in bound, json.dumps(n)
    indexes = {n["Index Name"] for n in plan_nodes(picked) if n.get("Index Name")}
    assert indexes == {"tasks_dequeue_idx"}, json.dumps(picked)
    read = sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in scans
    )
    assert read <= queues * limit + 0.5, (read, json.dumps(picked))  # PG 18 prints fractions
    assert not [n for n in plan_nodes(picked) if n["Node Type"] == "Seq Scan"]
    # the UPDATE finds the claimed rows by primary key, never by scanning or hashing tasks
    # (the round trip's writes to held tasks: test_writes_to_held_tasks_find_them_by_pk)
    update = plan if kind == "dequeue" else cte(plan, "claimed")
    whole_table = ("Seq Scan", "Hash Join", "Merge Join")
    assert not [n for n in plan_nodes(update) if n["Node Type"] in whole_table], json.dumps(plan)


def counters(conn: psycopg.Connection[Any], schema: str) -> tuple[dict[str, int], int]:
    """Index entries read per index of tasks, and sequential scans of tasks, so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes"
        " WHERE schemaname = %s AND relname = 'tasks'",
        (schema,),
    ).fetchall()
    seq = conn.execute(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'tasks'",
        (schema,),
    ).fetchone()
    assert seq is not None
    return {str(r[0]): int(r[1]) for r in rows}, int(seq[0])


@pytest.mark.parametrize("limit", [1, 100])
@pytest.mark.parametrize("case", list(FUNCTION_CASES))
def test_claims_in_a_function_read_limit_entries_per_queue_in_index_order(
    loaded: psycopg.Connection[Any], schema: str, case: str, limit: int
) -> None:
    params, queues = FUNCTION_CASES[case]
    shape = "any" if not queues else "many"
    query = statements(schema).tasks.text(f"dequeue_{shape}")
    counters(loaded, schema)
    before, seq_before = counters(loaded, schema)
    with loaded.transaction(force_rollback=True), loaded.cursor() as cur:
        cur.execute(query, {**params, "limit": limit, "worker_id": None, "charge": True})
        got = cur.fetchall()
    loaded.execute("SELECT 1")
    after, seq_after = counters(loaded, schema)
    read = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert got, "claimed nothing"
    assert seq_after == seq_before, "a sequential scan of tasks"
    if not queues:
        # the oldest waiting tasks are the busy backlog's: `limit` entries, no sort
        assert set(read) <= {"tasks_dequeue_any_idx", "tasks_pkey"}, read
        assert read["tasks_dequeue_any_idx"] <= limit + 2, read
    else:
        assert set(read) <= {"tasks_dequeue_idx", "tasks_pkey"}, read
        assert read["tasks_dequeue_idx"] <= queues * (limit + 1), read


def test_claims_take_the_highest_priority_then_earliest_across_queues(
    database_url: str, fresh_schema: str
) -> None:
    """The per-queue claim of several queues merges them in claiming order."""
    import taskq

    R = taskq.TaskEnqueueRequest
    with (
        taskq.Queuer(database_url, schema=fresh_schema) as q,
        taskq.Dequeuer(database_url, schema=fresh_schema) as d,
    ):
        made = q.enqueue_many(
            [R("a", "t", priority=p % 3) for p in range(12)]
            + [R("b", "t", priority=p % 4) for p in range(12)]
        )
        expected = sorted(made, key=lambda t: (-t.priority, t.run_at, t.seq or 0))
        claimed = d.dequeue_many(["a", "b"], 10)
        claimed += d.dequeue_many(["a", "b"], 100)
    assert [t.id for t in claimed] == [t.id for t in expected]


def write_queries(schema: str, ids: list[str], leases: list[str]) -> dict[str, Any]:
    """Every statement that writes tasks a worker holds, for ``ids`` under ``leases``."""
    stmts = statements(schema).tasks
    n = len(ids)
    finishing = Finishing(ids, list(leases), [None] * n, [None] * n)
    return {
        "heartbeat": stmts.heartbeat(ids, list(leases), [None] * n),
        "finish": stmts.finish(finishing),
        "fail": stmts.fail(ids, list(leases), [None] * n, ["x"] * n, [False] * n, ["{}"] * n),
        "release": stmts.release(ids, list(leases)),
        "exchange": stmts.exchange(
            finishing, Starting(ids, list(leases), [0.0] * n), ["busy"], 10, None
        ),  # fmt: skip
    }


@pytest.mark.parametrize("name", ["heartbeat", "finish", "fail", "release", "exchange"])
def test_writes_to_held_tasks_find_them_by_pk(
    loaded: psycopg.Connection[Any], schema: str, name: str
) -> None:
    """With 3,000 tasks running that the statistics do not know of (taken before they
    were claimed), a write to five of them reads those five by primary key in the
    generic plan a prepared statement settles on, not every running task."""
    t = sql.Identifier(schema, "tasks")
    with loaded.transaction(force_rollback=True):
        rows = loaded.execute(
            sql.SQL(
                "UPDATE {t} SET status = 'running', started_at = now(), lease = gen_random_uuid()"
                " WHERE id IN (SELECT id FROM {t} WHERE queue = 'busy' LIMIT 3000)"
                " RETURNING id::text, lease::text"
            ).format(t=t)
        ).fetchall()
        ids, leases = [r[0] for r in rows[:5]], [r[1] for r in rows[:5]]
        q = write_queries(schema, ids, leases)[name]
        plan = explain(loaded, q.text, dict(q.params), generic=True)
    used = {n.get("Index Name") for n in plan_nodes(plan) if n.get("Index Name")}
    assert "tasks_running_idx" not in used, json.dumps(plan)
    assert "tasks_pkey" in used, json.dumps(plan)
    scans = [n for n in plan_nodes(plan) if n.get("Relation Name") == "tasks"
             and n["Node Type"] in ("Seq Scan", "Index Scan", "Index Only Scan")]  # fmt: skip
    for n in scans:
        assert n["Node Type"] != "Seq Scan", json.dumps(n)
        assert n["Index Name"] in ("tasks_pkey", "tasks_dequeue_idx"), json.dumps(n)
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans
               if n.get("Index Name") != "tasks_dequeue_idx")  # fmt: skip
    assert read <= 5 * 2, json.dumps(plan)


def test_a_workers_pool_plans_each_statement_once_and_keeps_the_urls_options(
    database_url: str,
) -> None:
    """``taskq worker`` opens its pool with ``generic_plans``: each prepared statement is
    planned once per connection (the plans the tests above check), by a ``SET`` on each
    new connection, so options the URL carries still apply and nothing is sent at
    start-up that a pooler could refuse. Behind a transaction-mode pooler the setting
    would outlive the transaction on a shared server connection: none is made."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from taskq.db import Database

    if os.environ.get("TASKQ_POOLER") == "transaction":
        pytest.skip("behind a transaction-mode pooler no startup options can be sent")
    given = conninfo_to_dict(database_url).get("options")
    url = make_conninfo(database_url, options=f"{given or ''} -c work_mem=7777kB".strip())
    dbs = {
        "worker": Database(url, "public", generic_plans=True),
        "plain": Database(url, "public"),
        "pooled": Database(url, "public", generic_plans=True, pooler="transaction"),
    }
    try:
        modes = {}
        for name, db in dbs.items():
            with db.connection() as conn:
                [(modes[name],)] = conn.execute("SHOW plan_cache_mode").fetchall()
                if name == "worker":
                    assert conn.execute("SHOW work_mem").fetchone() == ("7777kB",)
        assert modes == {"worker": "force_generic_plan", "plain": "auto", "pooled": "auto"}
    finally:
        for db in dbs.values():
            db.close()
