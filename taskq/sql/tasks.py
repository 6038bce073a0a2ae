"""The statements of ``taskq/sql/tasks.sql`` for one schema: one typed function each.

Each function returns a :class:`~taskq.sql.query.Query`; nothing here touches a
connection. Identifiers are composed with ``psycopg.sql`` once per schema.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

from psycopg import sql

from taskq.core.names import events_channel, wake_channel
from taskq.core.types import Task
from taskq.sql.blocks import fragment, load, render
from taskq.sql.query import (
    Query,
    read_count,
    read_dicts,
    read_ids,
    read_nothing,
    read_scalar,
    read_task,
    read_tasks,
    statement,
)

Dicts = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Finishing:
    """The columns of a batch of finishes (see the ``finish_rows`` fragment)."""

    ids: list[str]
    leases: list[str | None]
    progress: list[str | None]
    results: list[str | None]
    agos: list[float | None] | None = None
    """Seconds since each reserved task started (None: its start is recorded)."""

    def params(self) -> dict[str, Any]:
        return {"ids": self.ids, "leases": self.leases, "progress": self.progress,
                "results": self.results,
                "agos": self.agos if self.agos is not None else [None] * len(self.ids)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Starting:
    """Reserved tasks whose handlers started (see the ``start_rows`` fragment)."""

    ids: list[str]
    leases: list[str | None]
    agos: list[float]

    def params(self) -> dict[str, Any]:
        return {"start_ids": self.ids, "start_leases": self.leases, "start_agos": self.agos}


@dataclass(frozen=True, slots=True)
class Exchanged:
    """What a worker's round trip did: the ids it finished and recorded as started,
    and the tasks it reserved (their attempt not charged until they start)."""

    done: frozenset[str]
    started: frozenset[str]
    claimed: list[Task]


def read_exchanged(names: Sequence[str], rows: list[tuple[Any, ...]]) -> Exchanged:
    if not rows:
        return Exchanged(frozenset(), frozenset(), [])
    done = frozenset(rows[0][0] or ())
    started = frozenset(rows[0][1] or ())
    i_id = names.index("id")
    claimed = read_tasks(names, [r for r in rows if r[i_id] is not None])
    return Exchanged(done, started, claimed)


class TaskStatements:
    """``tasks.sql`` rendered for ``schema``."""

    FILE = "tasks.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = wake_channel(schema)
        self.events = events_channel(schema)
        self.table = sql.Identifier(schema, "tasks")
        blocks = load(self.FILE)
        self._parts: dict[str, sql.Composable] = {
            "tasks": self.table,
            "groups": sql.Identifier(schema, "groups"),
            "workers": sql.Identifier(schema, "workers"),
            "claim_any": sql.Identifier(schema, "claim_any"),
            "claim_many": sql.Identifier(schema, "claim_many"),
            "ref_columns": sql.SQL(""),
            "ref_select": sql.SQL(""),
        }
        names = dict(self._parts)  # fragments may hold identifiers, not other fragments
        for b in blocks.values():
            if b.fragment and b.name != "history":
                self._parts[b.name] = fragment(render(b.text, **names))
        history = blocks["history"].text
        self._parts["history_of_v"] = fragment(render(history, entry=sql.SQL("v.entry")))
        self._parts["history_of_why"] = fragment(
            render(history, entry=sql.SQL(
                "jsonb_build_object('kind', CASE WHEN why.charge THEN 'rescue' "
                "ELSE 'unstarted' END, 'message', why.message)"))
        )  # fmt: skip
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, **self._parts) for b in blocks.values() if not b.fragment
        }
        self._enqueue_template = blocks["enqueue"].text
        self._enqueue_by_refs: dict[tuple[str, ...], LiteralString] = {(): self._text["enqueue"]}
        self._lock = threading.Lock()

    def _q(self, name: str, params: dict[str, Any], read: Any, **about: str) -> Query[Any]:
        return Query(f"tasks.{name}", self._text[name], params, read, about)

    def _changes(self, name: str, params: dict[str, Any], read: Any) -> Query[Any]:
        params["events"] = self.events
        params["channel"] = self.channel
        return self._q(name, params, read)

    # ---- writes ------------------------------------------------------------------------

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def enqueue(
        self, rows_json: str, ref_columns: tuple[str, ...], queue: str
    ) -> Query[list[Task]]:
        """Insert the rows of ``rows_json`` (a JSON array); returns them in order.
        ``ref_columns`` are the reference columns the rows set (already checked)."""
        text = self._enqueue_by_refs.get(ref_columns)
        if text is None:
            idents = [sql.Identifier(c) for c in ref_columns]
            parts = dict(self._parts)
            parts["ref_columns"] = sql.SQL("").join(sql.SQL(", ") + i for i in idents)
            parts["ref_select"] = sql.SQL("").join(sql.SQL(", r.") + i for i in idents)
            text = render(self._enqueue_template, **parts)
            with self._lock:
                self._enqueue_by_refs[ref_columns] = text
        params = {"rows": rows_json, "channel": self.channel}
        about = {"queue": queue}
        if ref_columns:
            about |= {"references": ", ".join(ref_columns), "table": f"{self.schema}.tasks"}
        return Query("tasks.enqueue", text, params, read_tasks, about)

    @statement
    def dequeue_any(self, limit: int, worker_id: str | None) -> Query[list[Task]]:
        return self._q("dequeue_any", {"limit": limit, "worker_id": worker_id}, read_tasks)

    @statement
    def dequeue_one(self, queue: str, limit: int, worker_id: str | None) -> Query[list[Task]]:
        params = {"queue": queue, "limit": limit, "worker_id": worker_id, "charge": True}
        return self._q("dequeue_one", params, read_tasks)

    @statement
    def dequeue_many(
        self, queues: Sequence[str], limit: int, worker_id: str | None
    ) -> Query[list[Task]]:
        params = {"queues": list(queues), "limit": limit, "worker_id": worker_id}
        return self._q("dequeue_many", params, read_tasks)

    def dequeue(
        self, queues: Sequence[str], limit: int, worker_id: str | None
    ) -> Query[list[Task]]:
        """The claim for ``queues`` (any queue when empty)."""
        if not queues:
            return self.dequeue_any(limit, worker_id)
        if len(queues) == 1:
            return self.dequeue_one(queues[0], limit, worker_id)
        return self.dequeue_many(queues, limit, worker_id)

    @statement
    def heartbeat(
        self, ids: list[str], leases: list[str | None], progress: list[str | None]
    ) -> Query[set[str]]:
        return self._changes("heartbeat", {"ids": ids, "leases": leases, "progress": progress},
                             read_ids)  # fmt: skip

    @statement
    def finish(self, finishing: Finishing) -> Query[Dicts]:
        return self._changes("finish", finishing.params(), read_dicts)

    @statement
    def exchange_one(
        self, finishing: Finishing, starting: Starting, queue: str, limit: int,
        worker_id: str | None, charge: bool = False,
    ) -> Query[Exchanged]:  # fmt: skip
        params = {**finishing.params(), **starting.params(), "queue": queue, "limit": limit,
                  "worker_id": worker_id, "charge": charge}  # fmt: skip
        return self._changes("exchange_one", params, read_exchanged)

    @statement
    def exchange_many(
        self, finishing: Finishing, starting: Starting, queues: Sequence[str], limit: int,
        worker_id: str | None, charge: bool = False,
    ) -> Query[Exchanged]:  # fmt: skip
        params = {**finishing.params(), **starting.params(), "queues": list(queues),
                  "limit": limit, "worker_id": worker_id, "charge": charge}  # fmt: skip
        return self._changes("exchange_many", params, read_exchanged)

    @statement
    def exchange_any(
        self, finishing: Finishing, starting: Starting, limit: int, worker_id: str | None,
        charge: bool = False,
    ) -> Query[Exchanged]:  # fmt: skip
        params = {**finishing.params(), **starting.params(), "limit": limit,
                  "worker_id": worker_id, "charge": charge}  # fmt: skip
        return self._changes("exchange_any", params, read_exchanged)

    def exchange(
        self,
        finishing: Finishing,
        starting: Starting,
        queues: Sequence[str],
        limit: int,
        worker_id: str | None,
        charge: bool = False,
    ) -> Query[Exchanged]:
        """A worker's round trip: finish plain tasks, record starts, reserve up to
        ``limit`` tasks of ``queues`` (any when empty; ``charge``: claimed and charged at
        once), in one statement."""
        if not queues:
            return self.exchange_any(finishing, starting, limit, worker_id, charge)
        if len(queues) == 1:
            return self.exchange_one(finishing, starting, queues[0], limit, worker_id, charge)
        return self.exchange_many(finishing, starting, queues, limit, worker_id, charge)

    @statement
    def fail(
        self,
        ids: list[str],
        leases: list[str | None],
        progress: list[str | None],
        errors: list[str | None],
        finals: list[bool],
        entries: list[str],
        agos: list[float | None] | None = None,
    ) -> Query[Dicts]:
        """``entries``: each failure's history entry as JSON (kind, type, message,
        traceback); the statement adds the attempt, the time and the worker."""
        params = {"ids": ids, "leases": leases, "progress": progress, "errors": errors,
                  "finals": finals, "entries": entries,
                  "agos": agos if agos is not None else [None] * len(ids)}  # fmt: skip
        return self._changes("fail", params, read_dicts)

    @statement
    def release(self, ids: list[str], leases: list[str | None]) -> Query[set[str]]:
        return self._changes("release", {"ids": ids, "leases": leases}, read_ids)

    @statement
    def make_due(self, ids: Sequence[str]) -> Query[set[str]]:
        """Waiting tasks of ``ids`` made runnable now; returns the ids changed."""
        return self._changes("make_due", {"ids": list(ids)}, read_ids)

    @statement
    def diagnose(self, ids: Sequence[str]) -> Query[Dicts]:
        return self._q("diagnose", {"ids": list(ids)}, read_dicts)

    @statement
    def rescue(
        self,
        worker_stale: float,
        limit: int,
        ids: Sequence[str] | None = None,
        now: dt.datetime | None = None,
    ) -> Query[Dicts]:
        params = {"worker_stale": worker_stale, "limit": limit, "now": now,
                  "ids": None if ids is None else list(ids)}  # fmt: skip
        return self._changes("rescue", params, read_dicts)

    @statement
    def stale(
        self, worker_stale: float, limit: int, now: dt.datetime | None = None
    ) -> Query[set[str]]:
        params = {"worker_stale": worker_stale, "limit": limit, "now": now}
        return self._q("stale", params, read_ids)

    @statement
    def cancel(self, task_id: str) -> Query[Task | None]:
        return self._changes("cancel", {"id": task_id}, read_task)

    @statement
    def cancel_chain_rest(self, chain_id: str, after_index: int, error: str) -> Query[Dicts]:
        params = {"chain_id": chain_id, "after_index": after_index, "error": error}
        return self._changes("cancel_chain_rest", params, read_dicts)

    @statement
    def release_chain_next(self, task_id: str, result_json: str | None) -> Query[set[str]]:
        return self._changes("release_chain_next", {"id": task_id, "result": result_json},
                             read_ids)  # fmt: skip

    @statement
    def retry(self, task_id: str) -> Query[Task | None]:
        return self._changes("retry", {"id": task_id}, read_task)

    @statement
    def delete(self, task_id: str) -> Query[int]:
        return self._q("delete", {"id": task_id}, read_count)

    @statement
    def purge(
        self,
        older_than: float,
        limit: int,
        queue: str | None = None,
        now: dt.datetime | None = None,
    ) -> Query[int]:
        params = {"older_than": older_than, "limit": limit, "queue": queue, "now": now}
        return self._q("purge", params, read_count)

    @statement
    def group_create(self, group_id: str, on_complete: str | None) -> Query[None]:
        return self._q("group_create", {"id": group_id, "on_complete": on_complete},
                       read_nothing)  # fmt: skip

    @statement
    def group_lock(self, group_ids: Sequence[str]) -> Query[None]:
        return self._q("group_lock", {"ids": list(group_ids)}, read_nothing)

    @statement
    def group_complete(self, group_id: str) -> Query[Any]:
        """The group's follow-up request (JSON) if this completed it, else None; a
        group completed without a follow-up reads as an empty dict."""
        return self._q("group_complete", {"id": group_id}, _read_completed)

    # ---- reads -------------------------------------------------------------------------

    @statement
    def get(self, task_id: str) -> Query[Task | None]:
        return self._q("get", {"id": task_id}, read_task)

    @statement
    def count_tasks(
        self,
        *,
        queue: str | None = None,
        statuses: Sequence[str] | None = None,
        type: str | None = None,
    ) -> Query[int]:
        params = {"queue": queue, "statuses": None if statuses is None else list(statuses),
                  "type": type}  # fmt: skip
        return self._q("count_tasks", params, read_scalar)

    @statement
    def count_purgeable(
        self, older_than: float, queue: str | None = None, now: dt.datetime | None = None
    ) -> Query[int]:
        params = {"older_than": older_than, "queue": queue, "now": now}
        return self._q("count_purgeable", params, read_scalar)

    @statement
    def ids_with_prefix(self, prefix: str, limit: int = 2) -> Query[list[str]]:
        """Task ids starting with ``prefix`` (lowercase hex digits, no hyphens, at most
        32), in id order, at most ``limit``."""
        if not 0 < len(prefix) <= 32 or prefix.strip("0123456789abcdef"):
            raise ValueError(f"a task id prefix is up to 32 hex digits, got {prefix!r}")
        low = prefix.ljust(32, "0")
        high = prefix.ljust(32, "f")
        return self._q("ids_with_prefix", {"low": low, "high": high, "limit": limit},
                       _read_id_list)  # fmt: skip

    @statement
    def chain_members(self, chain_id: str) -> Query[list[Task]]:
        return self._q("chain_members", {"id": chain_id}, read_tasks)

    @statement
    def group_members(self, group_id: str) -> Query[list[Task]]:
        return self._q("group_members", {"id": group_id}, read_tasks)


def _read_completed(names: Sequence[str], rows: list[tuple[Any, ...]]) -> Any:
    if not rows:
        return None
    value = read_scalar(names, rows)
    return {} if value is None else value


def _read_id_list(names: Sequence[str], rows: list[tuple[Any, ...]]) -> list[str]:
    return [str(r[0]) for r in rows]
