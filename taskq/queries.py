"""The one module that executes runtime SQL.

Queries live in ``taskq/sql/*.sql`` as named blocks. They are composed once per
schema with ``psycopg.sql`` (identifiers are never formatted in by hand) and rendered
to plain strings, so psycopg prepares each one server-side after a few uses.
Database errors become taskq errors here, by constraint name.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.rows import RowMaker

from taskq.columns import SCHEDULE_BUILTIN_COLUMNS, TASK_BUILTIN_COLUMNS
from taskq.errors import (
    InvalidReference,
    InvalidTask,
    LeaseLost,
    TaskAlreadyExists,
    TaskCancelled,
    TaskFinished,
    TaskNotFound,
    TaskNotRunning,
    TaskqError,
)
from taskq.types import Task, TaskStatus

Conn = psycopg.Connection[Any]

_BLOCK = re.compile(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", re.S | re.M)


@cache
def load(filename: str) -> dict[str, str]:
    """The named blocks of ``taskq/sql/<filename>``, comments stripped."""
    text = resources.files("taskq").joinpath("sql", filename).read_text("utf-8")
    blocks: dict[str, str] = {}
    for name, body in _BLOCK.findall(text):
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        blocks[name] = "\n".join(lines).strip().rstrip(";")
    return blocks


def render(template: str, **parts: sql.Composable) -> str:
    """``template`` with its ``{name}`` parts composed in, as a query string."""
    composed = sql.SQL(template).format(**parts)
    return composed.as_string(None)


def _uuid_str(v: Any) -> str | None:
    return None if v is None else str(v)


def column_names(cursor: Any) -> list[str]:
    """The result's column names, read from the libpq result itself: building
    ``cursor.description`` creates a Column object per column on every query, which
    cost more than the rest of a 30-column claim's Python side."""
    res = cursor.pgresult
    if res is None:
        return []
    enc = cursor.connection.info.encoding
    return [(res.fname(i) or b"").decode(enc) for i in range(res.nfields)]


def task_row_factory(cursor: Any) -> RowMaker[Task]:
    """Rows of ``tasks`` (any column subset containing the Task fields) as Task."""
    names = column_names(cursor)
    refs = [i for i, n in enumerate(names) if n not in TASK_BUILTIN_COLUMNS and n[0] != "_"]
    idx = {n: i for i, n in enumerate(names)}

    def make(values: Sequence[Any]) -> Task:
        def g(name: str) -> Any:
            i = idx.get(name)
            return None if i is None else values[i]

        return Task(
            id=str(values[idx["id"]]),
            queue=g("queue"),
            type=g("type"),
            spec=g("spec"),
            status=TaskStatus(g("status")),
            progress=g("progress"),
            result=g("result"),
            error=g("error"),
            references={names[i]: values[i] for i in refs if values[i] is not None},
            priority=g("priority"),
            attempts=g("attempts"),
            max_attempts=g("max_attempts"),
            heartbeat_timeout=g("heartbeat_timeout"),
            timeout=g("timeout"),
            run_at=g("run_at"),
            created_at=g("created_at"),
            updated_at=g("updated_at"),
            started_at=g("started_at"),
            finished_at=g("finished_at"),
            last_heartbeat_at=g("last_heartbeat_at"),
            unique_key=g("unique_key"),
            title=g("title"),
            user_id=g("user_id"),
            lease=_uuid_str(g("lease")),
            worker_id=_uuid_str(g("worker_id")),
            chain_id=_uuid_str(g("chain_id")),
            group_id=_uuid_str(g("group_id")),
            previous_result=g("previous_result"),
            on_success=g("on_success"),
        )

    return make


def dict_row_factory(cursor: Any) -> RowMaker[dict[str, Any]]:
    names = column_names(cursor)

    def make(values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(names, values, strict=True))

    return make


def _key_from_detail(detail: str | None) -> str:
    m = re.search(r"\)=\((.*)\) already exists", detail or "")
    return m.group(1) if m else "?"


@contextmanager
def translate_errors(queue: str = "") -> Iterator[None]:
    """Turn database errors about taskq's constraints into taskq errors."""
    try:
        yield
    except pgerr.UniqueViolation as e:
        if e.diag.constraint_name == "tasks_unique_key_idx":
            raise TaskAlreadyExists(queue, _key_from_detail(e.diag.message_detail)) from None
        raise
    except pgerr.CheckViolation as e:
        raise InvalidTask(
            f"refused by the database (constraint {e.diag.constraint_name}): "
            f"{e.diag.message_primary}"
        ) from None
    except pgerr.ForeignKeyViolation as e:
        raise InvalidReference(
            e.diag.column_name or str(e.diag.constraint_name),
            str(e.diag.table_name),
            e.diag.message_detail or e.diag.message_primary or "foreign key violation",
        ) from None
    except (pgerr.UntranslatableCharacter, pgerr.CharacterNotInRepertoire) as e:
        raise InvalidTask(
            f"a value cannot be stored by PostgreSQL: {e.diag.message_primary}"
        ) from None


