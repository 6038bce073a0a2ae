"""The ASGI application of ``taskq serve``: ``create_app(ServeConfig)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from taskq.server import errors, models
from taskq.server.api import router
from taskq.server.asgi import BodyLimit, RequestMetrics
from taskq.server.state import ServeConfig, ServerState

VERSION = "1"
HEALTH_TIMEOUT = 3.0
BODY_MODELS = (models.TaskEnqueue, models.TaskSchedule)
"""Request bodies the routes read and check themselves: documented from these."""


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)  # fmt: skip
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in BODY_MODELS:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            if "$ref" not in schema:  # a recursive model is all in $defs already
                schemas[str(schema.get("title", model.__name__))] = schema
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(config: ServeConfig) -> FastAPI:
    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="taskq",
        version=VERSION,
        description="The task service of taskq: enqueue, look at, wait for, watch, cancel "
        "and retry tasks; cron schedules; workers. Authenticate with `Authorization: Bearer "
        "<token>` (`taskq token create --scope read|write|admin`).",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.taskq = state
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    errors.install(app)
    app.include_router(router)

    @app.get("/healthz", response_model=models.Health, include_in_schema=True,
             responses={503: {"model": models.Error}}, summary="200 when the database "
             "answers, else 503 (no token needed)")  # fmt: skip
    async def healthz() -> Response:
        try:
            await asyncio.wait_for(state.db.query(state.stmts.catalog.ping()), HEALTH_TIMEOUT)
        except Exception:
            return errors.error_response(503, "the database does not answer")
        return Response('{"status":"ok"}', media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    from taskq.server.dashboard import install as install_dashboard

    install_dashboard(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestMetrics, registry=state.registry)
    return app


def request_state(request: Request) -> ServerState:
    s: ServerState = request.app.state.taskq
    return s
