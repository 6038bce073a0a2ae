"""Every error the service answers with: ``{"error": {"code", "message"}}``.

taskq's refusals map to statuses here, once: a request taskq refuses (contract §3:
blank queue, NUL characters, out-of-range numbers, an invalid cron expression) is
422 with taskq's own message; a conflict (already ended, already held unique key) is
409; an unknown task 404. Anything unexpected is a 500 with no detail: the traceback
goes to the server's log, never into a response.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskq.core.errors import (
    InvalidReference,
    InvalidSchedule,
    InvalidTask,
    NotScheduled,
    QueueNotSpecified,
    TaskAlreadyExists,
    TaskFinished,
    TaskNotFound,
    TaskqError,
    TypeNotSpecified,
)
from taskq.server.convert import BadJson
from taskq.sql.errors import is_outage

log = logging.getLogger("taskq.server")

CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
    415: "unsupported_media_type", 422: "invalid", 500: "internal", 503: "unavailable",
}  # fmt: skip


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Around a call into taskq: its refusals of bad input (ValueError, TypeError: the
    checks of contract §3) become 422 with taskq's own message."""
    try:
        yield
    except TaskqError:
        raise
    except (ValueError, TypeError) as e:
        raise ApiError(422, str(e) or type(e).__name__, "invalid") from None


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers


def body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code or CODES.get(status, "error"), "message": message}}


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body(status, message, code), status_code=status, headers=headers)


def status_of(e: BaseException) -> tuple[int, str]:
    """The status and error code of a taskq error (or a ValueError from its checks)."""
    if isinstance(e, TaskNotFound | NotScheduled):
        return 404, "not_found"
    if isinstance(e, TaskAlreadyExists):
        return 409, "already_exists"
    if isinstance(e, TaskFinished):
        return 409, "already_ended"
    if isinstance(e, QueueNotSpecified | TypeNotSpecified | InvalidSchedule | InvalidReference
                  | InvalidTask):  # fmt: skip
        return 422, "invalid"
    if isinstance(e, TaskqError):
        return 409, "conflict"
    return 422, "invalid"  # ValueError / TypeError from taskq's checks


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(BadJson)
    async def _bad_json(request: Request, exc: BadJson) -> JSONResponse:
        return error_response(400, str(exc), "malformed_json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(400, "malformed JSON", "malformed_json")
        return error_response(422, _validation_message(exc), "invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(TaskqError)
    async def _taskq(request: Request, exc: TaskqError) -> JSONResponse:
        status, code = status_of(exc)
        return error_response(status, str(exc), code)

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)  # fmt: skip
        return error_response(503, "the database is not reachable; try again")

    for outage in (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout):
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_outage(exc):
            return await _outage(request, exc)
        log.exception("internal error in %s %s", request.method, request.url.path)
        return error_response(500, "internal error (details are in the server's log)")
