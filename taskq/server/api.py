"""The JSON API under ``/api/v1`` (contract §8), on ``taskq.aio``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from taskq.core.defaults import WORKER_STALE
from taskq.core.fencing import parse_id
from taskq.core.names import MAX_NAME_LENGTH
from taskq.core.types import Task
from taskq.server import models as m
from taskq.server.auth import requires, state_of
from taskq.server.convert import (
    decode_cursor,
    encode_cursor,
    enqueue_request,
    parse_json,
    schedule_json,
    schedule_request,
    task_json,
    worker_json,
)
from taskq.server.errors import ApiError, refusals
from taskq.server.hub import Watcher


async def _known_query(request: Request) -> None:
    """422 for a query parameter the route does not take (a typo such as ``?stauts=``
    would otherwise be ignored and widen the answer). The names come from the
    generated OpenAPI document, so they match it by construction."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None or not request.query_params:
        return
    known = _query_names(request.app, path, request.method.lower())
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ApiError(422, f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                       f"this route takes: {takes}")  # fmt: skip


_QUERY_NAMES: dict[tuple[str, str], frozenset[str]] = {}


def _query_names(app: Any, path: str, method: str) -> frozenset[str]:
    key = (path, method)
    if key not in _QUERY_NAMES:
        op = app.openapi()["paths"].get(path, {}).get("head" if method == "head" else method, {})
        if method == "head":
            op = app.openapi()["paths"].get(path, {}).get("get", {})
        _QUERY_NAMES[key] = frozenset(
            p["name"] for p in op.get("parameters", []) if p.get("in") == "query"
        )
    return _QUERY_NAMES[key]


router = APIRouter(prefix="/api/v1", dependencies=[Depends(_known_query)])

KEEPALIVE = 15.0
"""Seconds between comment lines on a quiet event stream (keeps proxies from closing it)."""
FIRST_SNAPSHOT = 30.0
MAX_WAIT = 3600.0

_DESCRIBED = {
    400: "the body is not JSON", 401: "no token, or an unknown or revoked one",
    403: "the token's scope does not allow this", 404: "no such task (or schedule)",
    408: "the task did not end in time", 409: "a conflict with the task's state",
    413: "the body is too large", 422: "a request taskq refuses (the message says why)",
    503: "the database is not reachable",
}  # fmt: skip


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": m.Error, "description": _DESCRIBED[c]} for c in codes}


def json_body(schema: str, *, many: bool = False) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body of component ``schema`` (or a list of
    them), which the route reads and checks itself (see ``taskq.server.models``)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    body = {"oneOf": [ref, {"type": "array", "items": ref}]} if many else ref
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, ensure_ascii=False, separators=(",", ":")),
                    status_code=status, media_type="application/json")  # fmt: skip


def _text_param(value: str | None, name: str) -> str | None:
    if value is not None and ("\x00" in value or len(value) > MAX_NAME_LENGTH):
        raise ApiError(422, f"{name} must be at most {MAX_NAME_LENGTH} characters, without NUL")
    return value


# ---- tasks -------------------------------------------------------------------------------


@router.post("/tasks", status_code=201, response_model=m.Task | list[m.Task],
             responses=errors(400, 401, 403, 409, 413, 422), dependencies=requires("write"),
             openapi_extra=json_body("TaskEnqueue", many=True), summary="Enqueue a task "
             "(an object) or several, all or nothing (a list)")  # fmt: skip
async def enqueue(request: Request) -> Response:
    raw = parse_json(await request.body())
    s = state_of(request)
    with refusals():
        if isinstance(raw, list):
            done = await s.queuer.enqueue_many([enqueue_request(r) for r in raw])
            return _json([task_json(t) for t in done], 201)
        task = await s.queuer.enqueue(enqueue_request(raw))
    return _json(task_json(task), 201)


@router.get("/tasks", response_model=m.TaskPage, responses=errors(401, 403, 422),
            dependencies=requires("read"), summary="Tasks matching the filters, newest first")  # fmt: skip
