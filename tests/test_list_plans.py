"""Listing plans: every listing shape (no filter, a status, several, a queue, a type,
their combinations, a page deep in the table) reads about one page of rows from an
index in listing order, never the whole table, whatever the planner's statistics say.

The table holds ROWS tasks, mostly finished, in queues q0..q4 and a small queue
``rare``, of types t0..t2, with a few failed, cancelled, waiting and running ones;
created_at repeats in runs of ten, so the keyset's seq tie-break is exercised.

- ``stale``: ANALYZE ran while the table was empty, then the rows came;
- ``fresh``: ANALYZE after the rows came.

The listing runs inside the schema's ``list_tasks`` function (migration 0007), whose
plan EXPLAIN cannot show: each test EXPLAINs (ANALYZE, FORMAT JSON) the query that
``list_query`` writes for the same arguments (values as literals: every call is
planned for its values), under the planner settings ``list_tasks`` runs it with, and
counts the rows its scans read; ``test_the_function_reads_what_its_query_reads``
checks the function itself by the indexes' cumulative statistics. Never on time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskq
from taskq.sql import statements

pytestmark = pytest.mark.faces("sync")

ROWS = 200_000
LIMIT = 100

PAGE = LIMIT + 5
"""The most rows a listing of one page may read: the page and one row per status
branch (the Merge Append asks each branch for one row before it knows the order)."""

QUEUE_AND_TYPE = 8 * LIMIT

# shape: (list_tasks arguments, the most rows its plan may read). No index leads with
# both a queue and a type: each status branch reads the queue's rows of its status
# until it has a page of that type (about three pages here, the type being one in
# three), and all of them where the queue has none of that type in that status (a few
# hundred here), hence QUEUE_AND_TYPE. user_id and title have no index either.
SHAPES: dict[str, tuple[dict[str, Any], int]] = {
    "default": ({}, PAGE),
    "finished": ({"statuses": ["finished"]}, PAGE),
    "failed": ({"statuses": ["failed"]}, PAGE),
    "cancelled": ({"statuses": ["cancelled"]}, PAGE),
    "waiting": ({"statuses": ["waiting"]}, PAGE),
    "running": ({"statuses": ["running"]}, PAGE),
    "waiting-or-running": ({"statuses": ["waiting", "running"]}, PAGE),
    "failed-or-cancelled": ({"statuses": ["failed", "cancelled"]}, PAGE),
    "queue": ({"queue": "q1"}, PAGE),
    "rare-queue": ({"queue": "rare"}, PAGE),
    "type": ({"type": "t2"}, PAGE),
    "queue-failed": ({"queue": "q1", "statuses": ["failed"]}, PAGE),
    "type-cancelled": ({"type": "t1", "statuses": ["cancelled"]}, PAGE),
    "queue-type": ({"queue": "q2", "type": "t1"}, QUEUE_AND_TYPE),
    "queue-type-finished": ({"queue": "q3", "type": "t0", "statuses": ["finished"]},
                            QUEUE_AND_TYPE),
}  # fmt: skip


@pytest.fixture(scope="module", params=["stale", "fresh"])
def loaded(
    request: pytest.FixtureRequest, database_url: str, schema: str
) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        t = sql.Identifier(schema, "tasks")
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(t))
        if request.param == "stale":
            conn.execute(sql.SQL("ANALYZE {}").format(t))  # the statistics of an empty table
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, status, attempts, user_id, created_at, run_at,"
                " started_at, finished_at)"
                " SELECT CASE WHEN i %% 400 = 7 THEN 'rare' ELSE 'q' || (i %% 5) END,"
                " 't' || (i / 5 %% 3),"
                " CASE WHEN i > %(n)s - 2000 THEN 'waiting' WHEN i %% 50 = 3 THEN 'failed'"
                "  WHEN i %% 70 = 4 THEN 'cancelled' ELSE 'finished' END,"
                " 1, 'u' || (i %% 2), ts, ts, ts, ts"
                " FROM (SELECT i, timestamptz '2026-11-01' + (i / 10) * interval '1 s' AS ts"
                "       FROM generate_series(1, %(n)s) AS i) AS g"
            ).format(t),
            {"n": ROWS},
        )
        conn.execute(
            sql.SQL(
                "UPDATE {} SET status = 'running', worker_id = gen_random_uuid()"
                " WHERE seq IN (SELECT seq FROM {} WHERE status = 'waiting' ORDER BY seq"
                " LIMIT 30)"
            ).format(t, t)
        )
        if request.param == "fresh":
            conn.execute(sql.SQL("ANALYZE {}").format(t))
        yield conn


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


SETTINGS = ("enable_seqscan", "enable_bitmapscan", "enable_sort", "enable_incremental_sort", "jit")


def settings_of_list_tasks(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    row = conn.execute(
        "SELECT p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s AND p.proname = 'list_tasks'",
        (schema,),
    ).fetchone()
    assert row is not None and row[0], "list_tasks runs with planner settings of its own"
    return dict(item.split("=", 1) for item in row[0])


def listing_query(conn: psycopg.Connection[Any], schema: str, args: dict[str, Any]) -> str:
    """The query ``list_tasks`` runs for ``args`` (list_tasks' keyword arguments)."""
    row = conn.execute(
        sql.SQL(
            "SELECT {}.list_query({}::regclass, %(statuses)s, %(queue)s, %(type)s,"
            " %(user_id)s, %(title)s, %(before)s, %(before_seq)s, %(limit)s)"
        ).format(sql.Identifier(schema), sql.Literal(f'"{schema}".tasks')),
        {"statuses": None, "queue": None, "type": None, "user_id": None, "title": None,
         "before": None, "before_seq": None, "limit": LIMIT, **args},
    ).fetchone()  # fmt: skip
    assert row is not None
    return str(row[0])


def explain(conn: psycopg.Connection[Any], schema: str, args: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, FORMAT JSON) of the listing for ``args``, planned as
    ``list_tasks`` plans it."""
    query = listing_query(conn, schema, args)
    settings = settings_of_list_tasks(conn, schema)
    assert set(SETTINGS) <= set(settings), settings
    with conn.transaction(force_rollback=True):
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        found = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + sql.SQL(query)).fetchone()  # type: ignore[arg-type]
    assert found is not None
    return found[0][0]["Plan"]  # type: ignore[no-any-return]


def rows_read(plan: dict[str, Any]) -> float:
    """Rows the plan's scans of tasks produced or dropped by a filter."""
    scans = [n for n in plan_nodes(plan) if n.get("Relation Name") == "tasks"]
    assert scans, json.dumps(plan)
    for n in scans:
        assert n["Node Type"] != "Seq Scan", json.dumps(n)[:3000]
    total: float = sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)
         + n.get("Rows Removed by Index Recheck", 0)) * n["Actual Loops"]
        for n in scans
    )  # fmt: skip
    return total


