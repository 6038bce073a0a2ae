"""The small HTTP endpoint of ``taskq worker`` and ``taskq scheduler``: ``/metrics``
(Prometheus text) and ``/healthz``.

- It binds ``127.0.0.1`` unless told otherwise (``--metrics-host``).
- ``/healthz`` answers 200 when the process can reach the database (one ``SELECT 1``
  on the process's side connection, reused, under a short statement timeout) and 503
  otherwise. Neither response names a host or quotes a server's message.
- At most ``MAX_CLIENTS`` requests are served at once (more are closed at once), and a
  client that sends nothing, or half a request, for ``REQUEST_TIMEOUT`` seconds is
  dropped: idle or half-open connections cannot pile up threads.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskq.core.defaults import HEALTH_TIMEOUT
from taskq.db.side import SideConnection

DEFAULT_HOST = "127.0.0.1"
MAX_CLIENTS = 16
REQUEST_TIMEOUT = 5.0

Health = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse rather than grow threads
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(
    port: int, registry: CollectorRegistry, healthy: Health, host: str = DEFAULT_HOST
) -> ThreadingHTTPServer:
    """Start serving on a daemon thread; ``shutdown()`` the returned server to stop.
    Raises OSError when the address cannot be bound."""

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT  # applied to the socket: a silent client is dropped
        server_version = "taskq"
        sys_version = ""

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

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (_Server,), {"address_family": family})
    server: ThreadingHTTPServer = server_class((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="taskq-http", daemon=True).start()
    return server


_WHERE = re.compile(r'connection to server (at|on socket) "[^"]*"(, port \d+)?( failed)?:?\s*')


def reason(error: BaseException) -> str:
    """Why the database could not be reached, in one line, without the host, port or
    socket path a driver message names: "Connection refused", "timeout expired"."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = _WHERE.sub("", text)
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    text = text.strip()
    return text or type(error).__name__


def database_health(side: SideConnection, timeout: float = HEALTH_TIMEOUT) -> Health:
    """A health check that runs ``SELECT 1`` on ``side`` within ``timeout`` seconds."""
    ping = side.db.settings.stmts.catalog.ping

    def check() -> tuple[bool, str]:
        try:
            side.run(ping, timeout)
            return True, "ok: database reachable"
        except Exception as e:
            return False, f"unhealthy: database unreachable: {reason(e)}"

    return check
