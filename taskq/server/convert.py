"""Between HTTP and taskq: JSON bodies in, taskq values out, and back. No framework.

Bodies are checked by taskq's own validation (``taskq.core.encode``) after only the
JSON-to-Python conversions JSON itself cannot express (a time as ISO 8601 text), so a
refusal carries the message the Python API gives.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from typing import Any

from taskq.core.errors import InvalidTask
from taskq.core.types import Schedule, Task, TaskEnqueueRequest, TaskScheduleRequest

HIDDEN = frozenset({"lease", "on_success", "seq"})
"""Task fields the API never shows: the claim's fencing token, the stored follow-up
request, and the internal enqueue order."""

TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task) if f.name not in HIDDEN)
ENQUEUE_FIELDS = tuple(f.name for f in dataclasses.fields(TaskEnqueueRequest))
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(TaskScheduleRequest))


class BadJson(ValueError):
    """A request body that is not JSON at all (400)."""


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadJson("the request needs a JSON body")
    try:
        return json.loads(body)
    except RecursionError:
        raise BadJson("the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise BadJson("the body is not UTF-8 text") from None
    except ValueError as e:
        raise BadJson(f"malformed JSON: {e}") from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _fields(raw: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidTask(f"{what} must be a JSON object, got {_json_type(raw)}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise InvalidTask(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(allowed)}"
        )
    return dict(raw)


def _time(value: Any, field: str) -> Any:
    if not isinstance(value, str):
        return value  # taskq names the wrong type
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTask(
            f"{field} must be an ISO 8601 time with an offset, got {value!r}"
        ) from None


def enqueue_request(raw: Any) -> TaskEnqueueRequest:
    """A ``TaskEnqueueRequest`` from a JSON object, unchecked (``Queuer`` checks it)."""
    f = _fields(raw, ENQUEUE_FIELDS, "a task to enqueue")
    f.setdefault("queue", None)
    f.setdefault("type", None)
    if f.get("run_at") is not None:
        f["run_at"] = _time(f["run_at"], "run_at")
    if f.get("on_success") is not None:
        f["on_success"] = enqueue_request(f["on_success"])
    return TaskEnqueueRequest(**f)


def schedule_request(raw: Any) -> TaskScheduleRequest:
    f = _fields(raw, SCHEDULE_FIELDS, "a schedule")
    f.setdefault("queue", None)
    f.setdefault("type", None)
    f.setdefault("cron_schedule", None)
    if not isinstance(f["cron_schedule"], str):
        got = _json_type(f["cron_schedule"])
        raise InvalidTask(f"cron_schedule must be a string (a cron expression), got {got}")
    if not isinstance(f.get("timezone", "UTC"), str):
        raise InvalidTask(f"timezone must be a string, got {_json_type(f['timezone'])}")
    return TaskScheduleRequest(**f)


def _time_out(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def task_json(task: Task) -> dict[str, Any]:
    """A task as the API shows it: every field of ``Task`` but the hidden ones, times
    in ISO 8601 with their offset, the status as its string value."""
    out = {name: _time_out(getattr(task, name)) for name in TASK_FIELDS}
    out["status"] = task.status.value
    out["references"] = dict(task.references)
    out["errors"] = [
        {f.name: _time_out(getattr(e, f.name)) for f in dataclasses.fields(e)} for e in task.errors
    ]
    return out


def schedule_json(s: Schedule) -> dict[str, Any]:
    out = {f.name: _time_out(getattr(s, f.name)) for f in dataclasses.fields(Schedule)}
    out["references"] = dict(s.references)
    return out


def worker_json(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "host", "pid", "queues", "concurrency", "running", "started_at",
            "last_seen_at", "stopped_at", "alive")  # fmt: skip
    out = {k: _time_out(row.get(k)) for k in keys}
    out["id"] = str(out["id"])
    out["queues"] = list(out["queues"] or [])
    out["alive"] = bool(out["alive"])
    return out


# ---- the listing cursor: the keyset (created_at, seq) of the last task of a page -----


def encode_cursor(task: Task) -> str:
    raw = f"{task.created_at.isoformat()}|{task.seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The keyset a cursor holds; ValueError (InvalidTask) for one not made here."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, seq = raw.split("|")
        created = dt.datetime.fromisoformat(when)
        if created.tzinfo is None:
            raise ValueError("naive")
        return created, int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidTask(f"invalid cursor {cursor[:80]!r}: pass a next_cursor as given") from None
