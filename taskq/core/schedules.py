"""Checking schedule requests and naming schedules, without I/O.

A schedule is identified by (queue, type, references); ``ScheduleKey`` holds that
identity with the references as canonical JSON (sorted keys), which the database then
canonicalises once more against the columns' types (see ``taskq/sql/schedules.sql``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskq.core.encode import check_text, encode_json
from taskq.core.errors import InvalidReference, QueueNotSpecified, TypeNotSpecified
from taskq.core.names import SCHEDULE_BUILTIN_COLUMNS, TASK_BUILTIN_COLUMNS
from taskq.core.types import Schedule, TaskScheduleRequest


@dataclass(frozen=True, slots=True)
class ScheduleKey:
    """What names a schedule: queue, type, and its references (JSON, and their names)."""

    queue: str
    type: str
    refs_json: str
    ref_names: tuple[str, ...]

    def references(self) -> dict[str, object]:
        import json

        value: dict[str, object] = json.loads(self.refs_json)
        return value


def describe(queue: Any, type_: Any) -> str:
    return f"schedule (queue {str(queue)[:60]!r}, type {str(type_)[:60]!r})"


def schedule_key(queue: Any, type_: Any, references: Any) -> ScheduleKey:
    """The checked identity of a schedule."""
    if queue is None or (isinstance(queue, str) and not queue.strip()):
        raise QueueNotSpecified(type_ if isinstance(type_, str) else "")
    if type_ is None or (isinstance(type_, str) and not type_.strip()):
        raise TypeNotSpecified(queue if isinstance(queue, str) else "")
    where = " for " + describe(queue, type_)
    check_text(queue, "queue", where)
    check_text(type_, "type", where)
    if not isinstance(references, Mapping):
        raise InvalidReference("?", "schedules", "references must be a mapping of column to value")
    for key in references:
        if not isinstance(key, str) or not key:
            raise InvalidReference(
                str(key), "schedules", "a reference name must be a non-empty string"
            )
        if key in SCHEDULE_BUILTIN_COLUMNS or key in TASK_BUILTIN_COLUMNS:
            raise InvalidReference(key, "schedules", "that is a built-in column, not a reference")
    refs = {k: references[k] for k in sorted(references)}
    refs_json = encode_json(refs, "references" + where)
    return ScheduleKey(queue, type_, refs_json, tuple(refs))


def target(
    request: TaskScheduleRequest | Schedule | None,
    queue: str | None,
    type_: str | None,
    references: Mapping[str, Any] | None,
) -> ScheduleKey:
    """The schedule an operation names: by a request or Schedule, or by its parts."""
    if request is not None:
        if queue is not None or type_ is not None or references is not None:
            raise TypeError("pass either a request (or Schedule) or queue/type/references")
        if not isinstance(request, TaskScheduleRequest | Schedule):
            raise TypeError(
                f"expected a TaskScheduleRequest or Schedule, got {type(request).__name__}"
            )
        return schedule_key(request.queue, request.type, request.references)
    return schedule_key(queue, type_, references if references is not None else {})