async def list_tasks(
    request: Request,
    queue: str | None = None,
    status: Annotated[list[m.Status] | None, Query()] = None,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> Response:
    s = state_of(request)
    with refusals():
        before, seq = decode_cursor(cursor) if cursor else (None, None)
    query = s.stmts.listing.list_tasks(
        limit=limit + 1, queue=_text_param(queue, "queue"), type=_text_param(type, "type"),
        statuses=[x.value for x in status] if status else None, before=before, before_seq=seq,
    )  # fmt: skip
    found: list[Task] = await s.db.query(query, read=True)
    more = len(found) > limit
    page = found[:limit]
    nxt = encode_cursor(page[-1]) if more else None
    return _json({"tasks": [task_json(t) for t in page], "next_cursor": nxt})


@router.get("/tasks/{task_id}", response_model=m.Task, responses=errors(401, 403, 404),
            dependencies=requires("read"), summary="One task")  # fmt: skip
async def get_task(request: Request, task_id: str) -> Response:
    return _json(task_json(await state_of(request).tasks.get(task_id)))


@router.post("/tasks/{task_id}/cancel", response_model=m.Task,
             responses=errors(401, 403, 404, 409), dependencies=requires("write"),
             summary="Cancel a waiting or running task (409 once it ended)")  # fmt: skip
async def cancel_task(request: Request, task_id: str) -> Response:
    return _json(task_json(await state_of(request).tasks.cancel(task_id)))


@router.post("/tasks/{task_id}/retry", response_model=m.Task,
             responses=errors(401, 403, 404, 409), dependencies=requires("write"),
             summary="Put a failed or cancelled task back to waiting")  # fmt: skip
async def retry_task(request: Request, task_id: str) -> Response:
    return _json(task_json(await state_of(request).tasks.retry(task_id)))


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get("/tasks/{task_id}/wait", response_model=m.Task,
            responses=errors(401, 403, 404, 408, 503), dependencies=requires("read"),
            summary="Long poll: the task once it reaches a final status")  # fmt: skip
async def wait_task(
    request: Request, task_id: str, timeout: Annotated[float, Query(gt=0, le=MAX_WAIT)] = 60.0
) -> Response:
    s = state_of(request)
    tid = parse_id(task_id)
    end = time.monotonic() + timeout
    async with s.hub.watch(tid) as watcher:
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            while (left := end - time.monotonic()) > 0:
                nxt = asyncio.ensure_future(watcher.next(left))
                await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()
                    return Response(status_code=499)  # the client left: nobody reads this
                task = nxt.result()
                if task is not None and task.status.is_final:
                    return _json(task_json(task))
        finally:
            gone.cancel()
    raise ApiError(408, f"task {tid} did not reach a final status within {timeout:g} s")


_ENCODED: OrderedDict[int, tuple[Task, str]] = OrderedDict()


def _event(task: Task, n: int) -> str:
    """One event; a snapshot's JSON is made once however many watchers send it (the
    hub hands them all the same Task object)."""
    hit = _ENCODED.get(id(task))
    if hit is not None and hit[0] is task:
        data = hit[1]
    else:
        data = json.dumps(task_json(task), ensure_ascii=False, separators=(",", ":"))
        _ENCODED[id(task)] = (task, data)
        if len(_ENCODED) > 512:
            _ENCODED.popitem(last=False)
    return f"id: {n}\ndata: {data}\n\n"


async def _events(watcher: Watcher, first: Task, done: Any) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n\n"
        task: Task | None = first
        n = 0
        while task is not None:
            n += 1
            yield _event(task, n)
            if task.status.is_final:
                return
            task = await watcher.next(KEEPALIVE)
            while task is None and not watcher.ended:
                yield ": keep-alive\n\n"
                task = await watcher.next(KEEPALIVE)
    except Exception as e:  # the task vanished, or the database refused: say so, end
        message = json.dumps({"error": {"code": "ended", "message": str(e)}})
        yield f"event: gone\ndata: {message}\n\n"
    finally:
        done()


@router.get("/tasks/{task_id}/events", dependencies=requires("read"),
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "Server-Sent Events: one `data:` line of the "
                             "task as JSON per change of status, attempt or progress; the "
                             "stream closes after the final status"},
                       **errors(401, 403, 404, 503)},
            response_class=StreamingResponse, summary="Watch a task (Server-Sent Events)")  # fmt: skip
async def task_events(request: Request, task_id: str) -> StreamingResponse:
    hub = state_of(request).hub
    watcher = hub.subscribe(parse_id(task_id))
    try:
        first = await watcher.next(FIRST_SNAPSHOT)
    except BaseException:
        hub.unsubscribe(watcher)
        raise
    if first is None:
        hub.unsubscribe(watcher)
        raise ApiError(503, "the task could not be read in time; try again")
    return StreamingResponse(
        _events(watcher, first, lambda: hub.unsubscribe(watcher)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ---- queues, schedules, workers ---------------------------------------------------------


@router.get("/queues", response_model=m.Queues, responses=errors(401, 403),
            dependencies=requires("read"), summary="Tasks per queue and status")  # fmt: skip
async def queues(request: Request) -> Response:
    return _json({"queues": await state_of(request).counts.get()})


@router.get("/schedules", response_model=m.Schedules, responses=errors(401, 403),
            dependencies=requires("read"), summary="Every cron schedule")  # fmt: skip
async def list_schedules(request: Request) -> Response:
    found = await state_of(request).scheduler.list_schedules()
    return _json({"schedules": [schedule_json(x) for x in found]})


@router.post("/schedules", status_code=201, response_model=m.Schedule,
             responses={200: {"model": m.Schedule, "description": "an existing schedule "
                              "of the same (queue, type, references) was updated"},
                        **errors(400, 401, 403, 413, 422)},
             dependencies=requires("admin"), openapi_extra=json_body("TaskSchedule"),
             summary="Create a schedule (201), or update the one with the same identity (200)")  # fmt: skip
async def create_schedule(request: Request) -> Response:
    raw = parse_json(await request.body())
    with refusals():
        found = await state_of(request).scheduler.schedule(schedule_request(raw))
    return _json(schedule_json(found), 201 if found.created_at == found.updated_at else 200)


@router.delete("/schedules/{schedule_id}", status_code=204, response_class=Response,
               responses=errors(401, 403, 404), dependencies=requires("admin"),
               summary="Remove a schedule (the tasks it enqueued stay)")  # fmt: skip
async def delete_schedule(request: Request, schedule_id: str) -> Response:
    s = state_of(request)
    with contextlib.suppress(Exception):
        schedule_id = parse_id(schedule_id, "schedule")
    for found in await s.scheduler.list_schedules():
        if found.id == schedule_id:
            await s.scheduler.unschedule(found)
            return Response(status_code=204)
    raise ApiError(404, f"schedule {schedule_id[:80]} not found")


@router.get("/workers", response_model=m.Workers, responses=errors(401, 403),
            dependencies=requires("read"), summary="Worker processes, newest first")  # fmt: skip
async def workers(request: Request) -> Response:
    s = state_of(request)
    rows = await s.db.query(s.stmts.workers.list_workers(WORKER_STALE, 200))
    return _json({"workers": [worker_json(r) for r in rows]})


__all__ = ["router"]
