"""The statements of ``taskq/sql/schedules.sql`` for one schema: one typed function each."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import sql

from taskq.core import decode
from taskq.core.decode import ScheduleRow
from taskq.core.names import schedules_channel
from taskq.core.schedules import ScheduleKey
from taskq.core.types import Schedule
from taskq.sql.blocks import load, render
from taskq.sql.query import Query, Rows, read_ids, read_scalar, statement


def _rows(names: Sequence[str], rows: Rows) -> list[ScheduleRow]:
    return decode.schedules(names, rows)


def _first(names: Sequence[str], rows: Rows) -> Schedule | None:
    found = decode.schedules(names, rows[:1])
    return found[0][0] if found else None


def _all(names: Sequence[str], rows: Rows) -> list[Schedule]:
    return [s for s, _ in decode.schedules(names, rows)]


def _upserted(names: Sequence[str], rows: Rows) -> tuple[Schedule, bool]:
    [(schedule, extra)] = decode.schedules(names, rows)
    return schedule, bool(extra["_created"])


def _due(names: Sequence[str], rows: Rows) -> tuple[list[Schedule], dt.datetime | None]:
    found = decode.schedules(names, rows)
    if not found:
        return [], None
    return [s for s, _ in found], found[0][1]["_now"]


def _seconds(names: Sequence[str], rows: Rows) -> float | None:
    value = read_scalar(names, rows)
    return None if value is None else float(value)


class ScheduleStatements:
    """``schedules.sql`` rendered for ``schema``."""

    FILE = "schedules.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = schedules_channel(schema)
        self.table = sql.Identifier(schema, "schedules")
        blocks = load(self.FILE)
        self._blocks = blocks
        key = blocks["reference_key"].text
        given = sql.SQL(render(blocks["given_record"].text, schedules=self.table))
        self._key_of_given = sql.SQL(render(key, record=given))
        self._key_of_r = sql.SQL(render(key, record=sql.SQL("r")))
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, schedules=self.table, reference_key=self._key_of_given)
            for b in blocks.values()
            if not b.fragment and b.name != "upsert"
        }
        self._upserts: dict[tuple[str, ...], LiteralString] = {}
        self._lock = threading.Lock()

    def _q(
        self, name: str, params: dict[str, Any], read: Any, key: ScheduleKey | None = None
    ) -> Query[Any]:
        about = {}
        if key is not None and key.ref_names:
            about = {"references": ",".join(key.ref_names), "table": "schedules",
                     "values": key.refs_json}  # fmt: skip
        return Query(f"schedules.{name}", self._text[name], params, read, about)

    def _key(self, key: ScheduleKey) -> dict[str, Any]:
        return {
            "queue": key.queue,
            "type": key.type,
            "refs": key.refs_json,
            "ref_names": list(key.ref_names),
            "channel": self.channel,
        }

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def upsert(
        self, row_json: str, ref_columns: tuple[str, ...], key: ScheduleKey
    ) -> Query[tuple[Schedule, bool]]:
        """Create or update; reads as the schedule and whether it was created."""
        with self._lock:
            text = self._upserts.get(ref_columns)
        if text is None:
            idents = [sql.Identifier(c) for c in ref_columns]
            text = render(
                self._blocks["upsert"].text,
                schedules=self.table,
                reference_key=self._key_of_r,
                ref_columns=sql.SQL("").join(sql.SQL(", ") + i for i in idents),
                ref_select=sql.SQL("").join(sql.SQL(", r.") + i for i in idents),
            )
            with self._lock:
                self._upserts[ref_columns] = text
        params = {"row": row_json, "ref_names": list(ref_columns), "channel": self.channel}
        about = {"references": ",".join(ref_columns), "table": "schedules",
                 "values": key.refs_json} if ref_columns else {}  # fmt: skip
        return Query("schedules.upsert", text, params, _upserted, about)

    @statement
    def find(self, key: ScheduleKey) -> Query[Schedule | None]:
        return self._q("find", self._key(key), _first, key)

    @statement
    def exists(self, key: ScheduleKey) -> Query[Any]:
        return self._q("exists", self._key(key), read_scalar, key)

    @statement
    def delete(self, key: ScheduleKey) -> Query[set[str]]:
        return self._q("delete", self._key(key), read_ids, key)

    @statement
    def set_enabled(
        self, schedule_id: str, enabled: bool, next_run_at: dt.datetime | None
    ) -> Query[Schedule | None]:
        params = {"id": schedule_id, "enabled": enabled, "next_run_at": next_run_at,
                  "channel": self.channel}  # fmt: skip
        return self._q("set_enabled", params, _first)

    @statement
    def list_schedules(self, queue: str | None = None) -> Query[list[Schedule]]:
        return self._q("list_schedules", {"queue": queue}, _all)

    @statement
    def now(self, now: dt.datetime | None = None) -> Query[dt.datetime]:
        """The given instant, else the database's clock."""
        return self._q("now", {"now": now}, read_scalar)

    @statement
    def claim_due(
        self, now: dt.datetime | None, limit: int
    ) -> Query[tuple[list[Schedule], dt.datetime | None]]:
        """Due schedules, locked; and the clock they were claimed by (None if none)."""
        return self._q("claim_due", {"now": now, "limit": limit}, _due)

    @statement
    def advance(
        self,
        ids: list[str],
        ticks: list[dt.datetime],
        nexts: list[dt.datetime],
        fired: list[dt.datetime | None],
    ) -> Query[set[str]]:
        """Move schedules past the tick each was claimed at; reads as the ids moved."""
        params = {"ids": ids, "ticks": ticks, "nexts": nexts, "fired": fired}
        return self._q("advance", params, read_ids)

    @statement
    def next_due(self) -> Query[float | None]:
        """Seconds until the earliest enabled schedule is due, by the database clock."""
        return self._q("next_due", {}, _seconds)
