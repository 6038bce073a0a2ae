"""taskq's values: statuses, tasks, requests. Immutable dataclasses, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskq.core.errors import InvalidProgress

JSON = Any
"""Any value ``json.dumps`` accepts: dict, list, str, int, float, bool or None."""

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


class TaskStatus(str, enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES = frozenset({TaskStatus.CANCELLED, TaskStatus.FINISHED, TaskStatus.FAILED})


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt of a task, as its error history keeps it.

    ``kind`` is "exception" (the handler raised ``type``), "timeout", "rescue" (its
    worker vanished or stopped heartbeating), or "failed" (``Dequeuer.fail`` with a
    message and no exception). ``traceback`` is bounded text, when there was one.
    """

    attempt: int
    at: dt.datetime | None
    kind: str
    message: str
    type: str | None = None
    traceback: str | None = None
    worker_id: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> AttemptError:
        at = value.get("at")
        return cls(
            attempt=int(value.get("attempt") or 0),
            at=dt.datetime.fromisoformat(at) if isinstance(at, str) else None,
            kind=str(value.get("kind") or "exception"),
            message=str(value.get("message") or ""),
            type=value.get("type"),
            traceback=value.get("traceback"),
            worker_id=value.get("worker_id"),
        )

    def summary(self) -> str:
        """``Type: message`` (or the message alone)."""
        return f"{self.type}: {self.message}" if self.type else self.message


@dataclass(frozen=True, slots=True)
class Task:
    """One row of ``<schema>.tasks`` as it was when read.

    ``lease`` is the token of the claim that ``Dequeuer.dequeue`` made; passing this
    Task (not just its id) to heartbeat/finish/fail fences those writes to that claim.
    """

    id: str
    queue: str
    type: str
    spec: JSON
    status: TaskStatus
    progress: JSON
    result: JSON
    error: str | None
    references: Mapping[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    heartbeat_timeout: float
    timeout: float | None
    run_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_heartbeat_at: dt.datetime | None
    unique_key: str | None = None
    title: str | None = None
    user_id: str | None = None
    lease: str | None = field(default=None, repr=False)
    worker_id: str | None = None
    chain_id: str | None = None
    chain_index: int | None = None
    group_id: str | None = None
    previous_result: JSON = None
    on_success: JSON = field(default=None, repr=False)
    errors: tuple[AttemptError, ...] = field(default=(), repr=False)
    """Every failed attempt (the newest last, at most 20): see ``AttemptError``."""
    seq: int | None = field(default=None, repr=False)
    """Enqueue order (the table's identity column): ties in claims and listings."""

    @property
    def has_followups(self) -> bool:
        """Whether ending this task may start other work (chain, group, on_success)."""
        return bool(self.chain_id or self.group_id or self.on_success)

    def fraction(self) -> float | None:
        """How much of this task is done, 0.0 to 1.0: 1.0 once it finished, whatever
        progress it last reported; else its ``Progress``'s fraction; None when unknown
        (no progress, or progress not shaped like a ``Progress``)."""
        if self.status is TaskStatus.FINISHED:
            return 1.0
        p = Progress.from_json(self.progress)
        return None if p is None else p.fraction()


@dataclass(frozen=True, slots=True)
class TaskEnqueueRequest:
    """What to enqueue. Checked by the Queuer before anything is stored.

    ``heartbeat_timeout`` and ``timeout`` are seconds. ``max_attempts``,
    ``heartbeat_timeout``, ``timeout`` and ``retry_delay`` left as None take the
    registered task type's defaults (when the Queuer knows a Registry), else 1, 60.0,
    no timeout, and 1.0 s.
    ``on_success`` is enqueued in the same transaction that finishes this task.
    """

    queue: str
    type: str
    spec: JSON = None
    references: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    run_at: dt.datetime | None = None
    max_attempts: int | None = None
    heartbeat_timeout: float | None = None
    unique_key: str | None = None
    title: str | None = None
    user_id: str | None = None
    timeout: float | None = None
    retry_delay: float | None = None
    on_success: TaskEnqueueRequest | None = None


@dataclass(frozen=True, slots=True)
class TaskScheduleRequest:
    """A cron schedule to create or update; identified by (queue, type, references).

    ``cron_schedule`` has 5 fields, or 6 whose last is seconds; ``timezone`` is an IANA
    name. ``skip_missed``: after the scheduler was down, skip the missed ticks instead
    of firing one catch-up run (see taskq/scheduler.py).
    """

    queue: str
    type: str
    cron_schedule: str
    spec: JSON = None
    references: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    skip_missed: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """One row of ``<schema>.schedules`` as it was when read.

    ``next_run_at`` is the next tick the scheduler process will fire (the ``run_at`` of
    the task it will enqueue); ``last_run_at`` the tick it fired last (None before the
    first). ``references`` are the schedule's reference columns, copied to each task.
    """

    id: str
    queue: str
    type: str
    spec: JSON
    cron_schedule: str
    timezone: str
    references: Mapping[str, Any]
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    enabled: bool
    skip_missed: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Progress:
    """A structured progress value that handlers may report and readers parse.

    The fields of seed 000's Progress: ``percent`` is the fraction done, from 0.0 to
    1.0 (0.5 is half done; 50 is refused, not read as 100 %); ``step`` of ``steps``
    (whole numbers, ``step`` at most ``steps``); ``status`` says what is happening;
    ``done``; ``dest`` where to send the user (a URL or path); ``error``. Any JSON stays
    allowed as progress; this is the shape taskq's own tools draw as a progress bar,
    and a dict with these fields is held to the same rules wherever progress is
    reported (``InvalidProgress``, a ValueError, and nothing written).
    """

    percent: float | None = None
    step: int | None = None
    steps: int | None = None
    status: str | None = None
    done: bool = False
    dest: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        problem = progress_problem(self.percent, self.step, self.steps)
        if problem is not None:
            raise InvalidProgress(f"progress {problem}")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, value: JSON) -> Progress | None:
        """The Progress in ``value``, or None when it is not shaped like one (not a
        dict, none of the fields, or a field of the wrong type)."""
        if not isinstance(value, dict):
            return None
        known = {k: value[k] for k in cls.__slots__ if k in value}
        if not known or not all(_fits(k, v) for k, v in known.items()):
            return None
        try:
            return cls(**known)
        except InvalidProgress:  # stored before the rules (percent 50): not a Progress
            return None

    def fraction(self) -> float | None:
        """How much is done, 0.0 to 1.0: ``percent``, else ``step / steps``, else 1.0
        when ``done``; None when unknown. (``Task.fraction`` also reads a finished
        task as done.)"""
        if self.percent is not None:
            return float(self.percent)
        if self.step is not None and self.steps:
            return self.step / self.steps
        return 1.0 if self.done else None


