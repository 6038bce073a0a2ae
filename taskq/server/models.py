"""The API's shapes as typed models: the OpenAPI document is generated from these.

Request bodies are documented by these models but checked by taskq itself
(``taskq.server.convert``), so a request refused by taskq gets the very message the
Python API gives (contract §3). Responses are built directly (``convert``) and declared
with these models.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskq.core.defaults import MAX_SPEC_BYTES
from taskq.core.names import MAX_NAME_LENGTH
from taskq.core.types import INT32_MAX, INT32_MIN

JSON_DOC = "any JSON value"


class Status(str, Enum):
    waiting = "waiting"
    running = "running"
    cancelled = "cancelled"
    finished = "finished"
    failed = "failed"


class TaskEnqueue(BaseModel):
    """The fields of ``taskq.TaskEnqueueRequest``; ``queue`` and ``type`` are required."""

    model_config = ConfigDict(extra="forbid", title="TaskEnqueue")

    queue: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"\S")
    type: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"\S")
    spec: Any = Field(None, description=f"{JSON_DOC}, at most {MAX_SPEC_BYTES} bytes")
    references: dict[str, Any] = Field(default_factory=dict,
                                       description="values of the application's own columns")  # fmt: skip
    priority: int = Field(0, ge=INT32_MIN, le=INT32_MAX, description="higher runs first")
    run_at: dt.datetime | None = Field(None, description="not before (ISO 8601 with offset)")
    max_attempts: int | None = Field(None, ge=1, le=INT32_MAX)
    heartbeat_timeout: float | None = Field(None, gt=0, description="seconds")
    unique_key: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    title: str | None = Field(None, max_length=1000)
    user_id: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    timeout: float | None = Field(None, gt=0, description="seconds")
    retry_delay: float | None = Field(None, ge=0, description="seconds")
    on_success: TaskEnqueue | None = Field(None, description="enqueued when this finishes")


class AttemptError(BaseModel):
    """One failed attempt, as the task's error history keeps it."""

    attempt: int
    at: dt.datetime | None
    kind: str = Field(description="exception, timeout, rescue or failed")
    message: str
    type: str | None = None
    traceback: str | None = None
    worker_id: str | None = None


class Task(BaseModel):
    """A task: every field of ``taskq.Task`` by the same name."""

    id: str
    queue: str
    type: str
    spec: Any
    status: Status
    progress: Any
    result: Any
    error: str | None
    references: dict[str, Any]
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
    unique_key: str | None
    title: str | None
    user_id: str | None
    worker_id: str | None
    chain_id: str | None
    chain_index: int | None
    group_id: str | None
    previous_result: Any
    errors: list[AttemptError] = Field(
        default_factory=list, description="every failed attempt, oldest first"
    )


class TaskPage(BaseModel):
    tasks: list[Task]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class QueueCounts(BaseModel):
    queue: str
    waiting: int
    running: int
    finished: int
    failed: int
    cancelled: int


class Queues(BaseModel):
    queues: list[QueueCounts]


class TaskSchedule(BaseModel):
    """The fields of ``taskq.TaskScheduleRequest``."""

    model_config = ConfigDict(extra="forbid", title="TaskSchedule")

    queue: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"\S")
    type: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"\S")
    cron_schedule: str = Field(min_length=1, description="5 fields, or 6 (seconds last)")
    spec: Any = None
    references: dict[str, Any] = Field(default_factory=dict)
    timezone: str = Field("UTC", min_length=1, description="an IANA time zone")
    skip_missed: bool = False


class Schedule(BaseModel):
    id: str
    queue: str
    type: str
    spec: Any
    cron_schedule: str
    timezone: str
    references: dict[str, Any]
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    enabled: bool
    skip_missed: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class Schedules(BaseModel):
    schedules: list[Schedule]


class Worker(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    alive: bool


class Workers(BaseModel):
    workers: list[Worker]


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    """Every error response."""

    error: ErrorDetail


class Health(BaseModel):
    status: str
