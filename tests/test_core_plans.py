"""Query plans: claiming reads the partial dequeue indexes, never the whole table,
and never walks one queue's backlog to reach another queue's tasks.

The table gets thousands of finished rows, a large backlog in a busy queue and a few
tasks in quiet queues, then ANALYZE, so the planner has real statistics; no planner
setting is forced (no enable_seqscan=off). Both the custom plan (what EXPLAIN shows
for given values) and the generic plan (what a prepared statement may switch to
after a few runs) are checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskq.queries import Queries

FINISHED_ROWS = 20_000
BUSY_BACKLOG = 5_000

# variant -> (parameters, the indexes the claim may read)
VARIANTS = {
    "one-quiet": ("one", {"queue": "q1"}, {"tasks_dequeue_idx"}),
    "one-busy": ("one", {"queue": "busy"}, {"tasks_dequeue_idx"}),
    "many": ("many", {"queues": ["q1", "q2"]}, {"tasks_dequeue_idx", "tasks_dequeue_any_idx"}),
    "any": ("any", {}, {"tasks_dequeue_any_idx"}),
}
PARAM_TYPES = {"queue": "text", "queues": "text[]", "limit": "bigint", "worker_id": "uuid"}


@pytest.fixture(scope="module")
def loaded(database_url: str, schema: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        tasks = sql.Identifier(schema, "tasks")
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type, status, attempts, started_at, finished_at)"
                " SELECT 'q' || (i %% 5), 't', 'finished', 1, now(), now()"
                " FROM generate_series(1, %s) AS i"
            ).format(tasks),
            (FINISHED_ROWS,),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type) SELECT 'busy', 't' FROM generate_series(1, %s)"
            ).format(tasks),
            (BUSY_BACKLOG,),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (queue, type) SELECT 'q' || (i % 2 + 1), 't'"
                " FROM generate_series(1, 40) AS i"
            ).format(tasks)
        )
        conn.execute(sql.SQL("ANALYZE {}").format(tasks))
        yield conn, schema


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def claim_subplan(plan: dict[str, Any]) -> dict[str, Any]:
    """The CTE that picks the rows to claim (``next``)."""
    for node in plan_nodes(plan):
        if node.get("Subplan Name") == "CTE next":
            return node
    raise AssertionError(f"no CTE next in plan: {json.dumps(plan)[:2000]}")


def check_plan(plan: dict[str, Any], allowed: set[str], *, whole: bool = True) -> None:
    """The claim (CTE next) reads only ``allowed`` indexes; with ``whole``, no part of
    the plan scans the tasks table sequentially."""
    picked = claim_subplan(plan)
    indexes = {n.get("Index Name") for n in plan_nodes(picked) if n.get("Index Name")}
    assert indexes and indexes <= allowed, (indexes, json.dumps(picked))
    scope = plan if whole else picked
    seq = [n for n in plan_nodes(scope) if n["Node Type"] == "Seq Scan"]
    assert not seq, json.dumps(scope)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dequeue_uses_the_partial_index(
    loaded: tuple[psycopg.Connection[Any], str], variant: str
) -> None:
    conn, schema = loaded
    name, params, allowed = VARIANTS[variant]
    query = Queries(schema)._dequeue[name]
    row = conn.execute(
        "EXPLAIN (FORMAT JSON, VERBOSE) " + query, {**params, "limit": 10, "worker_id": None}
    ).fetchone()
    assert row is not None
    check_plan(row[0][0]["Plan"], allowed)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dequeue_generic_plan_uses_the_partial_index(
    loaded: tuple[psycopg.Connection[Any], str], variant: str
) -> None:
    conn, schema = loaded
    name, params, allowed = VARIANTS[variant]
    query = Queries(schema)._dequeue[name]
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
    for i, name in enumerate(names, 1):
        query = query.replace(f"%({name})s", f"${i}")
    types = ", ".join(PARAM_TYPES[n] for n in names)
    values = {**params, "limit": 10, "worker_id": None}
    stmt = f"dequeue_{name}"
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE {stmt} ({types}) AS {query}")
        try:
            # EXECUTE is a utility statement: its arguments are literals, not parameters
            args = sql.SQL(", ").join(sql.Literal(values[n]) for n in names)
            row = conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {} ({})").format(
                    sql.Identifier(stmt), args
                )
            ).fetchone()
        finally:
            conn.execute(f"DEALLOCATE {stmt}")
    assert row is not None
    # Only the claim itself: with LIMIT unknown the planner assumes a tenth of the
    # backlog is claimed and may hash-join the UPDATE against the table, a costed
    # choice that the default plan_cache_mode keeps only where it is cheaper.
    check_plan(row[0][0]["Plan"], allowed, whole=False)


def explain_analyze(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    """EXPLAIN ANALYZE runs the claim: do it in a transaction that is rolled back."""
    with conn.transaction(force_rollback=True):
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    return row[0][0]["Plan"]


@pytest.mark.parametrize("variant", ["one-quiet", "one-busy", "any"])
def test_claiming_reads_only_the_rows_it_claims(
    loaded: tuple[psycopg.Connection[Any], str], variant: str
) -> None:
    # A quiet queue's first task is found without walking the busy queue's backlog,
    # and the index order is the claiming order, so no Sort of the backlog either.
    # (Several queues, "many", may still filter through other queues' backlogs.)
    conn, schema = loaded
    name, params, _ = VARIANTS[variant]
    plan = explain_analyze(
        conn, Queries(schema)._dequeue[name], {**params, "limit": 10, "worker_id": None}
    )
    picked = claim_subplan(plan)
    scans = [n for n in plan_nodes(picked) if n.get("Relation Name") == "tasks"]
    assert len(scans) == 1, json.dumps(picked)
    assert scans[0].get("Rows Removed by Filter", 0) == 0, json.dumps(picked)
    assert scans[0]["Actual Rows"] <= 10, json.dumps(picked)
    assert not [n for n in plan_nodes(picked) if n["Node Type"] == "Sort"], json.dumps(picked)
