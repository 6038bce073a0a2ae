"""A small HTTP server for ``/metrics`` (Prometheus text) and ``/healthz``.

``/healthz`` answers 200 when the process can reach the database (one ``SELECT 1``,
bounded by a short timeout) and 503 otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def serve(
    port: int,
    registry: CollectorRegistry,
    healthy: Callable[[], tuple[bool, str]],
    host: str = "0.0.0.0",  # noqa: S104 - a metrics port is meant to be scraped
) -> ThreadingHTTPServer:
    """Start serving on a daemon thread; ``shutdown()`` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(registry)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/health"):
                ok, detail = healthy()
                self._send(200 if ok else 503, (detail + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="taskq-http", daemon=True).start()
    return server


def database_health(url: str, timeout: float = 3.0) -> Callable[[], tuple[bool, str]]:
    """A health check that opens a fresh connection and runs ``SELECT 1``."""
    import psycopg

    def check() -> tuple[bool, str]:
        try:
            with psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True) as c:
                # SET takes no bound parameters; set_config does.
                c.execute("SELECT set_config('statement_timeout', %s, false)",
                          (f"{int(timeout * 1000)}ms",))  # fmt: skip
                c.execute("SELECT 1")
            return True, "ok: database reachable"
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return False, f"unhealthy: database unreachable: {first}"

    return check
