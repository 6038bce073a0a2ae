"""Plain ASGI middleware (no buffering, so event streams pass through untouched):
the request body limit and the request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskq.server.errors import body as error_body

UNMATCHED = "<unmatched>"
"""The route label of requests that matched no route (keeps label sets bounded)."""


async def send_error(send: Send, status: int, message: str) -> None:
    payload = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over ``max_bytes``, before anything reads it: at once from its
    Content-Length, else (chunked) as soon as the bytes received pass the limit. The
    connection stays open and the server drops the rest of the body as it arrives, so
    a client still sending reads its 413 instead of a reset."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.strip().isdigit():
                    await send_error(send, 400, "invalid Content-Length")
                    return
                if int(value) > self.max_bytes:
                    await send_error(send, 413, self._message())
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await send_error(send, 413, self._message())


class RequestMetrics:
    """``taskq_http_requests_total{method,route,status}`` and
    ``taskq_http_request_duration_seconds{method,route,status}`` by route template
    (``/api/v1/tasks/{task_id}``), plus the open event streams. A stream's duration is
    how long it stayed open."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, namespace: str = "taskq"):
        self.app = app
        labels = ("method", "route", "status")
        self.requests = Counter("http_requests", "HTTP requests answered, by route template "
                                "and status", labels, namespace=namespace, registry=registry)  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template",
            labels, namespace=namespace, registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                     30, 60),
        )  # fmt: skip
        self.in_flight = Gauge("http_requests_in_flight", "Requests being answered now, event "
                               "streams included", namespace=namespace, registry=registry)  # fmt: skip
        self.streams = Gauge("http_event_streams", "Open task event streams (SSE watchers)",
                             namespace=namespace, registry=registry)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        stream = False

        async def watch(message: Message) -> None:
            nonlocal status, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        stream = True
                        self.streams.inc()
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, receive, watch)
        finally:
            self.in_flight.dec()
            if stream:
                self.streams.dec()
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            labels = (scope["method"], path, str(status))
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe(time.perf_counter() - started)
