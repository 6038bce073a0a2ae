"""Checking enqueue requests and turning them into rows. Pure functions, no I/O.

Everything a request can get wrong is caught here, before any SQL runs, with an
error that names the queue and type concerned.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskq.core.defaults import HEARTBEAT_TIMEOUT, MAX_ATTEMPTS, MAX_SPEC_BYTES, RETRY_DELAY
from taskq.core.errors import (
    InvalidReference,
    InvalidTask,
    QueueNotSpecified,
    TypeNotSpecified,
    UnknownTaskType,
)
from taskq.core.names import MAX_NAME_LENGTH, TASK_BUILTIN_COLUMNS
from taskq.core.types import INT32_MAX, INT32_MIN, TaskEnqueueRequest

if TYPE_CHECKING:
    from taskq.registry import Registry

EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
"""The range of times taskq stores: PostgreSQL stores far more, but a time that is
year 10000 (or year 0) in some time zone cannot be read back by Python, so one day
inside year 1 and year 9999 on each side is the limit for every time taken as input."""

# A JSON \u0000 escape that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def encode_json(value: Any, what: str) -> str:
    """JSON text for ``value``; ValueError (InvalidTask) naming ``what`` if impossible."""
    if value is None:  # most handlers return nothing: no encoder needed
        return "null"
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise InvalidTask(f"{what} is nested too deeply to store as JSON") from None
    except (TypeError, ValueError) as e:
        raise InvalidTask(f"{what} is not JSON-serialisable: {e}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidTask(
            f"{what} contains a NUL character (\\u0000), which PostgreSQL cannot store"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800"
            raise InvalidTask(
                f"{what} contains {text[e.start : e.end]!r}, which is not valid Unicode "
                "text, so PostgreSQL cannot store it"
            ) from None
    return text


def utf8_length(text: str) -> int:
    """The size of ``text`` in UTF-8 bytes (cheap for ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def check_text(value: Any, field: str, where: str, *, limit: int = MAX_NAME_LENGTH) -> None:
    if not isinstance(value, str):
        raise InvalidTask(f"{field} must be a string{where}, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidTask(f"{field} contains a NUL character{where}, which PostgreSQL cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
            raise InvalidTask(
                f"{field} is not valid Unicode text{where}, so PostgreSQL cannot store it"
            ) from None
    if len(value) > limit:
        raise InvalidTask(f"{field} is longer than {limit} characters{where}")


def check_time(value: dt.datetime, field: str, where: str = "") -> None:
    """Refuse a naive time, or one outside what taskq can store and read back."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTask(f"{field} must be timezone-aware{where}")
    try:
        ok = EARLIEST <= value <= LATEST
    except OverflowError:  # an offset that pushes it past what datetime holds
        ok = False
    if not ok:
        raise InvalidTask(
            f"{field} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC{where}, "
            f"got {value.isoformat()}"
        )


def _where(queue: Any, type_: Any) -> str:
    return f" (queue {str(queue)[:60]!r}, type {str(type_)[:60]!r})"


def _number(value: Any, field: str, where: str, *, low: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTask(f"{field} must be a finite number{where}, got {value!r}")
    if value < low or (strict and value == low):
        bound = "above" if strict else "at least"
        raise InvalidTask(f"{field} must be {bound} {low:g}{where}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Row:
    """One checked request, ready to insert: its JSON row and its reference columns."""

    json: str
    references: tuple[str, ...]
    queue: str
    type: str


Settled = tuple[str, int, float, float | None, float]
"""A checked request's queue, max_attempts, heartbeat_timeout, timeout and retry_delay,
its type's registered defaults (or taskq's) filled in."""


def check_request(
    req: TaskEnqueueRequest,
    registry: Registry | None = None,
    *,
    max_spec_bytes: int = MAX_SPEC_BYTES,
    strict: bool = False,
) -> TaskEnqueueRequest:
    """``req`` checked, with its type's registered defaults filled in; ``strict``:
    a type ``registry`` does not know is refused (``UnknownTaskType``)."""
    queue, max_attempts, hb, timeout, delay = _settle(req, registry, max_spec_bytes, strict)
    return TaskEnqueueRequest(
        queue=queue,
        type=req.type,
        spec=req.spec,
        references=dict(req.references),
        priority=req.priority,
        run_at=req.run_at,
        max_attempts=max_attempts,
        heartbeat_timeout=hb,
        unique_key=req.unique_key,
        title=req.title,
        user_id=req.user_id,
        timeout=timeout,
        retry_delay=delay,
        on_success=req.on_success,
    )


def _settle(
    req: TaskEnqueueRequest, registry: Registry | None, max_spec_bytes: int, strict: bool
) -> Settled:
    """Check ``req`` (see ``check_request``) and return its settled options."""
    if not isinstance(req, TaskEnqueueRequest):
        raise TypeError(f"expected a TaskEnqueueRequest, got {type(req).__name__}")
    opts = registry.options(req.type) if registry is not None and req.type else None
    queue = req.queue
    if (queue is None or (isinstance(queue, str) and not queue.strip())) and opts and opts.queue:
        queue = opts.queue
    if queue is None or (isinstance(queue, str) and not queue.strip()):
        raise QueueNotSpecified(req.type if isinstance(req.type, str) else "")
    if req.type is None or (isinstance(req.type, str) and not req.type.strip()):
        raise TypeNotSpecified(queue if isinstance(queue, str) else "")
    where = _where(queue, req.type)
    check_text(queue, "queue", where)
    check_text(req.type, "type", where)
    if strict and registry is not None and req.type not in registry:
        raise UnknownTaskType(req.type, queue, sorted(registry))
    for field in ("unique_key", "title", "user_id"):
        v = getattr(req, field)
        if v is not None:
            check_text(v, field, where, limit=MAX_NAME_LENGTH if field != "title" else 1000)
    if isinstance(req.priority, bool) or not isinstance(req.priority, int):
        raise InvalidTask(f"priority must be an integer{where}, got {req.priority!r}")
    if not INT32_MIN <= req.priority <= INT32_MAX:
        raise InvalidTask(f"priority must fit a signed 32-bit integer{where}, got {req.priority}")
    max_attempts = req.max_attempts
    if max_attempts is None:
        max_attempts = (opts.max_attempts if opts else None) or MAX_ATTEMPTS
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise InvalidTask(f"max_attempts must be an integer{where}, got {max_attempts!r}")
    if not 1 <= max_attempts <= INT32_MAX:
        raise InvalidTask(
            f"max_attempts must be between 1 and {INT32_MAX}{where}, got {max_attempts}"
        )
    hb = req.heartbeat_timeout
    if hb is None:
        hb = (opts.heartbeat_timeout if opts else None) or HEARTBEAT_TIMEOUT
    hb = _number(hb, "heartbeat_timeout", where, low=0, strict=True)
    timeout = req.timeout if req.timeout is not None else (opts.timeout if opts else None)
    if timeout is not None:
        timeout = _number(timeout, "timeout", where, low=0, strict=True)
    delay = req.retry_delay
    if delay is None:
        delay = opts.retry_delay if opts and opts.retry_delay is not None else RETRY_DELAY
    delay = _number(delay, "retry_delay", where, low=0, strict=False)
    if req.run_at is not None:
        if not isinstance(req.run_at, dt.datetime):
            raise InvalidTask(f"run_at must be a datetime{where}, got {type(req.run_at).__name__}")
        check_time(req.run_at, "run_at", where)
    if not isinstance(req.references, Mapping):
        raise InvalidTask(f"references must be a mapping of column to value{where}")
    for key in req.references:
        if not isinstance(key, str) or not key:
            raise InvalidReference(str(key), "tasks", "a reference name must be a non-empty string")
        if key in TASK_BUILTIN_COLUMNS:
            raise InvalidReference(key, "tasks", "that is a built-in column, not a reference")
    if opts is not None and opts.validator is not None:
        try:
            opts.validator(req.spec)
        except InvalidTask:
            raise
        except Exception as e:  # the validator's own words, as a ValueError
            raise InvalidTask(f"invalid spec{where}: {e}") from None
    if req.on_success is not None:
        _settle(req.on_success, registry, max_spec_bytes, strict)
    return queue, max_attempts, hb, timeout, delay


def to_row(
    req: TaskEnqueueRequest,
    registry: Registry | None = None,
    *,
    max_spec_bytes: int = MAX_SPEC_BYTES,
    extra: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> Row:
    """Check ``req`` and encode it as a JSON row for the enqueue statement."""
    queue, max_attempts, hb, timeout, delay = _settle(req, registry, max_spec_bytes, strict)
    r = req
    where = _where(queue, r.type)
    spec = encode_json(r.spec, f"spec{where}")
    size = utf8_length(spec)
    if size > max_spec_bytes:
        raise InvalidTask(f"spec{where} is {size} bytes of JSON; the limit is {max_spec_bytes}")
    values = (
        queue, r.type, r.priority, r.run_at.isoformat() if r.run_at is not None else None,
        max_attempts, hb, timeout, delay, r.unique_key, r.title, r.user_id,
    )  # fmt: skip
    if not extra and r.on_success is None and not r.references:
        # the common case: the same options for many requests (a batch, a busy
        # producer), so their JSON is made once
        head = _HEADS.get(values)
        if head is None:
            head = json.dumps({k: v for k, v in zip(_ROW_KEYS, values, strict=True)
                               if v is not None})[:-1]  # fmt: skip
            if len(_HEADS) >= 1024:
                _HEADS.clear()
            _HEADS[values] = head
        return Row(head + ',"spec":' + spec + "}", (), queue, r.type)
    fields: dict[str, Any] = {k: v for k, v in zip(_ROW_KEYS, values, strict=True) if v is not None}
    if extra:
        fields.update(extra)
    if r.on_success is not None:
        fields["on_success"] = json.loads(request_to_json(r.on_success))
    refs = tuple(sorted(r.references))
    for key in refs:
        fields[key] = r.references[key]
    body = encode_json(fields, f"references{where}") if refs else json.dumps(fields)
    return Row(body[:-1] + ',"spec":' + spec + "}", refs, queue, r.type)


_ROW_KEYS = (
    "queue", "type", "priority", "run_at", "max_attempts", "heartbeat_timeout", "timeout",
    "retry_delay", "unique_key", "title", "user_id",
)  # fmt: skip
"""The columns a request sets, in the order ``to_row`` reads them; a column left out of
a row's JSON (None) is NULL, as jsonb_populate_recordset reads it."""

_HEADS: dict[tuple[Any, ...], str] = {}
"""The JSON of a row without its spec (and without the closing brace), by the values
of ``_ROW_KEYS``: one dict lookup instead of one JSON encoding per request."""


def request_to_json(req: TaskEnqueueRequest) -> str:
    """A request as JSON, to be stored and enqueued later (follow-ups)."""
    d: dict[str, Any] = {
        "queue": req.queue,
        "type": req.type,
        "spec": req.spec,
        "references": dict(req.references),
        "priority": req.priority,
        "run_at": req.run_at.isoformat() if req.run_at else None,
        "max_attempts": req.max_attempts,
        "heartbeat_timeout": req.heartbeat_timeout,
        "unique_key": req.unique_key,
        "title": req.title,
        "user_id": req.user_id,
        "timeout": req.timeout,
        "retry_delay": req.retry_delay,
        "on_success": json.loads(request_to_json(req.on_success)) if req.on_success else None,
    }
    return encode_json(d, f"follow-up request (queue {req.queue!r}, type {req.type!r})")


def request_from_json(d: Mapping[str, Any]) -> TaskEnqueueRequest:
    """The request stored by :func:`request_to_json`."""
    run_at = dt.datetime.fromisoformat(d["run_at"]) if d.get("run_at") else None
    nxt = d.get("on_success")
    return TaskEnqueueRequest(
        queue=d["queue"],
        type=d["type"],
        spec=d.get("spec"),
        references=d.get("references") or {},
        priority=d.get("priority", 0),
        run_at=run_at,
        max_attempts=d.get("max_attempts"),
        heartbeat_timeout=d.get("heartbeat_timeout"),
        unique_key=d.get("unique_key"),
        title=d.get("title"),
        user_id=d.get("user_id"),
        timeout=d.get("timeout"),
        retry_delay=d.get("retry_delay"),
        on_success=request_from_json(nxt) if nxt else None,
    )


def rows_json(rows: list[Row]) -> str:
    return "[" + ",".join(r.json for r in rows) + "]"


class RequestEncoder:
    """Checks requests and encodes them into rows, with a registry's defaults and
    validators when given one (``strict``: refusing the types it does not know). Shared
    by both faces of the Queuer. No I/O."""

    def __init__(
        self,
        registry: Registry | None = None,
        max_spec_bytes: int = MAX_SPEC_BYTES,
        *,
        strict: bool = False,
    ) -> None:
        if strict and registry is None:
            raise ValueError("strict=True needs a registry: the task types to allow")
        self.registry = registry
        self.max_spec_bytes = max_spec_bytes
        self.strict = strict

    def row(self, request: TaskEnqueueRequest, **extra: Any) -> Row:
        """One checked request as a row; ``extra`` sets internal columns (ids, chains)."""
        extra = {k: v for k, v in extra.items() if v is not None}
        follow = getattr(request, "on_success", None)  # not a request: to_row says so
        if follow is not None:
            request = replace(request, on_success=self.settled(follow))
        return to_row(request, self.registry, max_spec_bytes=self.max_spec_bytes, extra=extra,
                      strict=self.strict)  # fmt: skip

    def rows(self, requests: Iterable[TaskEnqueueRequest]) -> list[Row]:
        return [self.row(r) for r in requests]

    def settled(self, request: TaskEnqueueRequest) -> TaskEnqueueRequest:
        """A follow-up request with its type's registered defaults filled in (and its
        own follow-up's): it is enqueued later by whoever ends the task, with no
        registry at hand."""
        if self.registry is None:
            return request
        r = check_request(request, self.registry, max_spec_bytes=self.max_spec_bytes)
        return r if r.on_success is None else replace(r, on_success=self.settled(r.on_success))

    def chain(self, requests: Sequence[TaskEnqueueRequest]) -> tuple[str, list[str], list[Row]]:
        """A chain's id, its links' ids and rows: each link after the first waits
        (``BLOCKED``) until the one before it finishes."""
        from taskq.core.workflows import BLOCKED

        if not requests:
            raise ValueError("a chain needs at least one request")
        chain_id = str(uuid.uuid4())
        ids = [str(uuid.uuid4()) for _ in requests]
        rows = [
            self.row(r, id=ids[i], chain_id=chain_id, chain_index=i,
                     depends_on=ids[i - 1] if i else None, run_at=BLOCKED if i else None)
            for i, r in enumerate(requests)
        ]  # fmt: skip
        return chain_id, ids, rows

    def group(
        self, requests: Sequence[TaskEnqueueRequest], on_complete: TaskEnqueueRequest | None
    ) -> tuple[str, list[Row], str | None]:
        """A group's id, its members' rows and its follow-up request as JSON."""
        if not requests:
            raise ValueError("a group needs at least one request")
        group_id = str(uuid.uuid4())
        rows = [self.row(r, group_id=group_id, chain_index=i) for i, r in enumerate(requests)]
        follow = None
        if on_complete is not None:
            self.row(on_complete)  # checked now, so a bad follow-up is refused up front
            follow = request_to_json(self.settled(on_complete))
        return group_id, rows, follow