def last_of_a_deep_page(conn: psycopg.Connection[Any], schema: str, args: dict[str, Any]) -> Any:
    """The task a page about half-way through the listing would end with."""
    with taskq.Tasks(conn, schema=schema) as t:
        page = t.list(limit=1, **_api(args), created_before=_middle(conn, schema))
    return page[0] if page else None


def _api(args: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in args.items() if k != "statuses"}
    if "statuses" in args:
        out["status"] = args["statuses"]
    return out


def _middle(conn: psycopg.Connection[Any], schema: str) -> Any:
    t = sql.Identifier(schema, "tasks")
    row = conn.execute(
        sql.SQL("SELECT created_at FROM {} WHERE seq = %s").format(t), (ROWS // 2,)
    ).fetchone()
    assert row is not None
    return row[0]


def deep(loaded: psycopg.Connection[Any], schema: str, args: dict[str, Any]) -> dict[str, Any]:
    last = last_of_a_deep_page(loaded, schema, args)
    if last is None:
        pytest.skip("nothing half-way through the table")
    return {"before": last.created_at, "before_seq": last.seq}


@pytest.mark.parametrize("page", ["first", "deep"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_listing_reads_about_one_page_from_an_index(
    loaded: psycopg.Connection[Any], schema: str, shape: str, page: str
) -> None:
    args, most = SHAPES[shape]
    extra = deep(loaded, schema, args) if page == "deep" else {}
    plan = explain(loaded, schema, {**args, **extra})
    read = rows_read(plan)
    assert read <= most, (shape, read, json.dumps(plan)[:4000])
    assert plan["Actual Rows"] <= LIMIT
    assert not [n for n in plan_nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]


def test_created_before_reads_about_one_page(loaded: psycopg.Connection[Any], schema: str) -> None:
    read = rows_read(explain(loaded, schema, {"before": _middle(loaded, schema)}))
    assert read <= LIMIT + 5, read


def index_reads(conn: psycopg.Connection[Any], schema: str) -> tuple[int, int]:
    """Index entries read from tasks' indexes, and sequential scans of tasks, so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT sum(i.idx_tup_read), max(t.seq_scan) FROM pg_stat_user_indexes i"
        " JOIN pg_stat_user_tables t ON t.relid = i.relid"
        " WHERE i.schemaname = %s AND i.relname = 'tasks'",
        (schema,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("shape", ["default", "finished", "failed", "queue", "type", "queue-type"])
def test_the_function_reads_what_its_query_reads(
    loaded: psycopg.Connection[Any], schema: str, shape: str
) -> None:
    args, most = SHAPES[shape]
    q = statements(schema).listing.list_tasks(limit=LIMIT, **args)
    before, seqs = index_reads(loaded, schema)
    rows = loaded.execute(q.text, q.params).fetchall()
    after, seqs_after = index_reads(loaded, schema)
    assert len(rows) == LIMIT
    assert seqs_after == seqs
    assert after - before <= most, (shape, after - before)


@pytest.mark.parametrize(
    "args", [{}, {"queue": "rare"}, {"queue": "q1", "statuses": ["failed", "cancelled"]},
             {"type": "t1", "statuses": ["waiting", "running"]}],
    ids=["all", "rare-queue", "queue-two-statuses", "type-live"],
)  # fmt: skip
def test_paging_sees_every_matching_task_once_in_listing_order(
    loaded: psycopg.Connection[Any], schema: str, args: dict[str, Any]
) -> None:
    t = sql.Identifier(schema, "tasks")
    where = [sql.SQL("true")]
    if "queue" in args:
        where.append(sql.SQL("queue = {}").format(sql.Literal(args["queue"])))
    if "type" in args:
        where.append(sql.SQL("type = {}").format(sql.Literal(args["type"])))
    if "statuses" in args:
        where.append(sql.SQL("status = ANY({})").format(sql.Literal(args["statuses"])))
    expected = [
        str(r[0])
        for r in loaded.execute(
            sql.SQL("SELECT id FROM {} WHERE {} ORDER BY created_at DESC, seq DESC LIMIT 3000")
            .format(t, sql.SQL(" AND ").join(where))
        )
    ]  # fmt: skip
    seen: list[str] = []
    with taskq.Tasks(loaded, schema=schema) as tasks:
        before = None
        while len(seen) < len(expected):
            page = tasks.list(limit=337, before=before, **_api(args))
            if not page:
                break
            seen += [x.id for x in page]
            before = page[-1]
    assert seen[: len(expected)] == expected


def test_an_empty_or_repeated_status_list(loaded: psycopg.Connection[Any], schema: str) -> None:
    with taskq.Tasks(loaded, schema=schema) as tasks:
        assert tasks.list(status=[], limit=10) == []
        twice = tasks.list(status=["failed", "failed"], limit=50)
        assert len({x.id for x in twice}) == len(twice) == 50
