"""The runtime SQL of ``<schema>.schedules`` (``taskq/sql/schedules.sql``), one typed
function per query. Rendered once per schema with ``psycopg.sql``, like ``queries.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import RowMaker

from taskq.queries import Conn, column_names, load, render
from taskq.types import Schedule

MAX_CHANNEL = 63
"""PostgreSQL truncates identifiers (so channel names) to 63 bytes."""


def schedules_channel(schema: str) -> str:
    """The NOTIFY channel that tells scheduler processes that schedules changed."""
    name = f"taskq_{schema}_schedules"
    if len(name.encode()) <= MAX_CHANNEL:
        return name
    digest = hashlib.sha1(schema.encode()).hexdigest()[:12]  # noqa: S324 - a name, not a secret
    return f"taskq_{digest}_schedules"


Row = tuple[Schedule, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Identity:
    """What names a schedule: queue, type, and its references (JSON, and their names)."""

    queue: str
    type: str
    refs_json: str
    ref_names: tuple[str, ...]


def schedule_row_factory(cursor: Any) -> RowMaker[Row]:
    """Rows of ``schedules`` as (Schedule, {extra column: value}); the extras are the
    statement's own columns, named with a leading underscore (``_created``, ``_now``).
    References come from ``reference_key``."""
    names = column_names(cursor)
    idx = {n: i for i, n in enumerate(names)}
    extras = [(n, i) for i, n in enumerate(names) if n.startswith("_")]

    def make(values: Sequence[Any]) -> Row:
        def g(name: str) -> Any:
            return values[idx[name]]

        schedule = Schedule(
            id=str(g("id")),
            queue=g("queue"),
            type=g("type"),
            spec=g("spec"),
            cron_schedule=g("cron_schedule"),
            timezone=g("timezone"),
            references=dict(g("reference_key") or {}),
            next_run_at=g("next_run_at"),
            last_run_at=g("last_run_at"),
            enabled=g("enabled"),
            skip_missed=g("skip_missed"),
            created_at=g("created_at"),
            updated_at=g("updated_at"),
        )
        return schedule, {n: values[i] for n, i in extras}

    return make


class ScheduleQueries:
    """The schedules SQL of one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = schedules_channel(schema)
        self.table = sql.Identifier(schema, "schedules")
        self._text = load("schedules.sql")
        key = self._text["reference_key"]
        given = sql.SQL(render(self._text["given_record"], schedules=self.table))
        self._key_of_refs = sql.SQL(render(key, record=given))
        self._key_of_r = sql.SQL(render(key, record=sql.SQL("r")))
        self._q = {
            name: render(text, schedules=self.table, reference_key=self._key_of_refs)
            for name, text in self._text.items()
            if name not in ("reference_key", "given_record", "upsert")
        }
        self._upserts: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()

    def _upsert_query(self, ref_columns: tuple[str, ...]) -> str:
        with self._lock:
            query = self._upserts.get(ref_columns)
        if query is None:
            idents = [sql.Identifier(c) for c in ref_columns]
            query = render(
                self._text["upsert"],
                schedules=self.table,
                reference_key=self._key_of_r,
                ref_columns=sql.SQL("").join(sql.SQL(", ") + i for i in idents),
                ref_select=sql.SQL("").join(sql.SQL(", r.") + i for i in idents),
            )
            with self._lock:
                self._upserts[ref_columns] = query
        return query

    def statement_timeout(self, conn: Conn, ms: int) -> None:
        """Bound the statements of the current transaction to ``ms`` milliseconds."""
        conn.execute(self._q["statement_timeout"], {"ms": str(ms)})

    def now(self, conn: Conn, now: dt.datetime | None = None) -> dt.datetime:
        row = conn.execute(self._q["now"], {"now": now}).fetchone()
        assert row is not None
        value: dt.datetime = row[0]
        return value

    def _rows(self, conn: Conn, query: str, params: dict[str, Any]) -> list[Row]:
        with conn.cursor(row_factory=schedule_row_factory) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def upsert(
        self, conn: Conn, row_json: str, ref_columns: tuple[str, ...]
    ) -> tuple[Schedule, bool]:
        """Create or update; returns the schedule and whether it was created."""
        params = {"row": row_json, "ref_names": list(ref_columns), "channel": self.channel}
        [(schedule, extra)] = self._rows(conn, self._upsert_query(ref_columns), params)
        return schedule, bool(extra["_created"])

    def _identity(self, key: Identity) -> dict[str, Any]:
        return {
            "queue": key.queue,
            "type": key.type,
            "refs": key.refs_json,
            "ref_names": list(key.ref_names),
            "channel": self.channel,
        }

    def find(self, conn: Conn, key: Identity) -> Schedule | None:
        rows = self._rows(conn, self._q["find"], self._identity(key))
        return rows[0][0] if rows else None

    def exists(self, conn: Conn, key: Identity) -> bool:
        row = conn.execute(self._q["exists"], self._identity(key)).fetchone()
        return bool(row and row[0])

    def delete(self, conn: Conn, key: Identity) -> bool:
        rows = conn.execute(self._q["delete"], self._identity(key))
        return bool(rows.fetchall())

    def set_enabled(
        self, conn: Conn, schedule_id: str, enabled: bool, next_run_at: dt.datetime | None
    ) -> Schedule:
        params = {
            "id": schedule_id,
            "enabled": enabled,
            "next_run_at": next_run_at,
            "channel": self.channel,
        }
        [(schedule, _)] = self._rows(conn, self._q["set_enabled"], params)
        return schedule

    def list_all(self, conn: Conn, queue: str | None = None) -> list[Schedule]:
        return [s for s, _ in self._rows(conn, self._q["list"], {"queue": queue})]

    def claim_due(
        self, conn: Conn, now: dt.datetime | None, limit: int
    ) -> tuple[list[Schedule], dt.datetime | None]:
        """Due schedules, locked; and the clock they were claimed by (None if none)."""
        rows = self._rows(conn, self._q["claim_due"], {"now": now, "limit": limit})
        if not rows:
            return [], None
        return [s for s, _ in rows], rows[0][1]["_now"]

    def advance(
        self,
        conn: Conn,
        ids: list[str],
        ticks: list[dt.datetime],
        nexts: list[dt.datetime],
        fired: list[dt.datetime | None],
    ) -> set[str]:
        """Move schedules past the tick each was claimed at; returns the ids moved."""
        rows = conn.execute(
            self._q["advance"], {"ids": ids, "ticks": ticks, "nexts": nexts, "fired": fired}
        ).fetchall()
        return {str(r[0]) for r in rows}

    def next_due(self, conn: Conn) -> float | None:
        """Seconds until the earliest enabled schedule is due, by the database clock."""
        row = conn.execute(self._q["next_due"]).fetchone()
        return None if row is None or row[0] is None else float(row[0])