EXACT_FINAL_COUNTS_BYTES = 64 * 1024 * 1024
"""Up to this table size a scrape also counts finished, failed and cancelled tasks per
queue exactly; above it only the planner's estimate per status is reported."""


class Queries:
    """The runtime SQL of one schema, rendered once, with a typed function per query."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = f"taskq_{schema}"
        """NOTIFY channel: payload is a queue name that got runnable work."""
        self.events = f"taskq_{schema}_events"
        """NOTIFY channel: payload is comma-separated ids of tasks that changed."""
        self.tasks_table = sql.Identifier(schema, "tasks")
        self.schedules_table = sql.Identifier(schema, "schedules")
        self.workers_table = sql.Identifier(schema, "workers")
        self.groups_table = sql.Identifier(schema, "groups")
        t = load("tasks.sql")
        w = load("workers.sql")
        parts = {
            "tasks": self.tasks_table,
            "workers": self.workers_table,
            "groups": self.groups_table,
        }
        self._tasks = {
            name: render(text, queue_filter=sql.SQL(""), queue_order=sql.SQL(""),
                         ref_columns=sql.SQL(""), ref_select=sql.SQL(""),
                         member_column=sql.Identifier("chain_id"), **parts)
            for name, text in t.items()
        }  # fmt: skip
        self._members = {
            "chain": self._tasks["members"],
            "group": render(t["members"], member_column=sql.Identifier("group_id"), **parts),
        }
        self._workers = {name: render(text, **parts) for name, text in w.items()}
        self._dequeue = {
            "any": self._tasks["dequeue"],
            # one queue: a range, not "=", so only tasks_dequeue_idx serves the order
            # (see the dequeue query in tasks.sql)
            "one": render(
                t["dequeue"],
                queue_filter=sql.SQL("AND queue >= %(queue)s AND queue <= %(queue)s"),
                queue_order=sql.SQL("queue, "),
                **parts,
            ),
            "many": render(
                t["dequeue"],
                queue_filter=sql.SQL("AND queue = ANY(%(queues)s)"),
                queue_order=sql.SQL(""),
                **parts,
            ),
        }
        self._purge_queue = render(
            t["purge"], queue_filter=sql.SQL("AND queue = %(queue)s"), **parts
        )
        self._enqueue_template = t["enqueue"]
        self._enqueue_by_refs: dict[tuple[str, ...], str] = {(): self._tasks["enqueue"]}
        self._columns: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    # ---- references --------------------------------------------------------------

    def table_columns(self, conn: Conn, table: str, refresh: bool = False) -> frozenset[str]:
        """The column names of ``<schema>.<table>`` (cached; reloaded on request)."""
        with self._lock:
            cols = self._columns.get(table)
        if cols is None or refresh:
            rows = conn.execute(
                "SELECT a.attname FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0"
                " AND NOT a.attisdropped",
                (self.schema, table),
            ).fetchall()
            cols = frozenset(r[0] for r in rows)
            with self._lock:
                self._columns[table] = cols
        return cols

    def check_references(self, conn: Conn, table: str, keys: Sequence[str]) -> None:
        """Refuse reference names that are built-in or not columns of the table."""
        builtin = TASK_BUILTIN_COLUMNS if table == "tasks" else SCHEDULE_BUILTIN_COLUMNS
        where = f"{self.schema}.{table}"
        for key in keys:
            if not isinstance(key, str) or not key:
                raise InvalidReference(
                    str(key), where, "a reference name must be a non-empty string"
                )
            if key in builtin:
                raise InvalidReference(key, where, "that is a built-in column, not a reference")
        if not keys:
            return
        cols = self.table_columns(conn, table)
        missing = [k for k in keys if k not in cols]
        if missing:
            cols = self.table_columns(conn, table, refresh=True)
            missing = [k for k in keys if k not in cols]
        if missing:
            raise InvalidReference(
                missing[0], where, "no such column (add it in your own migration first)"
            )

    # ---- tasks ---------------------------------------------------------------------

    def enqueue(self, conn: Conn, rows_json: str, ref_columns: tuple[str, ...]) -> list[Task]:
        """Insert the rows of ``rows_json`` (a JSON array); returns them in order."""
        query = self._enqueue_by_refs.get(ref_columns)
        if query is None:
            idents = [sql.Identifier(c) for c in ref_columns]
            query = render(
                self._enqueue_template,
                tasks=self.tasks_table,
                ref_columns=sql.SQL("").join(sql.SQL(", ") + i for i in idents),
                ref_select=sql.SQL("").join(sql.SQL(", r.") + i for i in idents),
            )
            self._enqueue_by_refs[ref_columns] = query
        with conn.cursor(row_factory=task_row_factory) as cur:
            try:
                cur.execute(query, {"rows": rows_json, "channel": self.channel})
            except pgerr.UndefinedColumn as e:
                if not ref_columns:
                    raise
                # A reference column was dropped after the cached check: forget the
                # cache, so the next enqueue reads the table's columns again.
                with self._lock:
                    self._columns.pop("tasks", None)
                m = re.search(r'column "(.*)" of relation', e.diag.message_primary or "")
                raise InvalidReference(
                    m.group(1) if m else ", ".join(ref_columns),
                    f"{self.schema}.tasks",
                    "no such column (it was dropped)",
                ) from None
            return cur.fetchall()

    def dequeue(
        self, conn: Conn, queues: Sequence[str], limit: int, worker_id: str | None
    ) -> list[Task]:
        """Claim up to ``limit`` tasks from ``queues`` (any queue when empty), in
        claiming order: highest priority, then earliest run_at, then enqueue order."""
        params: dict[str, Any] = {"limit": limit, "worker_id": worker_id}
        if not queues:
            query = self._dequeue["any"]
        elif len(queues) == 1:
            query, params["queue"] = self._dequeue["one"], queues[0]
        else:
            query, params["queues"] = self._dequeue["many"], list(queues)
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _many(self, conn: Conn, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        params.setdefault("events", self.events)
        params.setdefault("channel", self.channel)
        with conn.cursor(row_factory=dict_row_factory) as cur:
            cur.execute(self._tasks[name], params)
            return cur.fetchall()

    def heartbeat(
        self, conn: Conn, ids: list[str], leases: list[str | None], progress: list[str | None]
    ) -> set[str]:
        rows = self._many(conn, "heartbeat", {"ids": ids, "leases": leases, "progress": progress})
        return {str(r["id"]) for r in rows}

    def finish(
        self,
        conn: Conn,
        ids: list[str],
        leases: list[str | None],
        progress: list[str | None],
        results: list[str | None],
    ) -> list[dict[str, Any]]:
        return self._many(
            conn,
            "finish",
            {"ids": ids, "leases": leases, "progress": progress, "results": results},
        )

    def fail(
        self,
        conn: Conn,
        ids: list[str],
        leases: list[str | None],
        progress: list[str | None],
        errors: list[str | None],
        finals: list[bool],
    ) -> list[dict[str, Any]]:
        return self._many(
            conn,
            "fail",
            {"ids": ids, "leases": leases, "progress": progress, "errors": errors,
             "finals": finals},
        )  # fmt: skip

    def release(self, conn: Conn, ids: list[str], leases: list[str | None]) -> set[str]:
        rows = self._many(conn, "release", {"ids": ids, "leases": leases})
        return {str(r["id"]) for r in rows}

    def rescue(self, conn: Conn, worker_stale: float, limit: int = 1000) -> list[dict[str, Any]]:
        return self._many(conn, "rescue", {"worker_stale": worker_stale, "limit": limit})

    def diagnose(
        self, conn: Conn, ids: Sequence[str], leases: Sequence[str | None]
    ) -> dict[str, TaskqError]:
        """Why a guarded write to each of ``ids`` matched no row: one error per id."""
        rows = self._many(conn, "diagnose", {"ids": list(ids)})
        found = {str(r["id"]): r for r in rows}
        out: dict[str, TaskqError] = {}
        for task_id, lease in zip(ids, leases, strict=True):
            out[task_id] = error_for(task_id, lease, found.get(task_id))
        return out

    def cancel(self, conn: Conn, task_id: str) -> Task | None:
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(self._tasks["cancel"], {"id": task_id, "events": self.events})
            return cur.fetchone()

    def cancel_chain_rest(self, conn: Conn, chain_id: str, error: str) -> list[dict[str, Any]]:
        return self._many(conn, "cancel_chain_rest", {"chain_id": chain_id, "error": error})

    def release_chain_next(self, conn: Conn, task_id: str, result_json: str | None) -> None:
        self._many(conn, "release_chain_next", {"id": task_id, "result": result_json})

    def retry(self, conn: Conn, task_id: str) -> Task | None:
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(self._tasks["retry"], {"id": task_id, "channel": self.channel})
            return cur.fetchone()

    def get(self, conn: Conn, task_id: str) -> Task | None:
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(self._tasks["get"], {"id": task_id})
            return cur.fetchone()

    def get_many(self, conn: Conn, ids: Sequence[str]) -> dict[str, Task]:
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(self._tasks["get_many"], {"ids": list(ids)})
            return {t.id: t for t in cur.fetchall()}

    def delete(self, conn: Conn, task_id: str) -> bool:
        return bool(self._many(conn, "delete", {"id": task_id}))

    def purge(self, conn: Conn, before: Any, limit: int, queue: str | None = None) -> int:
        params: dict[str, Any] = {"before": before, "limit": limit}
        query = self._tasks["purge"]
        if queue is not None:
            query, params["queue"] = self._purge_queue, queue
        cur = conn.execute(query, params)
        return cur.rowcount

    def counts(
        self,
        conn: Conn,
        worker_stale: float,
        max_queues: int = 200,
        exact_bytes: int = EXACT_FINAL_COUNTS_BYTES,
    ) -> list[dict[str, Any]]:
        """The gauges of one scrape (see the ``counts`` query)."""
        params = {"stale": worker_stale, "max_queues": max_queues, "schema": self.schema,
                  "exact_bytes": exact_bytes}  # fmt: skip
        return self._many(conn, "counts", params)

    def list_tasks(
        self,
        conn: Conn,
        filters: Mapping[str, Any],
        limit: int,
        before: Any = None,
    ) -> list[Task]:
        """Tasks matching ``filters`` (column = value, lists mean any of), newest first."""
        conds: list[sql.Composable] = []
        params: dict[str, Any] = {"limit": limit}
        for i, (col, value) in enumerate(filters.items()):
            name = f"p{i}"
            if isinstance(value, list | tuple | set | frozenset):
                conds.append(
                    sql.SQL("{} = ANY({})").format(sql.Identifier(col), sql.Placeholder(name))
                )
                params[name] = [str(v) for v in value]
            else:
                conds.append(sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(name)))
                params[name] = value
        if before is not None:
            conds.append(sql.SQL("created_at < %(before)s"))
            params["before"] = before
        where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
        query = sql.SQL(
            "SELECT * FROM {} WHERE {} ORDER BY created_at DESC, seq DESC LIMIT %(limit)s"
        ).format(self.tasks_table, where)
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def members(self, conn: Conn, kind: str, member_of: str) -> list[Task]:
        """The tasks of chain or group ``member_of`` (``kind`` "chain" or "group")."""
        with conn.cursor(row_factory=task_row_factory) as cur:
            cur.execute(self._members[kind], {"id": member_of})
            return cur.fetchall()

    def group_create(self, conn: Conn, group_id: str, on_complete: str | None) -> None:
        conn.execute(
            self._tasks["group_create"],
            {"id": group_id, "on_complete": on_complete},
        )

    def group_complete(self, conn: Conn, group_ids: Sequence[str]) -> list[tuple[str, Any]]:
        """Lock the groups, then mark each complete if no member is left running.

        Returns (group id, on_complete request JSON) for each group completed now.
        """
        conn.execute(self._tasks["group_lock"], {"ids": list(group_ids)})
        done = []
        for gid in sorted(group_ids):
            row = conn.execute(self._tasks["group_complete"], {"id": gid}).fetchone()
            if row is not None:
                done.append((gid, row[0]))
        return done

    # ---- workers -------------------------------------------------------------------

    def worker(self, conn: Conn, name: str, **params: Any) -> list[dict[str, Any]]:
        with conn.cursor(row_factory=dict_row_factory) as cur:
            cur.execute(self._workers[name], params)
            return cur.fetchall() if cur.description else []


def error_for(task_id: str, lease: str | None, row: Mapping[str, Any] | None) -> TaskqError:
    """The error for a guarded write on ``task_id`` that found the row as ``row``."""
    if row is None:
        return TaskNotFound(task_id)
    status = row["status"]
    if lease is not None and _uuid_str(row["lease"]) != lease:
        return LeaseLost(task_id)
    if status == "cancelled":
        return TaskCancelled(task_id)
    if status in ("finished", "failed"):
        return TaskFinished(task_id, status)
    if status == "waiting":
        return TaskNotRunning(task_id)
    return LeaseLost(task_id)


def dumps(value: Any) -> str:
    """JSON text for a value PostgreSQL's jsonb will take (no NaN)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))