def progress_problem(percent: object, step: object, steps: object) -> str | None:
    """What is wrong with these Progress fields, or None."""
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            return f"percent must be a number from 0.0 to 1.0, got {percent!r}"
        if not math.isfinite(percent) or not 0.0 <= percent <= 1.0:
            return (
                f"percent is the fraction done, from 0.0 to 1.0 (0.5 is half done), got {percent!r}"
            )
    for name, v in (("step", step), ("steps", steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            return f"{name} must be a whole number of at least 0, got {v!r}"
    if isinstance(step, int) and isinstance(steps, int) and steps and step > steps:
        return f"step {step} is past steps {steps}"
    return None


def checked_progress(value: Any, what: str = "progress") -> Any:
    """``value`` as the JSON progress to store: a ``Progress`` as its dict; a dict with
    Progress fields (of Progress's types) held to Progress's rules (``InvalidProgress``
    naming ``what`` otherwise); any other JSON as it is."""
    if isinstance(value, Progress):
        return value.to_json()
    if isinstance(value, dict):
        percent, step, steps = (value.get(k) for k in ("percent", "step", "steps"))
        problem = progress_problem(
            percent if _fits("percent", percent) else None,
            step if _fits("step", step) else None,
            steps if _fits("steps", steps) else None,
        )
        if problem is not None:
            raise InvalidProgress(f"{what}: {problem}")
    return value


def _fits(field: str, value: object) -> bool:
    """Whether ``value`` is of the type of Progress field ``field``."""
    if field == "done":
        return isinstance(value, bool)
    if value is None:
        return True
    if field == "percent":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if field in ("step", "steps"):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)
