"""``taskq serve``: the task service over HTTP, with bearer tokens and a dashboard.

A FastAPI application (``taskq.server.app.create_app``) served by uvicorn, built on the
asyncio face of taskq (``taskq.aio``): every request runs on the event loop, waits and
event streams included, and one LISTEN connection per process feeds every watcher
through a small hub (``taskq.server.hub``). The JSON API lives under ``/api/v1`` (its
OpenAPI document is generated from the typed models in ``taskq.server.models``), the
dashboard at ``/`` (server-rendered pages and a little plain JavaScript shipped in the
package), Prometheus metrics at ``/metrics``, and ``/healthz``.

The web dependencies are the optional extra ``taskq[server]``; this package imports
none of them at the top, so ``taskq token`` works without it and ``taskq serve`` can
say which extra to install.
"""

from __future__ import annotations

EXTRA = "server"
"""The optional dependency group that ``taskq serve`` needs."""

MISSING = (
    "taskq serve needs the optional web dependencies (FastAPI, uvicorn, Jinja2): "
    "pip install 'taskq[server]'"
)


def missing_dependency() -> str | None:
    """Why the server cannot run here (a one-line reason naming the extra), or None."""
    import importlib

    for module in ("fastapi", "uvicorn", "jinja2"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{MISSING} ({module} is not installed)"
    return None
